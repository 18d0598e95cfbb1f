"""First-generation contrastive methods (InstDisc, InvaSpread, CPC v2, CMC, DIM, AMDIM,
PIRL, MoCo v1): losses against hand computations, invariants of their shared parts,
a few engine steps each, and a falling loss on real data."""

import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from bench.config import Params, load_suite
from bench.data import Dataset, Split
from methods.cmc import lab_to_rgb, rgb_to_lab
from methods.cpc_v2 import AutoregressiveContext
from methods.losses import (
    cpc_info_nce,
    global_local_info_nce,
    jsd_mi_loss,
    nce_loss,
    softmax_embedding_loss,
)
from methods.modules import MemoryBank, PartitionEstimate, patch_grid
from methods.pirl import jigsaw
from methods.registry import get_method, method_names, resolve_hparams
from pipeline.engine import RunSpec, train
from pipeline.stages import pretrain
from tests.conftest import needs_fmnist

PART1 = ["mocov1", "invaspread", "instdisc", "pirl", "cmc", "dim", "amdim", "cpc_v2"]


def _registered(names):
    known = set(method_names())
    return [n for n in names if n in known]


def _lse(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


# --- losses against hand computations -------------------------------------------------


def test_nce_loss_matches_hand_computation():
    probs = [[0.5, 0.01, 0.2], [0.05, 0.3, 0.001]]  # column 0: positive; K = 2 noise samples
    n_data = 10
    noise = 2 / n_data
    total = 0.0
    for row in probs:
        total += -math.log(row[0] / (row[0] + noise))
        total += -sum(math.log(noise / (p + noise)) for p in row[1:])
    assert math.isclose(nce_loss(torch.tensor(probs), n_data).item(), total / 2, rel_tol=1e-6)


def test_softmax_embedding_loss_matches_hand_computation():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[0.8, 0.6], [0.6, 0.8]])
    t = 0.5
    views = torch.cat([z1, z2]).tolist()  # already unit length
    n = 2
    total = 0.0
    for a in range(2 * n):
        others = [k for k in range(2 * n) if k != a]
        denom = sum(math.exp(_dot(views[k], views[a]) / t) for k in others)
        prob = {k: math.exp(_dot(views[k], views[a]) / t) / denom for k in others}
        pair = (a + n) % (2 * n)
        total += -math.log(prob[pair]) - sum(math.log(1 - prob[k]) for k in others if k != pair)
    assert math.isclose(softmax_embedding_loss(z1, z2, t).item(), total / (2 * n), rel_tol=1e-5)


def test_softmax_embedding_loss_prefers_matching_pairs():
    z = torch.eye(4)
    assert softmax_embedding_loss(z, z, 0.1) < softmax_embedding_loss(z, z.roll(1, 0), 0.1)


def test_jsd_mi_loss_matches_hand_computation():
    pos = [2.0, -0.5]
    neg = [0.3, -1.0, 1.5]
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    e_pos = sum(math.log(2) - sp(-p) for p in pos) / 2
    e_neg = sum(sp(q) - math.log(2) for q in neg) / 3
    got = jsd_mi_loss(torch.tensor(pos), torch.tensor(neg)).item()
    assert math.isclose(got, e_neg - e_pos, rel_tol=1e-6)
    assert jsd_mi_loss(torch.zeros(3), torch.zeros(5)).abs().item() < 1e-7


def test_global_local_info_nce_matches_hand_computation():
    s = torch.tensor([[[1.0, 0.5], [0.2, -0.3]],
                      [[0.0, 0.7], [2.0, -1.0]]])  # [i, j, p]
    n, p = 2, 2
    total = 0.0
    for i in range(n):
        negs = [s[i, j, q].item() for j in range(n) if j != i for q in range(p)]
        for pos_p in range(p):
            pos = s[i, i, pos_p].item()
            total += -pos + _lse([pos, *negs])
    assert math.isclose(global_local_info_nce(s).item(), total / (n * p), rel_tol=1e-6)


def test_cpc_info_nce_matches_hand_computation():
    pred = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    cand = torch.tensor([[1.0, 1.0], [0.0, 2.0], [-1.0, 0.0]])
    targets = torch.tensor([2, 1])
    total = 0.0
    for row, t in zip(pred.tolist(), targets.tolist()):
        logits = [_dot(row, c) for c in cand.tolist()]
        total += -logits[t] + _lse(logits)
    assert math.isclose(cpc_info_nce(pred, cand, targets).item(), total / 2, rel_tol=1e-6)


# --- invariants of the shared parts -----------------------------------------------------


