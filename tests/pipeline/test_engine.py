"""The engine: budget accounting, interrupted runs resume to the same result, divergence."""

import json
from dataclasses import replace

import pytest
import torch

from bench.config import load_suite
from bench.data import Dataset, Split
from methods.registry import resolve_hparams
from pipeline.engine import Interrupted, RunSpec, train


def _toy_dataset(n=256):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 4, (n,), generator=g)
    split = Split(images, labels)
    return Dataset("toy", split, split, 4, (0.5,), (0.25,), "generated")


def _suite(**train):
    suite = load_suite("smoke")
    return replace(suite, resolution=16, budget=replace(suite.budget, value=32 * 6),
                   train=replace(suite.train, batch_size=32, checkpoint_every=2, log_every=1, **train))


@pytest.mark.parametrize("method", ["mocov2", "byol"])
def test_interrupted_run_resumes_and_matches_uninterrupted(tmp_path, method):
    suite, ds = _suite(precision="fp32"), _toy_dataset()
    hp = resolve_hparams(method, {})
    full = train(RunSpec(suite, method, 0, hp, tmp_path / "full"), ds, progress_bar=False)
    with pytest.raises(Interrupted):
        train(RunSpec(suite, method, 0, hp, tmp_path / "cut"), ds, stop_after=3, progress_bar=False)
    resumed = train(RunSpec(suite, method, 0, hp, tmp_path / "cut"), ds, progress_bar=False)
    assert resumed["steps"] == full["steps"] == 6
    assert resumed["images_seen"] == full["images_seen"] == 192
    a = torch.load(tmp_path / "full" / "encoder.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "encoder.pt", weights_only=True)
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) == list(range(1, 7))  # no duplicated or missing log rows


def test_finished_run_is_not_retrained(tmp_path):
    suite, ds = _suite(), _toy_dataset()
    spec = RunSpec(suite, "simclr", 0, resolve_hparams("simclr", {}), tmp_path)
    first = train(spec, ds, progress_bar=False)
    assert train(spec, ds, progress_bar=False)["finished"] == first["finished"]


def test_nan_loss_marks_the_run_diverged(tmp_path):
    suite, ds = _suite(), _toy_dataset()
    hp = resolve_hparams("simclr", {"optimizer": {"lr": 1e12}, "temperature": 1e-6})
    record = train(RunSpec(suite, "simclr", 0, hp, tmp_path), ds, progress_bar=False)
    assert record["status"] == "diverged"
    assert record["diverged_step"] is not None and record["steps"] == record["diverged_step"]


def test_run_records_cost(tmp_path):
    suite, ds = _suite(), _toy_dataset()
    record = train(RunSpec(suite, "byol", 1, resolve_hparams("byol", {}), tmp_path), ds, progress_bar=False)
    assert record["flops_per_step"] > 0 and record["flops"] == record["flops_per_step"] * 6
    assert record["peak_mem_mb"] > 0 and record["seconds"] > 0 and record["device"] == "cpu"
    line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"loss", "images_per_s", "embed_std", "eff_rank", "tau"} <= set(line)


def test_supervised_baseline_learns_labels(tmp_path):
    suite, ds = _suite(), _toy_dataset()
    record = train(RunSpec(suite, "supervised", 0, resolve_hparams("supervised", {}), tmp_path), ds,
                   progress_bar=False)
    assert record["status"] == "complete"


def test_code_change_invalidates_a_finished_run(tmp_path, monkeypatch):
    import pipeline.engine as engine

    suite, ds = _suite(), _toy_dataset()
    spec = RunSpec(suite, "simclr", 0, resolve_hparams("simclr", {}), tmp_path)
    first = train(spec, ds, progress_bar=False)
    monkeypatch.setattr(engine, "code_digest", lambda cls: "changed-code")
    second = train(spec, ds, progress_bar=False)
    assert second["config_hash"] != first["config_hash"] and second["finished"] >= first["finished"]
    assert second["steps"] == first["steps"]


def test_flops_budget_trains_the_steps_it_pays_for(tmp_path):
    """A flops budget of five steps' FLOPs trains five steps (it trained exactly one: issue 15)."""
    suite, ds = _suite(precision="fp32"), _toy_dataset()
    hp = resolve_hparams("simclr", {})
    one = train(RunSpec(suite, "simclr", 0, hp, tmp_path / "steps"), ds, progress_bar=False)["flops_per_step"]
    flops = replace(suite, budget=replace(suite.budget, unit="flops", value=5 * one))
    record = train(RunSpec(flops, "simclr", 0, hp, tmp_path / "flops"), ds, progress_bar=False)
    assert record["steps"] == 5 and record["flops"] == pytest.approx(5 * one)
