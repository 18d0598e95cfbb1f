"""precision: auto — bf16 only where the host computes it natively; the resolved value is recorded."""

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch

from bench import precision
from bench.config import load_suite, with_precision
from methods.registry import resolve_hparams
from pipeline.engine import RunSpec, train
from pipeline.results import leaderboard, make_rows, mixed_precision
from tests.pipeline.test_engine import _suite, _toy_dataset


@pytest.fixture
def no_native_bf16(monkeypatch):
    """This host, whatever it is, answers like an AVX2-only CPU."""
    monkeypatch.setenv(precision.FORCE_ENV, "0")
    precision._warned.clear()


def test_every_suite_defaults_to_auto():
    from bench.config import suite_names

    assert {load_suite(name).train.precision for name in suite_names()} == {"auto"}


def test_auto_is_fp32_without_native_bf16(no_native_bf16):
    assert precision.resolve("auto", "cpu") == "fp32"
    assert with_precision(load_suite("smoke"), "cpu").train.precision == "fp32"


def test_auto_is_bf16_only_when_native_and_faster(monkeypatch, tmp_path):
    monkeypatch.setattr(precision, "CACHE_DIR", tmp_path)
    monkeypatch.setenv(precision.FORCE_ENV, "1")
    assert precision.resolve("auto", "cpu") == "bf16"
    monkeypatch.delenv(precision.FORCE_ENV)
    monkeypatch.setattr(precision, "native_bf16", lambda kind: True)
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 0.8)  # native, but slower on the probe
    assert precision.resolve("auto", "cpu") == "fp32"
    assert json.loads(next(tmp_path.glob("precision-*.json")).read_text())["auto"] == "fp32"  # cached per host


def test_explicit_choices_are_kept_and_emulated_bf16_warns_once(no_native_bf16, capsys, monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 1 / 7)
    assert precision.resolve("fp32", "cpu") == "fp32"
    assert precision.resolve("bf16", "cpu") == "bf16"
    assert precision.resolve("bf16", "cpu") == "bf16"
    err = capsys.readouterr().err
    assert err.count("no native bf16") == 1 and "7.0x the time of fp32" in err


def test_autocast_for_fp32_computes_in_fp32():
    a = torch.randn(4, 4)
    with precision.autocast_for("cpu", "fp32"):
        assert (a @ a).dtype == torch.float32
    with precision.autocast_for("cpu", "bf16"):
        assert (a @ a).dtype == torch.bfloat16


def test_run_records_resolved_precision_and_rows_carry_it(no_native_bf16, tmp_path):
    suite, ds = _suite(precision="auto"), _toy_dataset()
    record = train(RunSpec(suite, "simclr", 0, resolve_hparams("simclr", {}), tmp_path / "run"), ds,
                   progress_bar=False)
    on_disk = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["precision"] == on_disk["precision"] == "fp32"
    assert on_disk["precision_requested"] == "auto"
    assert {row["precision"] for row in make_rows(record, {"knn_k20": 50.0})} == {"fp32"}


def test_precision_is_part_of_the_run_identity(tmp_path):
    """A finished fp32 run is not reused for bf16 (and the other way round): numbers differ."""
    ds = _toy_dataset()
    hp = resolve_hparams("simclr", {})
    fp32 = train(RunSpec(_suite(precision="fp32"), "simclr", 0, hp, tmp_path / "run"), ds, progress_bar=False)
    bf16 = train(RunSpec(_suite(precision="bf16"), "simclr", 0, hp, tmp_path / "run"), ds, progress_bar=False)
    assert fp32["config_hash"] != bf16["config_hash"]
    assert bf16["precision"] == "bf16"


def test_board_names_mixed_precisions():
    base = {"method": "simclr", "family": "end-to-end", "backbone": "resnet18", "protocol": "knn_k20",
            "metric": "top1", "status": "complete", "deviation": "", "images_seen": 1, "steps": 1, "seconds": 1,
            "flops": 1, "peak_mem_mb": 1, "device": "cpu"}
    rows = pd.DataFrame([{**base, "seed": 0, "value": 70.0, "precision": "fp32"},
                         {**base, "method": "byol", "seed": 0, "value": 71.0, "precision": "bf16"}])
    board = leaderboard(rows)
    assert set(board["precision"]) == {"fp32", "bf16"}
    assert "mixes precisions (bf16, fp32)" in mixed_precision(board)
    assert mixed_precision(board[board["method"] == "simclr"]) == ""


def test_suite_rejects_unknown_precision(tmp_path):
    from bench.errors import SSLBenchError

    path = tmp_path / "bad.yaml"
    path.write_text("dataset: {name: fashion_mnist}\ntrain: {precision: fp16}\n")
    with pytest.raises(SSLBenchError, match="precision.*valid choices.*auto"):
        load_suite(str(path))


def test_suite_replace_keeps_other_fields():
    suite = _suite(precision="auto")
    resolved = with_precision(replace(suite), "cpu")
    assert resolved.train.batch_size == suite.train.batch_size and resolved.train.precision in ("fp32", "bf16")


def test_auto_refuses_bf16_that_computes_non_finite_values(monkeypatch, tmp_path, capsys):
    """A native, faster bf16 whose convolutions give NaN (torch 2.14.1 on 1 x 1 inputs) is not chosen."""
    monkeypatch.setattr(precision, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(precision, "native_bf16", lambda kind: True)
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 1.4)
    monkeypatch.setattr(precision, "cpu_bf16_is_finite", lambda: False)
    precision._warned.clear()
    assert precision.resolve("auto", "cpu") == "fp32"
    assert precision.resolve("bf16", "cpu") == "bf16"  # an explicit choice is kept, with a warning
    assert "non-finite values" in capsys.readouterr().err
    monkeypatch.setattr(precision, "cpu_bf16_is_finite", lambda: True)
    for cached in tmp_path.glob("precision-*.json"):
        cached.unlink()
    assert precision.resolve("auto", "cpu") == "bf16"


def test_self_test_runs_the_defective_pattern():
    """The self-test is quick and returns a verdict (False on hosts with the oneDNN defect)."""
    precision.cpu_bf16_is_finite.cache_clear()
    assert precision.cpu_bf16_is_finite(trials=3) in (True, False)