def test_memory_bank_update_is_momentum_then_renormalised():
    bank = MemoryBank(size=4, dim=2, momentum=0.5)
    bank.features.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
    bank.update(torch.tensor([0, 3]), torch.tensor([[0.0, 1.0], [0.6, 0.8]]))
    h = 1 / math.sqrt(2)
    expected_3 = [0.3, 0.9]
    norm = math.hypot(*expected_3)
    assert torch.allclose(bank.features[0], torch.tensor([h, h]), atol=1e-6)
    assert torch.allclose(bank.features[3], torch.tensor([0.3 / norm, 0.9 / norm]), atol=1e-6)
    assert torch.equal(bank.features[1], torch.tensor([0.0, 1.0]))  # untouched entries stay
    assert torch.allclose(bank.features.norm(dim=1), torch.ones(4))


def test_memory_bank_scores_put_the_positive_first():
    bank = MemoryBank(size=3, dim=2)
    bank.features.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    q = torch.tensor([[0.6, 0.8]])
    s = bank.scores(q, torch.tensor([1]), torch.tensor([[0, 2]]))
    assert torch.allclose(s, torch.tensor([[0.8, 0.6, -0.6]]))


def test_partition_estimate_is_taken_once_from_the_first_batch():
    z = PartitionEstimate(dataset_size=100)
    first = torch.tensor([[1.0, 3.0], [2.0, 2.0]])
    out = z(first)
    assert math.isclose(z.z.item(), 100 * 2.0)  # n * mean(exp scores)
    assert torch.allclose(out, first / 200)
    z(torch.full((2, 2), 50.0))
    assert math.isclose(z.z.item(), 200.0)  # fixed afterwards
    state = z.state_dict()
    assert "z" in state  # restored with a checkpoint


def test_lab_round_trip_and_reference_values():
    rgb = torch.rand(2, 3, 5, 5)
    assert torch.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-4)
    lab = rgb_to_lab(torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]).view(3, 3, 1, 1))
    assert torch.allclose(lab[0].flatten(), torch.tensor([100.0, 0.0, 0.0]), atol=0.05)  # white
    assert torch.allclose(lab[1].flatten(), torch.tensor([0.0, 0.0, 0.0]), atol=0.05)  # black
    assert torch.allclose(lab[2].flatten(), torch.tensor([53.24, 80.09, 67.20]), atol=0.1)  # sRGB red


def test_patch_grid_shapes_and_positions():
    x = torch.arange(28 * 28, dtype=torch.float).view(1, 1, 28, 28).expand(2, 1, 28, 28)
    grid = patch_grid(x, patch=8, stride=4)
    assert grid.shape == (2, 6, 6, 1, 8, 8)
    assert torch.equal(grid[0, 2, 3, 0], x[0, 0, 8:16, 12:20])
    assert torch.equal(grid[1, 5, 5, 0], x[1, 0, 20:28, 20:28])


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


def test_jigsaw_is_permuted_per_sample():
    g = torch.Generator().manual_seed(0)
    b = 16
    x = torch.zeros(b, 1, 27, 27)
    for cell in range(9):  # tile value = its grid cell, so positions can be read back
        r, c = divmod(cell, 3)
        x[:, :, r * 9 : (r + 1) * 9, c * 9 : (c + 1) * 9] = cell
    tiles, perm = jigsaw(x, grid=3, crop=7, gen=g)
    assert tiles.shape == (b, 9, 1, 7, 7)
    assert torch.equal(tiles.mean(dim=(2, 3, 4)), perm.float())  # tile at position j is cell perm[b, j]
    assert len({tuple(p.tolist()) for p in perm}) > b // 2  # a permutation per sample, not one per batch
    assert all(sorted(p.tolist()) == list(range(9)) for p in perm)


def test_jigsaw_crops_each_tile_inside_its_cell():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 2, 28, 28)
    tiles, perm = jigsaw(x, grid=3, crop=7, gen=g)
    for s in range(4):
        for j in range(9):
            r, c = divmod(perm[s, j].item(), 3)
            cell = x[s, :, r * 9 : (r + 1) * 9, c * 9 : (c + 1) * 9]
            windows = cell.unfold(1, 7, 1).unfold(2, 7, 1)  # [C, 3, 3, 7, 7]
            match = (windows - tiles[s, j].view(2, 1, 1, 7, 7)).abs().amax(dim=(0, 3, 4))
            assert match.min().item() == 0.0


# --- methods in the engine ----------------------------------------------------------------


def _toy_dataset(n=256, channels=1, size=28):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 4, (n,), generator=g)
    split = Split(images, labels)
    return Dataset("toy", split, split, 4, (0.5,) * channels, (0.25,) * channels, "generated")


def _toy_suite(steps=3, batch=32, resolution=28):
    suite = load_suite("smoke")
    return replace(suite, resolution=resolution, budget=replace(suite.budget, value=batch * steps),
                   train=replace(suite.train, batch_size=batch, checkpoint_every=100, log_every=1))


