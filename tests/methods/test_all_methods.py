"""Every method, or a family of them, in the engine: steps without NaN, EMA targets, multi-crop
heads, the memory banks' start, learning on Fashion-MNIST."""

import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from bench.backbones import backbone_preset
from bench.config import Params, load_suite
from bench.views import ViewGenerator
from methods.registry import get_method, method_names, resolve_hparams
from pipeline.engine import Interrupted, RunSpec, build_method, train
from pipeline.stages import pretrain
from tests.conftest import needs_fmnist
from tests.methods.helpers import _batch, _build, _first_bn, _registered, _step, _toy_dataset28, _toy_suite
from tests.pipeline.test_engine import _suite, _toy_dataset

PART1 = ["mocov1", "invaspread", "instdisc", "pirl", "cmc", "dim", "amdim", "cpc_v2"]


@pytest.mark.parametrize("method", _registered(PART1))
def test_method_runs_engine_steps_without_nan(tmp_path, method):
    record = train(RunSpec(_toy_suite(), method, 0, resolve_hparams(method, {}), tmp_path), _toy_dataset28(),
                   progress_bar=False)
    assert record["status"] == "complete" and record["steps"] == 3
    lines = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all(math.isfinite(ln["loss"]) for ln in lines)
    assert record["deviation"] == get_method(method).deviation


@pytest.mark.parametrize("method", ["instdisc", "pirl", "cmc"])
def test_memory_bank_starts_from_the_untrained_network(tmp_path, method):
    """Before step 1 every bank entry is the initial network's embedding of its image
    (``bank_init: network``); ``bank_init: random`` keeps the papers' random vectors."""
    from pipeline.engine import build_method

    data, suite = _toy_dataset28(), _toy_suite()
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


PART2 = ["simclr_v2", "swav", "simsiam", "mocov3", "barlowtwins", "vicreg"]


def test_part2_methods_are_registered():
    assert set(PART2) <= set(method_names())


@pytest.mark.parametrize("method,overrides", _registered([
    ("simclr_v2", {}), ("simclr_v2", {"queue_length": 65536}), ("swav", {}), ("swav", {"queue_length": 0}),
    ("simsiam", {}), ("simsiam", {"stop_gradient": False}), ("dino", {}), ("mocov3", {}),
    ("barlowtwins", {}), ("vicreg", {}),
]))
def test_each_method_runs_engine_steps_with_finite_loss(tmp_path, method, overrides):
    suite, ds = _suite(), _toy_dataset()
    suite = replace(suite, budget=replace(suite.budget, value=32 * 3))
    record = train(RunSpec(suite, method, 0, resolve_hparams(method, overrides), tmp_path), ds, progress_bar=False)
    assert record["status"] == "complete" and record["steps"] == 3
    lines = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    for line in lines:
        assert math.isfinite(line["loss"]) and math.isfinite(line["embed_std"]) and line["embed_std"] > 0


@pytest.mark.parametrize("method", _registered(["mocov3", "dino"]))
def test_vit_variant_runs_engine_steps(tmp_path, method):
    suite, ds = _suite(), _toy_dataset()
    suite = replace(suite, budget=replace(suite.budget, value=32 * 2),
                    backbone=backbone_preset("vit_tiny", suite.backbone))
    hp = resolve_hparams(method, {"local_crops": 2} if method == "dino" else {})
    record = train(RunSpec(suite, method, 0, hp, tmp_path), ds, progress_bar=False)
    assert record["status"] == "complete" and record["backbone"] == "vit_tiny"
    assert all(math.isfinite(json.loads(ln)["loss"]) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines())
    if method == "mocov3":
        ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
        spec = RunSpec(suite, method, 0, hp, tmp_path)
        init = build_method(spec, ds, 2).state_dict()
        key = "backbone.patch_embed.proj.weight"
        assert torch.equal(ckpt[key], init[key])  # the random patch projection stays frozen
        assert not torch.equal(ckpt["backbone.blocks.0.attn.qkv.weight"], init["backbone.blocks.0.attn.qkv.weight"])


@pytest.mark.parametrize("method,target,online", _registered([("dino", "teacher", "student"),
                                                              ("mocov3", "momentum_encoder", "online")]))
def test_ema_target_is_changed_only_by_the_ema(tmp_path, method, target, online):
    """Two real engine steps: the target never requires grad and equals m t + (1 - m) s."""
    suite, ds = _suite(precision="fp32"), _toy_dataset()
    total = 4
    suite = replace(suite, budget=replace(suite.budget, value=32 * total),
                    train=replace(suite.train, checkpoint_every=1))
    hp = resolve_hparams(method, {"local_crops": 2} if method == "dino" else {})
    spec = RunSpec(suite, method, 0, hp, tmp_path)
    built = build_method(spec, ds, total)
    assert all(not p.requires_grad for p in getattr(built, target).parameters())
    assert all(p.requires_grad for p in getattr(built, online).parameters())
    with pytest.raises(Interrupted):
        train(spec, ds, stop_after=2, progress_bar=False)
    prev = torch.load(tmp_path / "checkpoint.prev.pt", weights_only=True)
    last = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (prev["step"], last["step"]) == (1, 2)
    from methods.modules import cosine_increase

    m = cosine_increase(built.m_base, 2 / total)  # after_step of step 2 runs at progress 2/4
    checked = 0
    for name, _ in getattr(built, target).named_parameters():
        t_key, o_key = f"{target}.{name}", f"{online}.{name}"
        expected = m * prev["model"][t_key] + (1 - m) * last["model"][o_key]
        assert torch.allclose(last["model"][t_key], expected, atol=1e-6), name
        checked += 1
    assert checked > 10
    changed = [k for k in last["model"] if k.startswith(f"{target}.") and "weight" in k
               and not torch.equal(last["model"][k], prev["model"][k])]
    assert changed  # the EMA did move the target


@pytest.mark.parametrize("name,target,online,overrides", [
    ("dino", "teacher", "student", {"local_crops": 2}),
    ("byol", "target", "online", {}),
    ("mocov2", "key", "query", {}),
    ("mocov1", "key", "query", {}),
    ("mocov3", "momentum_encoder", "online", {}),
    ("simclr_v2", "key", "online", {"queue_length": 64}),
])
def test_ema_target_estimates_its_own_bn_statistics(name, target, online, overrides):
    """After two steps the target's running statistics have left their init values and are not the
    online network's (the authors' EMA averages parameters; the target's BN runs in train mode)."""
    method = _build(name, **overrides)
    bn_t, bn_o = _first_bn(getattr(method, target)), _first_bn(getattr(method, online))
    init = bn_t.running_mean.clone()
    for seed in range(2):  # at step 1 both nets have equal weights and see equal crops (BYOL, MoCo v3)
        _step(method, _batch(method, seed=seed))
    assert not torch.equal(bn_t.running_mean, init)
    assert not torch.equal(bn_t.running_mean, bn_o.running_mean)


@pytest.mark.parametrize("name,head,overrides", [
    ("dino", lambda m: m.student[1], {"local_crops": 2, "use_bn_in_head": True}),
    ("swav", lambda m: m.projector, {"small_crops": 2}),
])
def test_multicrop_head_bn_sees_every_crop_in_one_batch(name, head, overrides):
    """DINO's MultiCropWrapper and SwAV's forward run the head once on the concatenated features."""
    method = _build(name, **overrides)
    sizes = []
    _first_bn(head(method)).register_forward_hook(lambda m, i, o: sizes.append(len(i[0])))
    method.train()
    method.training_step(_batch(method, n=8))
    assert sizes[0] == 8 * 4  # 2 global + 2 small crops of 8 images
