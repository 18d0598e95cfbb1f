"""The DVC pipeline on the smoke suite: runs, is a no-op the second time, re-runs only what changed."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, needs_fmnist

DVC = Path(sys.executable).with_name("dvc")


def _dvc(*args, cwd):
    env = {**os.environ, "PATH": f"{DVC.parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # stages call `sslbench`
    return subprocess.run([str(DVC), *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


@needs_fmnist
@pytest.mark.skipif(not DVC.exists(), reason="dvc not installed in this environment")
def test_repro_then_noop_then_only_changed_method(tmp_path):
    for name in ("dvc.yaml", "bench", "methods", "evaluations", ".dvc/config"):
        src = REPO / name
        dst = tmp_path / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    (tmp_path / "results" / "ablations").mkdir(parents=True)  # the claims stage reads committed sweep CSVs
    (tmp_path / "params.yaml").write_text(
        "suite: smoke\nseeds: null\nsweeps: []\ntransfer: []\nmethods:\n  random: {}\n  simclr: {}\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    first = _dvc("repro", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (tmp_path / "results/smoke/leaderboard.csv").is_file()
    assert (tmp_path / "results/claims.csv").is_file()  # every claim "not run" without sweeps
    second = _dvc("repro", cwd=tmp_path)
    assert second.returncode == 0 and "Running stage" not in second.stdout, second.stdout
    (tmp_path / "params.yaml").write_text(
        "suite: smoke\nseeds: null\nsweeps: []\ntransfer: []\nmethods:\n  random: {}\n  simclr: {temperature: 0.3}\n")
    status = _dvc("status", cwd=tmp_path).stdout
    assert "pretrain@simclr" in status and "pretrain@random" not in status and "evaluate@random" not in status
    metrics = _dvc("metrics", "show", cwd=tmp_path)
    assert "knn_k20" in metrics.stdout or "simclr" in metrics.stdout
