"""Faults: kill -9 mid-run and mid-write, concurrent writers, corrupt checkpoints, NaN losses,
exceptions and out-of-memory in one method, missing datasets.

Every test works in a temporary project directory holding a small synthetic prepared
dataset (``data/<suite>/``), so none needs Fashion-MNIST unless marked. Training runs
use a ResNet-18 of width 4 at 16 px, one thread, a few dozen steps.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.config import load_suite
from bench.data import INSTALL_HINT, Dataset, Split, load_cache, save_cache
from bench.io import atomic_write_text, file_lock
from methods.registry import resolve_hparams
from pipeline import cli
from pipeline.engine import Interrupted, RunSpec, train
from pipeline.results import ROW_COLUMNS, read_rows, write_leaderboard, write_rows
from tests.conftest import FMNIST, REPO, needs_fmnist

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
       "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "1"}
FORK = multiprocessing.get_context("fork")


# ----------------------------------------------------------------------------- helpers

def make_project(root: Path, name: str = "faults", budget: int = 128, checkpoint_every: int = 2,
                 log_every: int = 1, n_train: int = 256, n_test: int = 128) -> Path:
    """A project directory with a synthetic prepared dataset and a tiny suite file; returns the file."""
    gen = torch.Generator().manual_seed(0)

    def split(n):
        return Split(torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8, generator=gen), torch.arange(n) % 4)

    save_cache(Dataset("synthetic", split(n_train), split(n_test), 4, (0.5,), (0.25,), "generated"),
               root / "data" / name)
    path = root / f"{name}.yaml"
    path.write_text(
        f"name: {name}\n"
        "description: fault tests (a synthetic dataset is prepared in data/<name>)\n"
        "resolution: 16\n"
        "backbone: {name: resnet18, width: 4, small_stem: true}\n"
        f"budget: {{unit: images_seen, value: {budget}}}\n"
        f"train: {{batch_size: 16, precision: fp32, checkpoint_every: {checkpoint_every}, "
        f"log_every: {log_every}, threads: 1}}\n"
        "eval: {knn: {k: [20, 200]}, linear: {epochs: 2, batch_size: 64}, batch_size: 128}\n"
        "seeds: [0]\n")
    return path


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``sslbench ARGV`` in-process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(stderr: str) -> list[str]:
    """The ``sslbench: error:`` lines (progress bars share stderr, and use carriage returns)."""
    return [ln.strip() for ln in stderr.splitlines() if "sslbench: error:" in ln]


def assert_one_clean_error(code: int, stderr: str, expected_code: int, *needles: str) -> str:
    assert code == expected_code, stderr
    assert "Traceback" not in stderr, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("sslbench: error:"), stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def metric_steps(run: Path) -> list[int]:
    return [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]


def checkpoint_step(run: Path) -> int:
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        if (run / name).is_file():
            return torch.load(run / name, weights_only=True)["step"]
    raise AssertionError(f"no checkpoint in {run}")


def wait_until(condition, proc: subprocess.Popen, timeout: float = 180.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return condition()
        time.sleep(0.002)
    return False


def sslbench_process(cwd: Path, *argv, log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *map(str, argv)], cwd=cwd, env=ENV,
                                stdout=fh, stderr=fh)


@pytest.fixture(autouse=True)
def _restore_threads():
    """Suites here pin one torch thread; give the rest of the session its setting back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return make_project(tmp_path)


# ------------------------------------------------------------- kill -9 during pretraining

