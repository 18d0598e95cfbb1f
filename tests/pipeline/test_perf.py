"""``sslbench perf`` writes its table (no speed is asserted here: targets live in the benchmark)."""

import pandas as pd

from bench.config import Params, load_suite
from pipeline.perf import perf_plan, profile_method, run_perf
from tests.pipeline.test_engine import _toy_dataset


def _plan(suite, methods, entries=None):
    return perf_plan(suite, Params(suite=suite.name, methods={m: (entries or {}).get(m) for m in methods}), methods)


def test_perf_table_columns(tmp_path):
    suite = load_suite("smoke")
    table = run_perf(suite, _toy_dataset(), _plan(suite, ["simclr"]), tmp_path, warmup=1, repeats=1,
                     knn_size=(2000, 500, 64))
    saved = pd.read_csv(tmp_path / "cpu.csv")
    for col in ("method", "step_images_per_s", "backbone_images_per_s", "efficiency", "views_per_s",
                "views_over_step", "peak_mem_mb", "extract_images_per_s", "knn_60k_10k_512_s"):
        assert col in saved.columns
    assert (table["efficiency"] > 0).all() and saved.loc[0, "method"] == "simclr"
    assert saved.loc[0, "precision"] in ("fp32", "bf16")  # the resolved precision, never "auto"


def test_profile_lists_the_step_operators_by_self_time():
    suite = load_suite("smoke")
    text = profile_method(_plan(suite, ["simclr"])[0], _toy_dataset(), steps=1, rows=5)
    assert "Self CPU" in text and "aten::" in text


def test_perf_measures_the_runs_the_plan_builds():
    """perf takes its runs from the run plan: the params.yaml hyper-parameters (``backbones`` a sibling
    key, not one of them) and one run per listed backbone, so it measures what the board ran (issue 15:
    it measured the paper defaults, and only the suite's backbone)."""
    from pipeline.perf import _training_step
    from pipeline.plan import run_plan

    suite = load_suite("smoke")
    entry = {"loss": "batch", "backbones": [suite.backbone.name, "resnet50"]}
    plan = _plan(suite, ["cmc"], {"cmc": entry})
    assert [(r.method, r.backbone) for r in plan] == [("cmc", suite.backbone.name), ("cmc", "resnet50")]
    assert len({r.seed for r in plan}) == 1
    _, model, *_ = _training_step(plan[0], _toy_dataset())
    planned = run_plan(suite, Params(suite="smoke", methods={"cmc": entry}), "cmc")[0]
    assert model.hp == planned.hparams and model.hp.loss == "batch"
