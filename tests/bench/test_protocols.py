"""The results schema (bench/protocols.py) and the results/ / runs/ layout (bench/paths.py): one module that the
rows, the leaderboard, the transfer stage, ``sslbench show`` and the app all read."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench import paths, protocols
from bench.errors import SSLBenchError

REPO = Path(__file__).resolve().parents[2]


def test_the_schema_and_the_layout_import_without_torch():
    code = "import sys, bench.protocols, bench.paths; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_every_reader_takes_protocols_and_labels_from_the_one_module(monkeypatch):
    from pipeline import cli, results, transfer

    assert results.PROTOCOLS == protocols.IDS and results.STATUS_ORDER == list(protocols.STATUSES)
    assert transfer.TRANSFER_PROTOCOLS == protocols.TRANSFER_IDS
    assert cli.PROTOCOL_LABELS is protocols.LABELS
    monkeypatch.syspath_prepend(str(REPO / "app"))
    import tables

    assert tables.PROTOCOL_LABELS is protocols.LABELS and tables.PROTOCOL_HELP is protocols.HELP
    assert set(tables.STATUS_MARKERS) == set(protocols.STATUSES)


def test_no_protocol_id_or_status_is_typed_outside_the_schema():
    """Protocol ids and row statuses were re-typed in stages, data, budget, sweep, claims, engine and cli; a
    string literal equal to one of them (outside bench/protocols.py) is now an error. Protocol ids that are
    also ordinary words ("linear", "complete") count only where they are compared with or stored as one."""
    import ast

    ids = {p for p in protocols.IDS if "_" in p} | {*protocols.SEMI_FRACTIONS, *protocols.SIMCLR_LISTS.values()}
    found = []
    for path in sorted([*REPO.glob("bench/*.py"), *REPO.glob("pipeline/*.py"), *REPO.glob("evaluations/*.py")]):
        if path.name == "protocols.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in ids:
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
            operands = [node.left, *node.comparators] if isinstance(node, ast.Compare) else []
            if any(isinstance(c, ast.Constant) and c.value in protocols.STATUSES for c in operands):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} status literal")
    assert not found, found


def test_the_cli_and_the_app_label_semi_supervised_alike(monkeypatch):
    """They disagreed: "semi 1%" in the CLI, "semi 1 %" in the app."""
    from pipeline import cli

    monkeypatch.syspath_prepend(str(REPO / "app"))
    import tables

    assert cli.PROTOCOL_LABELS["semi_1pct"] == tables.PROTOCOL_LABELS["semi_1pct"] == "semi 1 %"


def test_schema_is_consistent():
    assert len(set(protocols.IDS)) == len(protocols.IDS) and len(set(protocols.LABELS.values())) == len(protocols.IDS)
    assert set(protocols.HELP) == set(protocols.IDS)
    assert protocols.TRANSFER_IDS == ["det_box_ap", "det_box_ap50", "det_box_ap75", "seg_mask_ap"]
    assert all(protocols.BY_ID[p].metric == "ap" for p in protocols.TRANSFER_IDS)
    assert all(protocols.BY_ID[p].metric == "top1" for p in protocols.GROUPS[protocols.PRETRAINED])
    assert protocols.std_column("linear") == "linear_std" and protocols.n_column("linear") == "linear_n"
    assert protocols.in_columns(["seg_mask_ap", "rank", "linear", "knn_k20_std"]) == ["linear", "seg_mask_ap"]
    assert protocols.requested(["semi", "knn"], [20, 5]) == ["knn_k20", "knn_k5", "semi_1pct", "semi_10pct"]
    assert protocols.SEMI_FRACTIONS == {"semi_1pct": 0.01, "semi_10pct": 0.10}
    keys = list(protocols.METRIC_KEYS.values())
    assert len(set(keys)) == len(keys) and "det_box_ap50" not in protocols.METRIC_KEYS


def _board_with_every_protocol() -> pd.DataFrame:
    board = pd.read_csv(REPO / "results/tiny/leaderboard.csv")
    for protocol in protocols.TRANSFER_IDS:
        board[protocol], board[f"{protocol}_std"] = board["linear"] / 2, 1.25
    return board


def test_show_prints_box_ap50_and_ap75_in_200_columns(capsys, monkeypatch):
    """`sslbench show` left out AP50 / AP75; all nine protocols now fit one unwrapped 200-column table."""
    from pipeline.cli import print_leaderboard

    monkeypatch.setenv("COLUMNS", "200")
    board = _board_with_every_protocol()
    print_leaderboard(board, "tiny")
    out = capsys.readouterr().out
    for protocol in protocols.IDS:
        assert protocols.LABELS[protocol] in out
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len(rows) == len(board), "rows wrapped"
    assert max(len(line) for line in rows) <= 200
    first = rows[0]
    assert f"{board['linear'].iloc[0]:.2f} ± " in first and f"{board['linear'].iloc[0] / 2:.1f} ± 1.2" in first


def test_leaderboard_columns_follow_the_schema():
    from pipeline.results import leaderboard, make_rows

    record = {"suite": "s", "method": "m", "family": "f", "backbone": "resnet18", "images_seen": 1, "steps": 1,
              "seconds": 1.0, "flops": 1.0, "peak_mem_mb": 1.0, "device": "cpu", "status": "complete"}
    rows = []
    for seed in (0, 1):
        pretrained = {p: 50.0 + seed for p in protocols.GROUPS[protocols.PRETRAINED]}
        rows += make_rows({**record, "seed": seed}, pretrained)
        transfer = {p: 10.0 + seed if seed == 0 or p != "seg_mask_ap" else math.nan for p in protocols.TRANSFER_IDS}
        rows += make_rows({**record, "seed": seed}, transfer, metric="ap")
    board = leaderboard(pd.DataFrame(rows))
    assert protocols.in_columns(board.columns) == protocols.IDS
    assert board.loc[0, protocols.std_column("linear")] == pytest.approx(0.71, abs=0.01)
    assert board.loc[0, protocols.n_column("seg_mask_ap")] == 1 and "seg_mask_ap" in board.loc[0, "notes"]
    assert board.loc[0, "status"] == protocols.COMPLETE


def test_find_runs_sees_the_layout_run_dir_writes(tmp_path):
    """The app globbed runs/*/*/seed* and missed runs/<suite>/<method>/<backbone>/seed<s>."""
    runs = tmp_path / "runs"
    made = [paths.run_dir("tiny", "simclr", 0, runs), paths.run_dir("tiny", "simclr", 1, runs),
            paths.run_dir("tiny", "dino", 0, runs, "vit_tiny"), paths.run_dir("tiny", "dino", 0, runs)]
    for directory in made:
        directory.mkdir(parents=True)
    (runs / ".features" / "tiny" / "seed0").mkdir(parents=True)  # hidden: not a run
    (runs / "tiny" / "simclr" / "seedling").mkdir()  # not seed<integer>
    found = paths.find_runs(runs)
    assert {(r["method"], r["backbone"], r["seed"]) for r in found} == {
        ("simclr", None, 0), ("simclr", None, 1), ("dino", "vit_tiny", 0), ("dino", None, 0)}
    assert {r["path"] for r in found} == set(made) and all(r["suite"] == "tiny" for r in found)
    assert paths.find_runs(tmp_path / "absent") == []


def test_rows_files_name_the_command_that_writes_them():
    assert paths.rows_file_stage(paths.rows_path("tiny", "simclr")) == ("simclr", "evaluate")
    assert paths.rows_file_stage(paths.transfer_rows_path("tiny", "simclr")) == ("simclr", "transfer")


def test_a_broken_transfer_rows_file_names_sslbench_transfer(tmp_path):
    """The message advised `sslbench evaluate --method simclr-transfer`, which is no method."""
    from pipeline.results import read_rows

    broken = tmp_path / "simclr-transfer.csv"
    broken.write_text("suite,method\ntiny,simclr\n")
    with pytest.raises(SSLBenchError) as err:
        read_rows([broken])
    assert "`sslbench transfer --method simclr`" in str(err.value) and "simclr-transfer`" not in str(err.value)
    plain = tmp_path / "simclr.csv"
    plain.write_text("suite,method\ntiny,simclr\n")
    with pytest.raises(SSLBenchError, match="`sslbench evaluate --method simclr`"):
        read_rows([plain])