def test_kill_9_during_pretraining_resumes_to_the_same_budget(tmp_path, capsys, monkeypatch):
    """SIGKILL twice (once in the first run, once in the resumed run), then finish: one row per step."""
    suite_file = make_project(tmp_path, budget=16 * 64, checkpoint_every=4, log_every=1)
    run = tmp_path / "runs" / "faults" / "mocov2" / "seed0"
    log = tmp_path / "processes.log"
    argv = ("pretrain", "--suite", suite_file, "--method", "mocov2")

    proc = sslbench_process(tmp_path, *argv, log=log)
    assert wait_until(lambda: (run / "checkpoint.pt").is_file(), proc), log.read_text()
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (run / "run.json").exists(), "the run finished before it could be killed"
    first_step = checkpoint_step(run)
    kept = [ln for ln in (run / "metrics.jsonl").read_text().splitlines() if json.loads(ln)["step"] <= first_step]

    proc = sslbench_process(tmp_path, *argv, log=log)
    assert wait_until(_checkpoint_reaches(run, first_step + 8), proc), log.read_text()
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (run / "run.json").exists(), "the resumed run finished before it could be killed"
    second_step = checkpoint_step(run)
    assert second_step > first_step

    done = subprocess.run([sys.executable, "-m", "pipeline.cli", *map(str, argv)], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "complete"
    assert record["steps"] == 64 and record["images_seen"] == 16 * 64
    assert metric_steps(run) == list(range(1, 65))  # strictly increasing, no duplicate, none missing
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert lines[: len(kept)] == kept  # the first run's rows survived both resumes: it resumed, not restarted
    assert checkpoint_step(run) == 64
    assert not list(run.glob(".*.tmp")), "a killed writer's temp file was left behind"

    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # evaluating twice replaces the rows, never appends
        code, _, err = run_cli(capsys, "evaluate", "--suite", suite_file, "--method", "mocov2")
        assert code == 0, err
        rows = pd.read_csv(tmp_path / "results" / "faults" / "rows" / "mocov2.csv")
        assert sorted(rows["protocol"]) == ["knn_k20", "knn_k200", "linear"]
        assert set(rows["steps"]) == {64} and set(rows["images_seen"]) == {16 * 64}


def _checkpoint_reaches(run: Path, step: int):
    """A cheap poll: read the checkpoint's step only when a new checkpoint file has been renamed in."""
    seen = {"inode": None, "step": -1}

    def reached() -> bool:
        try:
            inode = (run / "checkpoint.pt").stat().st_ino
            if inode != seen["inode"]:
                seen["step"] = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
                seen["inode"] = inode
        except (OSError, RuntimeError, EOFError):
            return False
        return seen["step"] >= step

    return reached


# -------------------------------------------------------- kill -9 while results are written

def _table(version: int, n: int = 6000) -> list[dict]:
    base = {c: 0 for c in ROW_COLUMNS}
    return [{**base, "suite": "faults", "method": f"m{i % 7}", "backbone": "resnet18", "seed": i,
             "protocol": "knn_k20", "metric": "top1", "value": version * 100 + (i % 100) / 100,
             "status": "complete", "deviation": "", "device": "cpu", "git_rev": f"v{version}",
             "config_hash": f"{version:012d}"} for i in range(n)]


def _board(version: int, n: int = 300) -> pd.DataFrame:
    return pd.DataFrame([{"rank": i + 1, "method": f"method{i}", "backbone": "resnet18",
                          "knn_k20": version * 10 + i / 1000, "knn_k20_std": 0.0, "n_seeds": 1,
                          "status": "complete"} for i in range(n)])


def _results_writer(directory: Path, ready) -> None:
    tables, boards = [_table(0), _table(1)], [_board(0), _board(1)]
    i = 0
    while True:
        write_rows(directory / "rows" / "m.csv", tables[i % 2])
        write_leaderboard(boards[i % 2], directory)
        i += 1
        if i == 2:
            ready.set()


def test_kill_9_while_results_are_written_leaves_a_complete_table(tmp_path):
    reference = tmp_path / "reference"
    expected_rows, expected_boards, expected_metrics = set(), set(), set()
    for version in (0, 1):
        write_rows(reference / "rows" / "m.csv", _table(version))
        write_leaderboard(_board(version), reference)
        expected_rows.add((reference / "rows" / "m.csv").read_bytes())
        expected_boards.add((reference / "leaderboard.csv").read_bytes())
        expected_metrics.add((reference / "metrics.json").read_bytes())

    reference_files = {str(p.relative_to(reference)) for p in reference.rglob("*") if not p.name.startswith(".")}
    directory = tmp_path / "results"
    rng = random.Random(9)
    kills, mid_write = 10, 0
    for k in range(kills):
        ready = FORK.Event()
        writer = FORK.Process(target=_results_writer, args=(directory, ready), daemon=True)
        writer.start()
        assert ready.wait(60)
        if k % 2:  # kill the moment a temp file appears: certainly in the middle of a write
            deadline = time.monotonic() + 10
            while not any(p.name.endswith(".tmp") for p in directory.rglob(".*")) and time.monotonic() < deadline:
                pass
        else:
            time.sleep(rng.uniform(0.0, 0.2))
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        assert writer.exitcode == -signal.SIGKILL
        mid_write += any(p.name.endswith(".tmp") for p in directory.rglob(".*"))

        # Whatever the moment, each table is one complete version, and a leftover temp file is
        # hidden (never read as the table).
        assert (directory / "rows" / "m.csv").read_bytes() in expected_rows
        assert (directory / "leaderboard.csv").read_bytes() in expected_boards
        assert (directory / "metrics.json").read_bytes() in expected_metrics
        assert len(read_rows([directory / "rows" / "m.csv"])) == 6000
        json.loads((directory / "metrics.json").read_text())
        visible = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if not p.name.startswith("."))
        per_row = [v for v in visible if v.startswith(("metrics/", "plots"))]  # `dvc metrics` / `dvc plots` files
        assert [v for v in visible if v not in per_row and v != "metrics"] == [
            "leaderboard.csv", "metrics.json", "rows", "rows/m.csv"]
        assert set(per_row) <= reference_files  # never a half-named or foreign file
        for path in per_row:
            if path.endswith(".json"):
                json.loads((directory / path).read_text())  # each one complete
    assert mid_write >= 1  # some kills (usually all the deliberate ones) hit a write in progress

    write_rows(directory / "rows" / "m.csv", _table(0))  # the next write sweeps dead writers' temp files
    write_leaderboard(_board(0), directory)
    assert not [p for p in directory.rglob("*") if p.name.endswith(".tmp")]
    mode = (directory / "rows" / "m.csv").stat().st_mode & 0o777
    assert mode == 0o666 & ~_umask(), oct(mode)  # the usual permissions, not mkstemp's 0600


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------ concurrent writers

