"""Bad input: one sentence naming the key and the valid choices, exit code 2, no traceback."""

import subprocess
import sys

import pytest

from tests.conftest import REPO, needs_fmnist


def _run(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, cwd=cwd)


def _assert_clean_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("sslbench: error:"), proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_unknown_suite():
    _assert_clean_error(_run("pretrain", "--suite", "nope", "--method", "simclr"), "'nope'", "tiny", "smoke")


def test_unknown_method():
    _assert_clean_error(_run("pretrain", "--suite", "smoke", "--method", "simclrr"), "'simclrr'", "mocov2")


@pytest.mark.parametrize("body, needles", [
    ("name: x\nbudgett: {value: 3}\n", ["unknown key 'budgett'", "budget"]),
    ("name: x\nbudget: {value: -5}\n", ["budget.value", "positive"]),
    ("name: x\nbudget: {value: 0}\n", ["budget.value", "positive"]),
    ("name: x\nbudget: {unit: hours, value: 3}\n", ["'hours'", "images_seen"]),
    ("name: x\ntrain: {batch_size: many}\n", ["train.batch_size", "integer"]),
    ("name: x\nbackbone: {name: vgg}\n", ["'vgg'", "resnet18"]),
    ("name: [unclosed\n", ["not valid YAML"]),
])
def test_malformed_suite_file(tmp_path, body, needles):
    path = tmp_path / "suite.yaml"
    path.write_text(body)
    _assert_clean_error(_run("pretrain", "--suite", str(path), "--method", "simclr", cwd=tmp_path), *needles)


def test_unknown_hyperparameter_in_params(tmp_path):
    (tmp_path / "params.yaml").write_text("suite: smoke\nmethods:\n  simclr: {temprature: 0.2}\n")
    _assert_clean_error(_run("pretrain", cwd=tmp_path), "unknown key 'temprature'", "temperature")


def test_unknown_method_in_params(tmp_path):
    (tmp_path / "params.yaml").write_text("suite: smoke\nmethods:\n  simclr2: {}\n")
    _assert_clean_error(_run("pretrain", cwd=tmp_path), "'simclr2'", "simclr")


def test_missing_dataset_names_the_install_command(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(f"name: x\ndataset: {{name: fashion_mnist, root: {tmp_path / 'none'}}}\n")
    _assert_clean_error(_run("prepare", "--suite", str(path), cwd=tmp_path), "does not hold Fashion-MNIST")


def test_help_lists_subcommands():
    out = _run("--help")
    assert out.returncode == 0
    for cmd in ("prepare", "pretrain", "evaluate", "leaderboard", "show"):
        assert cmd in out.stdout


def test_seeds_option_keeps_the_rest_of_params(tmp_path):
    """`--seeds` replaced only the seeds: transfer and sweeps were dropped (issue 15)."""
    import argparse

    from pipeline.cli import _context

    params = tmp_path / "params.yaml"
    params.write_text("suite: smoke\nmethods: {simclr: {}}\ntransfer: [simclr]\n")
    _, got = _context(argparse.Namespace(params=str(params), suite=None, seeds=[3]))
    assert got.seeds == [3] and got.transfer == ["simclr"] and got.methods == {"simclr": {}}


@needs_fmnist
def test_run_command_runs_every_stage(workdir):
    """`sslbench run` read --workers, an option only `pretrain` had, and failed before any stage."""
    from pipeline.cli import main

    (workdir / "params.yaml").write_text("suite: smoke\nseeds: [0]\nmethods: {random: {}}\n")
    main(["run", "--method", "random"])
    assert (workdir / "results" / "smoke" / "leaderboard.csv").is_file()
