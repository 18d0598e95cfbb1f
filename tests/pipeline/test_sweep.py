"""Ray Tune sweeps on the smoke suite: CSV rows, and a SIGKILLed sweep resumes only the missing trials."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

from bench.errors import SSLBenchError
from pipeline.sweep import load_spec, parse_grid
from tests.conftest import needs_fmnist

SPEC = """method: simclr
param: temperature
values: [0.2, 0.5, 1.0]
suite: smoke
seeds: [0]
cpus: 1
max_concurrent: 1
"""


def test_shipped_specs_load():
    from pipeline.sweep import SWEEPS_DIR

    for path in SWEEPS_DIR.glob("*.yaml"):
        assert load_spec(path.stem).suite == "tiny"


def test_bad_specs():
    with pytest.raises(SSLBenchError, match="unknown sweep"):
        load_spec("nope")
    with pytest.raises(SSLBenchError, match="param=v1"):
        parse_grid("momentum")
    assert parse_grid("momentum=0,0.9") == ("momentum", [0, 0.9])


def _rows(path):
    with path.open() as fh:
        return list(csv.DictReader(fh))


@needs_fmnist
def test_sweep_killed_and_resumed(workdir, ray_cluster):
    spec = workdir / "temp.yaml"
    spec.write_text(SPEC)
    env = {**os.environ, "RAY_ADDRESS": ray_cluster, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pipeline.cli", "sweep", str(spec)]
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = workdir / "runs" / "sweeps" / "temp" / "runs"
    deadline = time.time() + 600  # one smoke trial: seconds when idle, minutes on a loaded machine
    while time.time() < deadline and not list(runs.glob("*/seed0/row.json")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in runs.glob("*/seed0/row.json")}
    assert 1 <= len(finished) < 3, "kill the sweep after its first trial, before its last"

    subprocess.run(cmd, cwd=workdir, env=env, check=True, capture_output=True, timeout=180)
    rows = _rows(workdir / "results" / "ablations" / "temp.csv")
    assert [(r["value"], r["seed"]) for r in rows] == [("0.2", "0"), ("0.5", "0"), ("1.0", "0")]
    assert all(r["status"] == "complete" and float(r["knn_k20"]) > 0 and r["linear"] for r in rows), rows
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # finished trials were not recomputed