def _append_rows(path: Path, writer: int, count: int) -> None:
    for i in range(count):
        with file_lock(path):
            frame = read_rows([path])
            row = {**{c: 0 for c in ROW_COLUMNS}, "method": f"w{writer}", "seed": i, "protocol": "knn_k20",
                   "metric": "top1", "status": "complete", "deviation": "", "device": "cpu"}
            frame = pd.concat([frame, pd.DataFrame([row])], ignore_index=True) if len(frame) else pd.DataFrame([row])
            atomic_write_text(path, frame[ROW_COLUMNS].to_csv(index=False))


def test_two_writers_of_the_same_rows_file_lose_no_row(tmp_path):
    path = tmp_path / "results" / "rows" / "shared.csv"
    writers = [FORK.Process(target=_append_rows, args=(path, w, 25)) for w in (0, 1)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
        assert w.exitcode == 0
    frame = read_rows([path])
    assert len(frame) == 50
    assert set(zip(frame["method"], frame["seed"])) == {(f"w{w}", i) for w in (0, 1) for i in range(25)}
    assert not list(path.parent.glob("*.lock")), "the lock must not leave files among the tables"


def _board_writer(directory: Path, version: int) -> None:
    for _ in range(20):
        write_leaderboard(_board(version, n=50), directory)


def test_two_leaderboard_writers_leave_a_matching_table_and_metrics(tmp_path):
    writers = [FORK.Process(target=_board_writer, args=(tmp_path, v)) for v in (0, 1)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
        assert w.exitcode == 0
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["method0"]["knn_k20"] == board.loc[board["method"] == "method0", "knn_k20"].item()


def test_two_evaluate_processes_at_once_then_the_leaderboard_has_both(tmp_path, capsys, monkeypatch):
    suite_file = make_project(tmp_path, budget=32)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "pretrain", "--suite", suite_file, "--method", "random", "--method", "simclr")
    assert code == 0, err
    log = tmp_path / "evaluate.log"
    procs = [sslbench_process(tmp_path, "evaluate", "--suite", suite_file, "--method", m, log=log)
             for m in ("random", "simclr")]
    assert [p.wait(300) for p in procs] == [0, 0], log.read_text()
    code, out, err = run_cli(capsys, "leaderboard", "--suite", suite_file, "--method", "random", "--method", "simclr")
    assert code == 0, err
    board = pd.read_csv(tmp_path / "results" / "faults" / "leaderboard.csv")
    assert sorted(board["method"]) == ["random", "simclr"]
    assert board[["knn_k20", "knn_k200", "linear"]].notna().all().all()
    rows = read_rows([tmp_path / "results" / "faults" / "rows" / f"{m}.csv" for m in ("random", "simclr")])
    assert len(rows) == 6 and not rows.duplicated(["method", "seed", "protocol"]).any()


# ------------------------------------------------------------------- corrupt checkpoints

def _corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(random.Random(0).randbytes(len(data)))
    elif how == "empty":
        path.write_bytes(b"")
    else:
        raise ValueError(how)


def _engine_setup(project_file: Path):
    suite = load_suite(str(project_file))
    dataset = load_cache(project_file.parent / "data" / "faults")
    return replace(suite, budget=replace(suite.budget, value=16 * 8)), dataset


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys, how):
    suite, dataset = _engine_setup(make_project(tmp_path))
    hp = resolve_hparams("byol", {})
    full = train(RunSpec(suite, "byol", 0, hp, tmp_path / "full"), dataset, progress_bar=False)
    cut = tmp_path / "cut"
    with pytest.raises(Interrupted):
        train(RunSpec(suite, "byol", 0, hp, cut), dataset, stop_after=5, progress_bar=False)
    assert torch.load(cut / "checkpoint.prev.pt", weights_only=True)["step"] == 2
    _corrupt(cut / "checkpoint.pt", how)
    capsys.readouterr()
    resumed = train(RunSpec(suite, "byol", 0, hp, cut), dataset, progress_bar=False)
    out = capsys.readouterr().out
    assert f"checkpoint '{cut / 'checkpoint.pt'}' is corrupt" in out and "Falling back" in out
    assert resumed["status"] == "complete" and resumed["steps"] == full["steps"] == 8
    assert metric_steps(cut) == list(range(1, 9))
    a = torch.load(tmp_path / "full" / "encoder.pt", weights_only=True)
    b = torch.load(cut / "encoder.pt", weights_only=True)
    for key in a:  # resumed from step 2 and still bit-for-bit the uninterrupted run
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key


