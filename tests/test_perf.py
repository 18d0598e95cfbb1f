"""``sslbench perf`` writes its table (no speed is asserted here: targets live in the benchmark)."""

import pandas as pd

from bench.config import load_suite
from pipeline.perf import profile_method, run_perf
from tests.test_engine import _toy_dataset


def test_perf_table_columns(tmp_path):
    suite = load_suite("smoke")
    table = run_perf(suite, _toy_dataset(), ["simclr"], tmp_path, warmup=1, repeats=1, knn_size=(2000, 500, 64))
    saved = pd.read_csv(tmp_path / "cpu.csv")
    for col in ("method", "step_images_per_s", "backbone_images_per_s", "efficiency", "views_per_s",
                "views_over_step", "peak_mem_mb", "extract_images_per_s", "knn_60k_10k_512_s"):
        assert col in saved.columns
    assert (table["efficiency"] > 0).all() and saved.loc[0, "method"] == "simclr"
    assert saved.loc[0, "precision"] in ("fp32", "bf16")  # the resolved precision, never "auto"


def test_profile_lists_the_step_operators_by_self_time():
    text = profile_method(load_suite("smoke"), _toy_dataset(), "simclr", steps=1, rows=5)
    assert "Self CPU" in text and "aten::" in text


def test_perf_measures_the_hyper_parameters_the_plan_runs():
    """perf resolves a method's params.yaml entry as the run plan does (``backbones`` is a sibling
    key, not a hyper-parameter), so it measures what the board ran (issue 15: it measured defaults)."""
    from bench.config import Params
    from pipeline.perf import _training_step
    from pipeline.plan import run_plan

    suite = load_suite("smoke")
    entry = {"loss": "batch", "backbones": [suite.backbone.name]}
    _, model, *_ = _training_step(suite, _toy_dataset(), "cmc", entry)
    planned = run_plan(suite, Params(suite="smoke", methods={"cmc": entry}), "cmc")[0]
    assert model.hp == planned.hparams and model.hp.loss == "batch"
