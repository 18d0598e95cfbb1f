"""Baselines: `random` with BN statistics from the pretraining images, the `pixels` row,
alignment / uniformity diagnostics, and the "above a baseline" counts."""

import json
import math
from dataclasses import replace

import pandas as pd
import pytest
import torch

from bench.config import load_suite
from bench.data import Dataset, Split
from methods.registry import resolve_hparams
from pipeline.engine import RunSpec, build_method, train


def _toy_dataset(n=96, size=16):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 4, (n,), generator=g)
    split = Split(images, labels)
    return Dataset("toy", split, Split(images[:40], labels[:40]), 4, (0.5,), (0.25,), "generated")


def _suite():
    suite = load_suite("smoke")
    return replace(suite, resolution=16, budget=replace(suite.budget, value=32 * 2),
                   train=replace(suite.train, batch_size=32, precision="fp32"),
                   eval=replace(suite.eval, batch_size=48))


def _random(bn_stats="data"):
    suite, ds = _suite(), _toy_dataset()
    hp = resolve_hparams("random", {"bn_stats": bn_stats})
    return build_method(RunSpec(suite, "random", 0, hp, None), ds, 1), ds


def _batches(ds, n=48):
    x = (ds.train.images.float() / 255 - 0.5) / 0.25
    return [(torch.arange(i, i + n), x[i : i + n]) for i in range(0, len(x), n)]


def test_random_bn_statistics_are_those_of_the_pretraining_images():
    method, ds = _random("data")
    batches = _batches(ds)  # two equal batches: the cumulative average is the mean of the batch statistics
    method.initialise(iter(batches))
    bn, conv = method.backbone.bn1, method.backbone.conv1
    with torch.no_grad():
        acts = [conv(x) for _, x in batches]
    mean = torch.stack([a.mean((0, 2, 3)) for a in acts]).mean(0)
    var = torch.stack([a.transpose(0, 1).flatten(1).var(1, unbiased=True) for a in acts]).mean(0)
    assert torch.allclose(bn.running_mean, mean, atol=1e-5)
    assert torch.allclose(bn.running_var, var, rtol=1e-4)
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    assert bn.momentum == 0.1 and method.backbone.training  # momentum and mode restored
    deep = method.backbone.layer4[-1].bn2
    assert not torch.allclose(deep.running_var, torch.ones_like(deep.running_var))


def test_random_bn_stats_init_keeps_zero_mean_unit_variance():
    method, ds = _random("init")
    method.initialise(iter(_batches(ds)))
    for m in method.backbone.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
            assert torch.equal(m.running_var, torch.ones_like(m.running_var))


def test_engine_initialises_a_method_that_does_not_train(tmp_path):
    suite, ds = _suite(), _toy_dataset()
    record = train(RunSpec(suite, "random", 0, resolve_hparams("random", {}), tmp_path), ds, progress_bar=False)
    assert record["steps"] == 0 and record["status"] == "complete"
    state = torch.load(tmp_path / "encoder.pt", weights_only=True)
    assert not torch.allclose(state["bn1.running_var"], torch.ones_like(state["bn1.running_var"]))