def test_both_checkpoints_corrupt_restarts_cleanly(tmp_path, capsys):
    suite, dataset = _engine_setup(make_project(tmp_path))
    hp = resolve_hparams("simclr", {})
    with pytest.raises(Interrupted):
        train(RunSpec(suite, "simclr", 0, hp, tmp_path), dataset, stop_after=5, progress_bar=False)
    _corrupt(tmp_path / "checkpoint.pt", "truncated")
    _corrupt(tmp_path / "checkpoint.prev.pt", "garbage")
    capsys.readouterr()
    record = train(RunSpec(suite, "simclr", 0, hp, tmp_path), dataset, progress_bar=False)
    out = capsys.readouterr().out
    assert "checkpoint.pt'" in out and "checkpoint.prev.pt'" in out
    assert record["status"] == "complete" and record["steps"] == 8
    assert metric_steps(tmp_path) == list(range(1, 9))


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_corrupt_encoder_stops_evaluate_with_one_sentence_and_keeps_the_rows(project, capsys, how):
    code, _, err = run_cli(capsys, "pretrain", "--suite", project, "--method", "random")
    assert code == 0, err
    code, _, err = run_cli(capsys, "evaluate", "--suite", project, "--method", "random")
    assert code == 0, err
    rows = Path("results/faults/rows/random.csv")
    before = rows.read_bytes()
    encoder = Path.cwd() / "runs" / "faults" / "random" / "seed0" / "encoder.pt"
    _corrupt(encoder, how)
    code, _, err = run_cli(capsys, "evaluate", "--suite", project, "--method", "random")
    assert_one_clean_error(code, err, 2, f"'{encoder}'", "corrupt")
    assert rows.read_bytes() == before  # no half-written table


