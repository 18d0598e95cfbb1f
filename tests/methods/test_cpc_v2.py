"""CPC v2 fidelity (issue 16 item 4): prediction offsets, logit scale, and the network evaluations see."""

import math

import torch

from bench.backbones import BackboneCfg, build_backbone
from methods.base import Batch, Context
from methods.cpc_v2 import AutoregressiveContext
from methods.registry import get_method, resolve_hparams


def _build(**overrides):
    torch.manual_seed(0)
    backbone = build_backbone(BackboneCfg("resnet18", 8, True, 2, in_channels=1))  # the tiny suite's network
    return get_method("cpc_v2")(backbone, resolve_hparams("cpc_v2", overrides), Context(64, 4, 16, 10, 28, 1))


def _images(n=16, seed=0):
    """Smooth random images (a blurred noise field), normalised per batch."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.avg_pool2d(torch.randn(n, 1, 36, 36, generator=g), 9, 1)
    return (x - x.mean()) / x.std()


def _batch(x, seed=0):
    return Batch([x], torch.arange(len(x)), torch.zeros(len(x), dtype=torch.long), torch.Generator().manual_seed(seed))


def test_cpc_targets_never_overlap_the_context_patch(monkeypatch):
    """The paper predicts rows below, skipping the overlapping ones: a target starts a full patch away."""
    import methods.cpc_v2 as cpc

    method = _build()
    seen = []

    def spy(pred, cand, targets, temperature=1.0):
        seen.append(targets.clone())
        return pred.sum() * 0

    monkeypatch.setattr(cpc, "cpc_info_nce", spy)
    method.training_step(_batch(torch.randn(2, 1, 28, 28)))
    g, p, s = method.grid, method.hp.patch_size, method.hp.patch_stride
    assert len(seen) == method.hp.steps
    for targets in seen:
        # predictions come row-major from context cells (b, r, c), r = 0 .. G-1-k; the first one is (0, 0, 0)
        k = int(targets[0]) // g  # its target sits k rows below
        assert k * s >= p, f"offset {k}: target rows {k * s}..{k * s + p - 1} overlap context rows 0..{p - 1}"
        m = torch.arange(len(targets))
        b, rest = m // ((g - k) * g), m % ((g - k) * g)
        assert torch.equal(targets, b * g * g + (rest // g + k) * g + rest % g)


def test_cpc_initial_loss_is_near_log_negatives():
    """At initialisation every offset's InfoNCE is near chance, log(number of candidates)."""
    method = _build()
    x = _images()
    out = method.training_step(_batch(x))
    chance = math.log(len(x) * method.grid**2)
    for name, value in out.logs.items():
        assert abs(value.item() - chance) < 1.0, (name, value.item(), chance)


def test_cpc_encoder_features_of_whole_images_are_not_degenerate():
    """Evaluations feed whole images to ``encoder`` in eval mode: its BN running statistics must be
    those of whole images (the trunk trains on patches), so eval-mode features match the batch-statistics
    ones and vary across images."""
    method = _build()
    for module in method.modules():  # running statistics = the average over the steps seen
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():  # smoke steps at fixed weights
        for step in range(3):
            method.training_step(_batch(_images(), step))
    x = _images(seed=0)
    encoder = method.encoder
    with torch.no_grad():
        evaluated = encoder.eval()(x)
        batch_stats = encoder.train()(x)
    assert evaluated.std(dim=0).mean() > 0.1 * evaluated.abs().mean()
    assert (evaluated - batch_stats).norm() < 0.1 * batch_stats.norm()
    # the trunk the method trains keeps its patch statistics, and both are saved with the method
    assert not torch.equal(method.backbone.bn1.running_var, encoder.bn1.running_var)
    assert any("image_stats" in k for k in method.state_dict())


def test_cpc_encoder_state_loads_into_a_plain_backbone():
    """load_encoder rebuilds a plain backbone from run.json and loads encoder.pt into it."""
    method = _build()
    method.training_step(_batch(_images()))
    plain = build_backbone(BackboneCfg("resnet18", 8, True, 2, in_channels=1))
    plain.load_state_dict(method.encoder.state_dict())
    x = _images(seed=1)
    with torch.no_grad():
        assert torch.allclose(plain.eval()(x), method.encoder.eval()(x), atol=1e-6)


def test_autoregressive_context_never_sees_the_future():
    torch.manual_seed(0)
    net = AutoregressiveContext(dim=4, hidden=8, blocks=3)
    z = torch.randn(2, 4, 6, 6, requires_grad=True)
    c = net(z)
    for r in range(6):
        (grad,) = torch.autograd.grad(c[:, :, r].sum(), z, retain_graph=True)
        assert grad[:, :, r + 1 :].abs().sum().item() == 0.0, f"row {r} sees rows below it"
        assert grad[:, :, : r + 1].abs().sum().item() > 0  # and it does see rows above / its own
    # a change below row r leaves the context at rows <= r unchanged
    z2 = z.detach().clone()
    z2[:, :, 4:] += 10
    assert torch.allclose(net(z2)[:, :, :4], c.detach()[:, :, :4])


def test_cpc_predictions_target_the_patch_k_rows_below(monkeypatch):
    import methods.cpc_v2 as cpc
    from bench.backbones import BackboneCfg, build_backbone
    from methods.base import Batch, Context

    hp = resolve_hparams("cpc_v2", {})
    backbone = build_backbone(BackboneCfg("resnet18", 8, True, in_channels=1))
    method = cpc.CPCv2(backbone, hp, Context(64, 4, 4, 10, 28, 1))
    seen = []

    def spy(pred, cand, targets, temperature=1.0):
        seen.append((pred.shape[0], cand.shape[0], targets.clone()))
        return pred.sum() * 0

    monkeypatch.setattr(cpc, "cpc_info_nce", spy)
    method.training_step(Batch([torch.randn(2, 1, 28, 28)], torch.arange(2), torch.zeros(2)))
    g = 6
    assert method.grid == g and len(seen) == hp.steps and method.offsets == (2, 3, 4)
    for k, (n_pred, n_cand, targets) in zip(method.offsets, seen):
        assert n_cand == 2 * g * g and n_pred == 2 * (g - k) * g
        # prediction m comes from context cell (b, r, c); its target is patch (b, r + k, c)
        m = torch.arange(n_pred)
        b, rest = m // ((g - k) * g), m % ((g - k) * g)
        r, c = rest // g, rest % g
        assert torch.equal(targets, b * g * g + (r + k) * g + c)