def test_pixels_backbone_is_the_flattened_input():
    from bench.backbones import BackboneCfg, build_backbone

    enc = build_backbone(BackboneCfg(name="pixels", in_channels=3, image_size=8))
    assert enc.feature_dim == 3 * 8 * 8 and not list(enc.parameters())
    x = torch.randn(5, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    assert torch.equal(enc(x), x.reshape(5, -1))


def test_pixels_run_records_its_backbone_and_evaluates(tmp_path, monkeypatch):
    from bench import paths
    from pipeline.stages import evaluate_run, load_encoder

    monkeypatch.setattr(paths, "features_cache", lambda suite: tmp_path / "cache")
    suite, ds = _suite(), _toy_dataset()
    suite = replace(suite, eval=replace(suite.eval, protocols=["knn", "linear"]))
    record = train(RunSpec(suite, "pixels", 0, resolve_hparams("pixels", {}), tmp_path / "run"), ds,
                   progress_bar=False)
    assert record["backbone"] == "pixels" and record["family"] == "baseline" and record["steps"] == 0
    encoder, rec = load_encoder(tmp_path / "run")
    assert encoder.feature_dim == 16 * 16 and rec["backbone_cfg"]["name"] == "pixels"
    rows = evaluate_run(suite, tmp_path / "run", ds)
    values = {r["protocol"]: r["value"] for r in rows}
    assert values["knn_k20"] > 0 and values["linear"] > 0 and all(r["backbone"] == "pixels" for r in rows)


def test_pixels_semi_supervised_is_a_linear_classifier_on_pixels():
    from bench.backbones import BackboneCfg, build_backbone
    from evaluations.semi_supervised import finetune

    ds = _toy_dataset()
    enc = build_backbone(BackboneCfg(name="pixels", in_channels=1, image_size=16))
    cfg = load_suite("tiny").eval.semi
    acc = finetune(enc, enc.feature_dim, ds.train.images, ds.train.labels, ds.test.images, ds.test.labels, 4,
                   ds.mean, ds.std, 16, 1, cfg, torch.device("cpu"))
    assert 0 <= acc["top1"] <= 100


def test_pixels_refuses_other_backbones():
    from bench.config import Params
    from bench.errors import SSLBenchError
    from pipeline.plan import run_plan

    params = Params(suite="smoke", methods={"pixels": {"backbones": ["resnet18", "vit_tiny"]}})
    with pytest.raises(SSLBenchError, match="not applicable"):
        run_plan(load_suite("smoke"), params, "pixels")


def test_transfer_skips_pixels_as_not_applicable(tmp_path, capsys):
    from pipeline.transfer import transfer_run

    suite, ds = _suite(), _toy_dataset()
    train(RunSpec(suite, "pixels", 0, resolve_hparams("pixels", {}), tmp_path), ds, progress_bar=False)
    assert transfer_run(suite, tmp_path) == []
    assert "not applicable" in capsys.readouterr().out


def test_alignment_and_uniformity_by_hand():
    from evaluations.diagnostics import alignment_uniformity

    z1 = torch.tensor([[3.0, 0.0], [0.0, 2.0]])  # normalised: (1, 0), (0, 1)
    z2 = torch.tensor([[0.0, 5.0], [0.0, 1.0]])  # normalised: (0, 1), (0, 1)
    out = alignment_uniformity(z1, z2)
    assert out["alignment"] == pytest.approx((2.0 + 0.0) / 2)  # ||(1,-1)||^2 = 2, then 0
    # one pair per view: view 1 at squared distance 2 -> log exp(-4) = -4; view 2 identical -> 0
    assert out["uniformity"] == pytest.approx((-4.0 + 0.0) / 2)


def test_uniformity_averages_over_all_distinct_pairs():
    from evaluations.diagnostics import alignment_uniformity

    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # squared distances 2, 4, 2
    expected = math.log((2 * math.exp(-4) + math.exp(-8)) / 3)
    assert alignment_uniformity(z, z)["uniformity"] == pytest.approx(expected)
    assert alignment_uniformity(z, z)["alignment"] == pytest.approx(0.0)


def test_run_record_carries_alignment_and_uniformity(tmp_path):
    suite, ds = _suite(), _toy_dataset()
    train(RunSpec(suite, "simclr", 0, resolve_hparams("simclr", {}), tmp_path), ds, progress_bar=False)
    record = json.loads((tmp_path / "run.json").read_text())
    assert 0 <= record["alignment"] <= 4 and -4 <= record["uniformity"] <= 0
    assert record["diagnostics_images"] == 40


def _board():
    rows = [
        ("random", "baseline", "resnet18", 50.0, 1.0),
        ("pixels", "baseline", "pixels", 80.0, 0.0),
        ("supervised", "baseline", "resnet18", 90.0, 0.5),
        ("a", "end-to-end", "resnet18", 85.0, 1.0),  # clearly above both
        ("b", "momentum", "resnet18", 51.0, 1.0),  # above random, not clearly
        ("c", "momentum", "resnet18", 49.0, math.nan),  # below random
        ("d", "momentum", "resnet18", 70.0, math.nan),  # above random, one seed: never clearly
    ]
    return pd.DataFrame([{"method": m, "family": f, "backbone": b, "linear": v, "linear_std": s}
                         for m, f, b, v, s in rows])


def test_counts_above_a_baseline():
    from pipeline.results import above_baseline

    random = above_baseline(_board(), "random").set_index("protocol").loc["linear"]
    assert (random["methods"], random["above"], random["clearly_above"], random["below"]) == (4, 3, 1, "c")
    pixels = above_baseline(_board(), "pixels").set_index("protocol").loc["linear"]
    assert (pixels["methods"], pixels["above"], pixels["clearly_above"]) == (4, 1, 1)
    assert pixels["below"] == "b, c, d"
    assert above_baseline(_board(), "nobody").empty


def test_claims_rule_is_the_counting_rule():
    from pipeline.claims import beats_clearly, verdict

    assert beats_clearly(10.0, 1.0, 7.0, 0.5) and not beats_clearly(10.0, 1.0, 8.5, 0.5)
    assert not beats_clearly(10.0, math.nan, 0.0, 0.1)
    assert verdict([10.0, 11.0], [1.0, 2.0]) == "reproduced"
    assert verdict([1.0, 2.0], [10.0, 11.0]) == "not reproduced"