def test_encoder_of_another_backbone_is_refused(project, capsys):
    assert run_cli(capsys, "pretrain", "--suite", project, "--method", "random")[0] == 0
    encoder = Path.cwd() / "runs" / "faults" / "random" / "seed0" / "encoder.pt"
    torch.save({"conv1.weight": torch.zeros(3, 3)}, encoder)
    code, _, err = run_cli(capsys, "evaluate", "--suite", project, "--method", "random")
    assert_one_clean_error(code, err, 2, str(encoder), "does not match backbone")


# ------------------------------------------------------------------------ NaN / Inf loss

def _simclr():
    """The SimCLR class, imported only after the registry has loaded every method.

    (methods/registry.py loads all method modules only while its registry is empty, so
    importing one method module first would hide the others.)
    """
    from methods.registry import get_method

    return get_method("simclr")


class _Inject:
    """Wraps a method's ``training_step``: at step ``at`` poison the loss or raise."""

    def __init__(self, original, at: int, poison: float | None = None, exc: BaseException | None = None):
        self.original, self.at, self.poison, self.exc, self.calls, self.active = original, at, poison, exc, 0, True

    def __get__(self, obj, objtype=None):
        return lambda batch: self(obj, batch)

    def __call__(self, method, batch):
        step, self.calls = self.calls, self.calls + 1  # the engine calls training_step once per step
        if self.active and step == self.at:
            if self.exc is not None:
                raise self.exc
            result = self.original(method, batch)
            result.loss = result.loss * self.poison
            return result
        return self.original(method, batch)


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_non_finite_loss_marks_the_run_diverged_and_the_others_continue(project, capsys, monkeypatch, poison):
    SimCLR = _simclr()
    monkeypatch.setattr(SimCLR, "training_step", _Inject(SimCLR.training_step, at=3, poison=poison))
    methods = ("--method", "simclr", "--method", "random", "--method", "byol")
    code, _, err = run_cli(capsys, "pretrain", "--suite", project, *methods)
    assert code == 0, err
    record = json.loads(Path("runs/faults/simclr/seed0/run.json").read_text())
    assert record["status"] == "diverged" and record["diverged_step"] == 3 and record["steps"] == 3
    for other in ("random", "byol"):
        assert json.loads(Path(f"runs/faults/{other}/seed0/run.json").read_text())["status"] == "complete"
    code, _, err = run_cli(capsys, "evaluate", "--suite", project, *methods)
    assert code == 0, err
    code, out, err = run_cli(capsys, "leaderboard", "--suite", project, *methods)
    assert code == 0, err
    board = pd.read_csv("results/faults/leaderboard.csv").set_index("method")
    assert board.loc["simclr", "status"] == "diverged" and pd.isna(board.loc["simclr", "linear"])
    assert board.loc["random", "status"] == board.loc["byol", "status"] == "complete"
    assert "diverged" in out
    metrics = json.loads(Path("results/faults/metrics.json").read_text())
    assert metrics["simclr"] == {} and "linear" in metrics["byol"]


# ------------------------------------------------------ an exception or OOM in one method

