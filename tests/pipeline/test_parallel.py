"""Seeds side by side: the process plan, the same runs as one after the other, errors surface."""

from __future__ import annotations

import json
import os

import pytest

from bench.errors import SSLBenchError
from pipeline import parallel
from tests.conftest import needs_fmnist


def test_job_plan_shares_the_cores(monkeypatch):
    monkeypatch.setattr(parallel, "cpu_cores", lambda: 4)
    assert parallel.job_plan(0, 2, "cpu") == (2, 2)  # one process per run, two threads each
    assert parallel.job_plan(0, 8, "cpu") == (4, 1)  # never more processes than cores
    assert parallel.job_plan(1, 8, "cpu") == (1, 0)  # one process keeps the automatic thread count
    assert parallel.job_plan(0, 1, "cpu") == (1, 0)
    assert parallel.job_plan(0, 2, "cuda") == (1, 0)  # a GPU run owns the device


def _square(x: int) -> int:
    return x * x


def _refuse(x: int) -> int:
    raise SSLBenchError(f"run {x} refused.")


def _die(x: int) -> int:
    os._exit(3)


def test_run_each_keeps_order_and_raises_worker_errors():
    assert parallel.run_each(_square, [3, 1, 2], jobs=2, threads=1) == [9, 1, 4]
    with pytest.raises(SSLBenchError, match="refused"):
        parallel.run_each(_refuse, [1, 2], jobs=2, threads=1)
    with pytest.raises(SSLBenchError, match="worker process died"):  # not a hang
        parallel.run_each(_die, [1, 2], jobs=2, threads=1)


@needs_fmnist
def test_side_by_side_runs_are_the_same_runs(workdir):
    from bench.config import Params, load_suite
    from pipeline.stages import evaluate, pretrain

    suite = load_suite("smoke")
    params = Params(suite="smoke", seeds=[0, 1], methods={"simclr": {}})
    side = pretrain(suite, params, "simclr", runs=workdir / "side", progress_bar=False, jobs=2)
    assert [r["threads"] for r in side] == [1, 1] and [r["seed"] for r in side] == [0, 1]
    # One process, all cores: the same identities, so both runs are found finished, not re-trained.
    again = pretrain(suite, params, "simclr", runs=workdir / "side", progress_bar=False, jobs=1)
    assert [r["config_hash"] for r in again] == [r["config_hash"] for r in side]
    assert [r["finished"] for r in again] == [r["finished"] for r in side]
    rows = evaluate(suite, params, "simclr", runs=workdir / "side", jobs=2)
    assert {(r["seed"], r["protocol"]) for r in rows} == {(s, p) for s in (0, 1)
                                                         for p in ("knn_k20", "knn_k200", "linear")}
    record = json.loads((workdir / "side" / "smoke" / "simclr" / "seed1" / "run.json").read_text())
    assert record["status"] == "complete" and record["steps"] == 8


def test_one_thread_cpu_workers_are_forked_others_spawned(monkeypatch):
    monkeypatch.setattr(parallel.torch.cuda, "is_available", lambda: False)
    assert parallel.start_method(1) == "fork"  # no torch import per worker
    assert parallel.start_method(2) == "spawn"  # a forked child's own OpenMP team can hang
    monkeypatch.setattr(parallel.torch.cuda, "is_available", lambda: True)
    assert parallel.start_method(1) == "spawn"  # CUDA cannot be re-initialised in a forked child
