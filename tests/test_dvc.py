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
    for name in ("dvc.yaml", "bench", "methods", "evaluations", "pipeline", ".dvc/config"):
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


def _project(tmp_path, *names):
    """A git + DVC project in ``tmp_path`` with the repository's dvc.yaml, params.yaml and ``names`` copied."""
    for name in ("dvc.yaml", "params.yaml", ".dvc/config", *names):
        src, dst = REPO / name, tmp_path / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    return tmp_path


def _tiny_results(directory):
    """results/tiny/ as `sslbench leaderboard` writes it, from the committed tiny board."""
    import pandas as pd

    from pipeline.results import write_leaderboard

    (directory / "results" / "tiny").mkdir(parents=True)
    write_leaderboard(pd.read_csv(REPO / "results/tiny/leaderboard.csv"), directory / "results" / "tiny")


def _show_on_tiny_results(tmp_path, what: str):
    """A project holding the committed tiny results, and `dvc <what> show` run in it (which must succeed)."""
    project = _project(tmp_path)
    _tiny_results(project)
    shown = _dvc(what, "show", cwd=project)
    assert shown.returncode == 0, shown.stderr
    return project, shown


needs_dvc = pytest.mark.skipif(not DVC.exists(), reason="dvc not installed in this environment")


@needs_dvc
def test_metrics_show_is_a_row_per_method_with_std_within_200_columns(tmp_path):
    project, shown = _show_on_tiny_results(tmp_path, "metrics")
    lines = shown.stdout.splitlines()
    header = lines[0].split()
    assert {"linear", "linear-sd", "knn20", "knn20-sd", "ok"} <= set(header)
    board = __import__("pandas").read_csv(REPO / "results/tiny/leaderboard.csv")
    assert len(lines) == 1 + len(board)
    assert max(len(line) for line in lines) <= 200, max(len(line) for line in lines)


@needs_dvc
def test_plots_show_renders_with_networking_off(tmp_path):
    project, _ = _show_on_tiny_results(tmp_path, "plots")
    html = (project / "dvc_plots" / "index.html").read_text()
    assert "<img" in html and "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    chromium = Path("/usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    if not chromium.is_file():
        pytest.skip("/usr/bin/chromium absent")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=args)
        try:
            context = browser.new_context(offline=True)
            page = context.new_page()
            remote = []
            page.route("**/*", lambda route: (remote.append(route.request.url), route.abort())
                       if not route.request.url.startswith("file://") else route.continue_())
            page.goto((project / "dvc_plots" / "index.html").as_uri())
            page.wait_for_load_state("load")
            sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
        finally:
            browser.close()
    assert not remote, remote
    assert sizes and all(done and width > 0 for done, width in sizes), sizes


def test_dvc_plots_output_is_git_ignored():
    assert "/dvc_plots/" in (REPO / ".gitignore").read_text().split()


@needs_dvc
def test_dry_run_in_a_fresh_clone_lists_every_stage(tmp_path):
    """Without data/ or runs/: `dvc repro --dry --force` prints the plan (plain `--dry` trips on DVC's
    run-cache check of the missing data/<suite>, treeverse/dvc#9021)."""
    project = _project(tmp_path, "bench", "methods", "evaluations", "pipeline")
    dry = _dvc("repro", "--dry", "--force", cwd=project)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "sslbench prepare --suite tiny" in dry.stdout and "sslbench leaderboard --suite tiny" in dry.stdout
    assert not (project / "data").exists()


@needs_dvc
def test_misspelt_suite_gives_one_clear_error(tmp_path):
    project = _project(tmp_path, "bench", "methods", "evaluations", "pipeline")
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("suite: tiny", "suite: tinny", 1))
    failed = _dvc("repro", "prepare", cwd=project)
    assert failed.returncode != 0
    ours = [line for line in (failed.stdout + failed.stderr).splitlines() if line.startswith("sslbench")]
    assert ours == ["sslbench: error: unknown suite 'tinny'; valid choices are: "
                    + ", ".join(sorted(p.stem for p in (REPO / "bench/suites").glob("*.yaml"))) + "."], ours


def _sslbench(*args, cwd, columns: int):
    env = {**os.environ, "COLUMNS": str(columns), "PATH": f"{DVC.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([str(DVC.with_name("sslbench")), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def test_show_uses_the_terminal_width(tmp_path):
    import pandas as pd

    board = pd.read_csv(REPO / "results/tiny/leaderboard.csv")
    for protocol in ("det_box_ap", "det_box_ap50", "det_box_ap75", "seg_mask_ap"):  # every protocol: a wide table
        board[protocol], board[f"{protocol}_std"] = board["linear"] / 2, 1.25
    (tmp_path / "results" / "tiny").mkdir(parents=True)
    board.to_csv(tmp_path / "results/tiny/leaderboard.csv", index=False)
    shown = _sslbench("show", "--suite", "tiny", cwd=tmp_path, columns=250)
    assert shown.returncode == 0, shown.stderr
    rows = [line for line in shown.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == len(board), "rows wrapped"  # one line per row: nothing wrapped
    assert 160 < max(len(line) for line in rows) <= 250


def test_show_with_a_missing_params_file_names_it(tmp_path):
    shown = _sslbench("show", "--params", "missing.yaml", cwd=tmp_path, columns=120)
    assert shown.returncode != 0 and "params file 'missing.yaml' does not exist" in shown.stderr
    assert "leaderboard" not in shown.stdout


def test_pretrain_code_deps_are_what_code_digest_hashes():
    """dvc.yaml's pretrain deps and code_digest come from one list (bench/runs.py PRETRAIN_SOURCES);
    a method's parent-class files (found through the MRO) are named in dvc.yaml's comment."""
    import yaml

    from bench.runs import PRETRAIN_SOURCES, method_sources
    from methods.registry import get_method, method_names

    text = (REPO / "dvc.yaml").read_text()
    deps = yaml.safe_load(text)["stages"]["pretrain"]["do"]["deps"]
    code = [d for d in deps if d.endswith(".py")]
    assert code == [*PRETRAIN_SOURCES, "methods/${key}.py"]
    for name in method_names():
        module = get_method(name).__module__
        own = module.replace(".", "/") + ".py"
        sources = method_sources(get_method(name))
        assert sources[0] == own and all((REPO / s).is_file() for s in sources)
        for parent in sources[1:]:  # e.g. mocov1 -> methods/mocov2.py
            assert f"{Path(parent).name}" in text, f"dvc.yaml does not say that {name} depends on {parent}"