def test_exception_in_one_method_fails_only_it_and_a_rerun_retries_only_it(project, capsys, monkeypatch):
    SimCLR = _simclr()
    inject = _Inject(SimCLR.training_step, at=5, exc=RuntimeError("injected failure\nsecond line"))
    monkeypatch.setattr(SimCLR, "training_step", inject)
    methods = ("--method", "random", "--method", "simclr", "--method", "supervised")
    code, _, err = run_cli(capsys, "pretrain", "--suite", project, *methods)
    log = Path.cwd() / "runs" / "faults" / "errors" / "simclr.pretrain.log"
    line = assert_one_clean_error(code, err, 1, "pretrain of method 'simclr'", "RuntimeError: injected failure",
                                  str(log))
    assert "second line" in line  # a multi-line message is folded into the one line
    assert "Traceback" in log.read_text() and "injected failure" in log.read_text()
    runs = Path("runs/faults")
    finished = {m: (runs / m / "seed0" / "run.json").stat().st_mtime_ns for m in ("random", "supervised")}
    assert not (runs / "simclr" / "seed0" / "run.json").exists()
    assert checkpoint_step(runs / "simclr" / "seed0") == 4
    kept = (runs / "simclr" / "seed0" / "metrics.jsonl").read_text().splitlines()[:4]

    inject.active = False
    code, _, err = run_cli(capsys, "pretrain", "--suite", project, *methods)
    assert code == 0 and not error_lines(err), err
    assert not log.exists(), "a successful retry clears the failure log"
    record = json.loads((runs / "simclr" / "seed0" / "run.json").read_text())
    assert record["status"] == "complete" and record["steps"] == 8
    assert (runs / "simclr" / "seed0" / "metrics.jsonl").read_text().splitlines()[:4] == kept  # resumed
    assert metric_steps(runs / "simclr" / "seed0") == list(range(1, 9))
    for method, stamp in finished.items():  # the others were not retrained
        assert (runs / method / "seed0" / "run.json").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("exc", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 8.00 GiB total capacity)\n"
                           "If reserved memory is >> allocated memory try setting max_split_size_mb"),
    MemoryError(),
], ids=["cuda-oom", "cpu-oom"])
def test_out_of_memory_is_one_line_with_a_hint(project, capsys, monkeypatch, exc):
    SimCLR = _simclr()
    monkeypatch.setattr(SimCLR, "training_step", _Inject(SimCLR.training_step, at=1, exc=exc))
    code, _, err = run_cli(capsys, "pretrain", "--suite", project, "--method", "simclr", "--method", "random")
    assert_one_clean_error(code, err, 1, "pretrain of method 'simclr'", type(exc).__name__, "out of memory",
                           "train.batch_size", "simclr.pretrain.log")
    assert json.loads(Path("runs/faults/random/seed0/run.json").read_text())["status"] == "complete"


def test_exception_while_evaluating_one_method_leaves_the_others_rows(project, capsys, monkeypatch):
    import pipeline.stages

    assert run_cli(capsys, "pretrain", "--suite", project, "--method", "random", "--method", "simclr")[0] == 0
    original, calls = pipeline.stages.linear_probe, []

    def failing_probe(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("probe exploded")
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline.stages, "linear_probe", failing_probe)
    code, _, err = run_cli(capsys, "evaluate", "--suite", project, "--method", "simclr", "--method", "random")
    assert_one_clean_error(code, err, 1, "evaluate of method 'simclr'", "ValueError: probe exploded",
                           "simclr.evaluate.log")
    assert Path("results/faults/rows/random.csv").is_file()
    assert not Path("results/faults/rows/simclr.csv").exists()
    code, _, err = run_cli(capsys, "evaluate", "--suite", project, "--method", "simclr")
    assert code == 0, err
    assert len(pd.read_csv("results/faults/rows/simclr.csv")) == 3
    assert not Path("runs/faults/errors/simclr.evaluate.log").exists()


