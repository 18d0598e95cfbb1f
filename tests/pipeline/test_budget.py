"""Budget curves: the budget sweep spec, Kendall's tau and crossings on a toy table, a 2-budget smoke sweep,
and the app page with and without a CSV."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.errors import SSLBenchError
from pipeline import budget
from pipeline.sweep import apply_suite_param, load_spec, make_spec
from tests.conftest import needs_fmnist

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "app" / "views" / "7_Budget_curves.py"
FIELDS = ["suite", "method", "parameter", "value", "seed", "knn_k20", "knn_k200", "linear", "seconds",
          "images_seen", "status"]
# toy table: knn_k20 means at budgets 1, 2, 4 (a: two seeds at 1x, 60 and 62 -> 61)
TOY = {"a": {1: [60, 62], 2: [70], 4: [80]}, "b": {1: [65], 2: [66], 4: [67]}, "c": {1: [50], 2: [75], 4: [90]}}
BASELINES = {"random": {"knn_k20": 55.0, "linear": 50.0}, "pixels": {"knn_k20": 78.0, "linear": 80.0}}


def toy_rows() -> list[dict]:
    return [{"suite": "tiny", "method": m, "parameter": "budget", "value": b, "seed": s, "knn_k20": v,
             "knn_k200": v, "linear": v, "seconds": 1, "images_seen": 20480 * b, "status": "complete"}
            for m, by in TOY.items() for b, vs in by.items() for s, v in enumerate(vs)]


def write_toy(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(toy_rows())
    return path


def test_kendall_tau_by_hand():
    assert budget.kendall_tau([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert budget.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert budget.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant
    # a tie in x: 2 concordant, 0 discordant, 1 pair tied in x only -> 2 / sqrt(3 * 2)
    assert budget.kendall_tau([1, 2, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert math.isnan(budget.kendall_tau([1], [1]))


def test_tau_table_and_crossings_on_toy(tmp_path):
    rows = budget.read_rows(write_toy(tmp_path / "toy.csv"))
    means = budget.means(rows, "knn_k20")
    assert means["a"][1.0] == (61.0, pytest.approx(math.sqrt(2)), 2)
    taus = {t["budget"]: t["tau"] for t in budget.tau_table(rows) if t["protocol"] == "knn_k20"}
    # at 4x the order is c > a > b; at 1x b (65) > a (61) > c (50): all 3 pairs swap -> -1
    # at 2x c (75) > a (70) > b (66): the same order -> 1
    assert taus == {1.0: -1.0, 2.0: 1.0, 4.0: 1.0}
    cross = {c["method"]: c for c in budget.crossings(rows, BASELINES) if c["protocol"] == "knn_k20"}
    assert (cross["a"]["random"], cross["a"]["pixels"]) == (1.0, 4.0)
    assert (cross["b"]["random"], cross["b"]["pixels"]) == (1.0, budget.NEVER)
    assert (cross["c"]["random"], cross["c"]["pixels"]) == (2.0, 4.0)
    text = budget.report(rows, BASELINES)
    assert "knn_k20       1x  4x        3  -1.00" in text and "never" in text


def test_budget_specs():
    full, short = load_spec("budget"), load_spec("budget_short")
    assert len(full.trials()) == 10 * (2 + 1 + 2 + 1) and len(short.trials()) == 10 * 3
    assert full.seeds_for(4) == [0, 1] and full.seeds_for(8) == [0]
    with pytest.raises(SSLBenchError, match="not in values"):
        make_spec(name="x", methods=["simclr"], param="budget", values=[1, 2], value_seeds={3: [0]})
    with pytest.raises(SSLBenchError, match="either 'method' or 'methods'"):
        make_spec(name="x", method="simclr", methods=["byol"], param="budget", values=[1])


def test_longer_budget_has_its_own_steps_and_momentum():
    from bench.config import load_suite
    from methods.modules import scale_momentum
    from pipeline.engine import total_steps_for

    tiny = load_suite("tiny")
    steps = [total_steps_for(apply_suite_param(tiny, "budget", b), 10000) for b in (1, 2, 8)]
    assert steps == [320, 640, 2560]

    def momentum(total):  # BYOL's 0.996 at batch 4096: horizon capped at 10 % of the run
        ctx = SimpleNamespace(dataset_size=10000, batch_size=64, total_steps=total, ema_horizon_cap=0.1)
        return scale_momentum(0.996, 4096, ctx)

    assert momentum(320) == pytest.approx(1 - 1 / 32) and momentum(640) == pytest.approx(1 - 1 / 64)


@pytest.mark.slow  # ~45 s; the sweep path is tested by test_sweep.py, the budget scaling by the test above
@needs_fmnist
def test_two_budget_smoke_sweep(workdir, ray_cluster):
    spec = workdir / "budget_smoke.yaml"
    spec.write_text("methods: [byol]\nparam: budget\nvalues: [1, 2]\nseeds: [0]\nsuite: smoke\n"
                    "max_concurrent: 1\nout_dir: results/smoke/budget\n")
    env = {**os.environ, "RAY_ADDRESS": ray_cluster, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "pipeline.cli", "sweep", str(spec)], cwd=workdir, env=env, check=True,
                   capture_output=True, timeout=300)
    with (workdir / "results" / "smoke" / "budget" / "budget_smoke.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["method"], r["value"], r["images_seen"], r["status"]) for r in rows] == [
        ("byol", "1", "512", "complete"), ("byol", "2", "1024", "complete")]
    assert (workdir / "runs" / "sweeps" / "budget_smoke" / "runs" / "byol" / "budget=2" / "seed0").is_dir()
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "budget", str(spec)], cwd=workdir, env=env,
                         check=True, capture_output=True, text=True, timeout=60).stdout
    assert "Kendall's tau" in out and "byol" in out


@pytest.fixture
def app_root(tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    monkeypatch.syspath_prepend(str(REPO / "app"))
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    monkeypatch.setenv("SSLBENCH_ROOT", str(tmp_path))
    return tmp_path


def _page():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGE), default_timeout=30).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_without_csv(app_root):
    at = _page()
    assert "not run yet: `sslbench sweep budget`" in at.info[0].value


def test_page_with_toy_csv(app_root):
    write_toy(app_root / "results" / "tiny" / "budget" / "budget_short.csv")
    board = app_root / "results" / "tiny" / "leaderboard.csv"
    board.write_text("method,knn_k20,linear\nrandom,55,50\npixels,78,80\nsimclr,70,70\n")
    at = _page()
    assert len(at.get("vega_lite_chart")) == 1 and len(at.dataframe) == 2
    taus = at.dataframe[0].value
    assert list(taus.loc[taus["protocol"] == "kNN k=20", "tau"]) == [-1.0, 1.0, 1.0]
