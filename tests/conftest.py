"""Shared fixtures. Ray, when a test needs it, binds loopback only (one session fixture)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

REPO = Path(__file__).resolve().parents[1]
FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")

needs_fmnist = pytest.mark.skipif(not FMNIST.is_file(), reason="Fashion-MNIST not installed (make data)")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty project directory holding params.yaml; stages write runs/ and results/ here."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory):
    """One real smoke-suite run of every foundation method (prepare, pretrain, evaluate, leaderboard)."""
    from bench.config import Params, load_suite
    from pipeline.stages import build_leaderboard, evaluate, prepare, pretrain

    if not FMNIST.is_file():
        pytest.skip("Fashion-MNIST not installed (make data)")
    directory = tmp_path_factory.mktemp("smoke")
    old = os.getcwd()
    os.chdir(directory)
    try:
        suite = load_suite("smoke")
        methods = ["random", "supervised", "simclr", "mocov2", "byol"]
        params = Params(suite="smoke", methods={m: {} for m in methods})
        prepare(suite)
        for m in methods:
            pretrain(suite, params, m, progress_bar=False)
            evaluate(suite, params, m)
        board = build_leaderboard(suite, methods)
    finally:
        os.chdir(old)
    return directory, board


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for the session (loopback only); yields its address for subprocesses (RAY_ADDRESS)."""
    ray = pytest.importorskip("ray")
    from bench.distributed import ray_init

    ray_init(num_cpus=2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