def test_exception_in_a_real_process_is_one_line_and_exit_code_1(tmp_path):
    suite_file = make_project(tmp_path)
    script = (
        "import sys\n"
        "from methods.registry import get_method\n"
        "SimCLR = get_method('simclr')\n"
        "def boom(self, batch):\n"
        "    raise KeyError('no such view')\n"
        "SimCLR.training_step = boom\n"
        "from pipeline.cli import main\n"
        f"sys.exit(main(['pretrain', '--suite', {str(suite_file)!r}, '--method', 'simclr', '--method', 'random']))\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert_one_clean_error(proc.returncode, proc.stderr, 1, "'simclr'", "KeyError", "no such view")
    assert (tmp_path / "runs" / "faults" / "random" / "seed0" / "run.json").is_file()
    assert "boom" in (tmp_path / "runs" / "faults" / "errors" / "simclr.pretrain.log").read_text()


# --------------------------------------------------------------------- missing datasets

def _suite_without_cache(tmp_path: Path, dataset: str) -> Path:
    path = tmp_path / "nodata.yaml"
    path.write_text(f"name: nodata\ndataset: {dataset}\nresolution: 16\nbudget: {{value: 64}}\n")
    return path


@pytest.mark.parametrize("command", ["prepare", "pretrain", "evaluate"])
def test_missing_fashion_mnist_names_the_install_command(tmp_path, capsys, monkeypatch, command):
    import bench.data

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench.data, "DEBIAN_FASHION_MNIST", str(tmp_path / "not-installed"))
    suite_file = _suite_without_cache(tmp_path, "{name: fashion_mnist}")
    argv = [command, "--suite", suite_file] + ([] if command == "prepare" else ["--method", "simclr"])
    code, _, err = run_cli(capsys, *argv)
    assert_one_clean_error(code, err, 2, INSTALL_HINT, str(tmp_path / "not-installed"))
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("present, missing", [
    ([], "train-images-idx3-ubyte.gz"),
    (["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"],
     "t10k-labels-idx1-ubyte.gz"),
])
def test_wrong_fashion_mnist_path_names_the_path_and_what_was_expected(tmp_path, capsys, monkeypatch, present,
                                                                       missing):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "elsewhere"
    root.mkdir()
    for name in present:
        (root / name).write_bytes(b"")
    code, _, err = run_cli(capsys, "prepare", "--suite", _suite_without_cache(tmp_path, f"{{root: {root}}}"))
    assert_one_clean_error(code, err, 2, f"'{root}'", "expected the four idx .gz files", missing)


@pytest.mark.parametrize("dataset, needles", [
    ("{name: cifar10}", ["dataset 'cifar10' needs dataset.root"]),
    ("{name: cifar10, root: /nonexistent/cifar}", ["'/nonexistent/cifar' does not exist", "cifar10"]),
    ("{name: imagefolder, root: /nonexistent/imagenet}", ["'/nonexistent/imagenet' does not exist"]),
])
def test_user_datasets_without_a_valid_root(tmp_path, capsys, monkeypatch, dataset, needles):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "prepare", "--suite", _suite_without_cache(tmp_path, dataset))
    assert_one_clean_error(code, err, 2, *needles)


def test_corrupt_prepared_dataset_names_the_file(project, capsys):
    assert run_cli(capsys, "pretrain", "--suite", project, "--method", "random")[0] == 0
    train_file = Path.cwd() / "data" / "faults" / "train.pt"
    _corrupt(train_file, "truncated")
    code, _, err = run_cli(capsys, "evaluate", "--suite", project, "--method", "random")
    assert_one_clean_error(code, err, 2, str(train_file), "re-run prepare")


def test_garbled_fashion_mnist_file_names_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "garbled"
    root.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        (root / name).write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    code, _, err = run_cli(capsys, "prepare", "--suite", _suite_without_cache(tmp_path, f"{{root: {root}}}"))
    assert_one_clean_error(code, err, 2, "train-images-idx3-ubyte.gz")


def test_corrupt_run_json_is_one_sentence_naming_it(project, capsys):
    assert run_cli(capsys, "pretrain", "--suite", project, "--method", "random")[0] == 0
    record = Path.cwd() / "runs" / "faults" / "random" / "seed0" / "run.json"
    record.write_text(record.read_text()[:40])
    code, _, err = run_cli(capsys, "evaluate", "--suite", project, "--method", "random")
    assert_one_clean_error(code, err, 2, str(record))


def test_torn_metrics_line_does_not_block_resume(project, capsys):
    suite, dataset = _engine_setup(project)
    run = Path.cwd() / "run"
    hp = resolve_hparams("simclr", {})
    with pytest.raises(Interrupted):
        train(RunSpec(suite, "simclr", 0, hp, run), dataset, stop_after=5, progress_bar=False)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 6, "loss"')
    record = train(RunSpec(suite, "simclr", 0, hp, run), dataset, progress_bar=False)
    assert record["steps"] == 8 and metric_steps(run) == list(range(1, 9))


@needs_fmnist
def test_the_installed_fashion_mnist_loads(tmp_path):
    """The control for the tests above: the Debian package's files are what the loader expects."""
    from bench.data import DatasetCfg, load_raw

    ds = load_raw(DatasetCfg(root=str(FMNIST.parent)))
    assert len(ds.train) == 60000 and len(ds.test) == 10000 and ds.num_classes == 10