@pytest.mark.parametrize("method", _registered(PART1))
def test_method_runs_engine_steps_without_nan(tmp_path, method):
    record = train(RunSpec(_toy_suite(), method, 0, resolve_hparams(method, {}), tmp_path), _toy_dataset(),
                   progress_bar=False)
    assert record["status"] == "complete" and record["steps"] == 3
    lines = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all(math.isfinite(ln["loss"]) for ln in lines)
    assert record["deviation"] == get_method(method).deviation


@pytest.mark.parametrize("method", ["instdisc", "pirl", "cmc"])
def test_memory_bank_starts_from_the_untrained_network(tmp_path, method):
    """Before step 1 every bank entry is the initial network's embedding of its image
    (``bank_init: network``); ``bank_init: random`` keeps the papers' random vectors."""
    from bench.views import ViewGenerator
    from pipeline.engine import build_method

    data, suite = _toy_dataset(), _toy_suite()
    for init in ("network", "random"):
        model = build_method(RunSpec(suite, method, 0, resolve_hparams(method, {"bank_init": init}), tmp_path),
                             data, 3)
        before = {n: b.clone() for n, b in model.named_buffers() if n.endswith("features")}
        images = data.train.images
        plain = ViewGenerator(None, data.mean, data.std, torch.device("cpu")).plain
        with torch.no_grad():
            model.initialise([(torch.arange(len(images)), plain(images))])  # one batch: same BN statistics
            expected = model.embed(plain(images))
        expected = expected if isinstance(expected, tuple) else (expected,)
        for (name, start), want in zip(before.items(), expected):
            bank = dict(model.named_buffers())[name]
            if init == "network":
                assert torch.allclose(bank, F.normalize(want, dim=1), atol=1e-4), name
            else:
                assert torch.equal(bank, start), name


@pytest.mark.parametrize("loss", ["nce", "softmax", "batch"])
def test_cmc_runs_on_rgb_with_each_loss(tmp_path, loss):
    if "cmc" not in method_names():
        pytest.skip("cmc not registered")
    hp = resolve_hparams("cmc", {"loss": loss})
    record = train(RunSpec(_toy_suite(steps=2), "cmc", 0, hp, tmp_path), _toy_dataset(channels=3),
                   progress_bar=False)
    assert record["status"] == "complete"


def test_cmc_views_split_channels():
    cmc = pytest.importorskip("methods.cmc", reason="cmc is not part of this checkout")
    IMAGENET_MEAN, IMAGENET_STD, split_views = cmc.IMAGENET_MEAN, cmc.IMAGENET_STD, cmc.split_views

    gray = torch.randn(2, 1, 8, 8)
    a, b = split_views(gray)
    assert torch.equal(a, gray) and b.shape == (2, 1, 8, 8) and (b > 0).all()
    rgb = torch.rand(2, 3, 8, 8)
    normed = (rgb - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    light, ab = split_views(normed)
    lab = rgb_to_lab(rgb)
    assert light.shape == (2, 3, 8, 8) and ab.shape == (2, 2, 8, 8)
    assert torch.allclose(light[:, 0], (lab[:, 0] - 50) / 50, atol=1e-4)
    assert torch.allclose(ab * 110, lab[:, 1:], atol=1e-3)


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


def test_mocov1_is_mocov2_with_the_v1_recipe():
    from methods.mocov2 import MomentumContrast

    cls = get_method("mocov1")
    hp = resolve_hparams("mocov1", {})
    assert issubclass(cls, MomentumContrast) and cls.view_recipe == "mocov1"
    assert (hp.temperature, hp.mlp_head, hp.momentum, hp.queue_length) == (0.07, False, 0.999, 65536)


@needs_fmnist
@pytest.mark.parametrize("method,overrides", [
    (m, {}) for m in _registered(PART1)] + [("cmc", {"loss": "batch"})] * ("cmc" in _registered(PART1)))
def test_loss_falls_on_fashion_mnist(workdir, method, overrides):
    # a 256-image subset: banks and queues hold real features after the first epoch (4 steps);
    # MoCo's 64-key queue makes its loss noisy, so it gets a few more steps
    steps = 40 if method == "mocov1" else 24
    suite = load_suite("smoke")
    suite = replace(suite, dataset=replace(suite.dataset, pretrain_subset=256),
                    budget=replace(suite.budget, value=64 * steps),
                    train=replace(suite.train, log_every=4, checkpoint_every=1000))
    params = Params(suite="smoke", methods={method: overrides})
    record = pretrain(suite, params, method, progress_bar=False)[0]
    assert record["status"] == "complete"
    lines = [json.loads(ln) for ln in (workdir / "runs/smoke" / method / "seed0/metrics.jsonl").open()]
    first, last = lines[0]["loss"], sum(ln["loss"] for ln in lines[-2:]) / 2
    assert last < first, f"{method}: loss {first:.3f} -> {last:.3f}"
