"""The smoke suite end to end: rows, leaderboard schema, metrics.json, status handling."""

import json

import pandas as pd

from pipeline.results import ROW_COLUMNS, leaderboard

FOUNDATION = {"random", "supervised", "simclr", "mocov2", "byol"}


def test_every_method_has_rows_for_every_protocol(smoke_results):
    directory, board = smoke_results
    rows = pd.concat(pd.read_csv(p) for p in (directory / "results/smoke/rows").glob("*.csv"))
    assert list(rows.columns) == ROW_COLUMNS
    assert set(rows["method"]) == FOUNDATION
    assert set(rows["protocol"]) == {"knn_k20", "knn_k200", "linear"}
    assert rows["value"].between(0, 100).all()
    assert (rows.loc[rows.method == "random", "images_seen"] == 0).all()
    assert (rows.loc[rows.method == "simclr", "images_seen"] == 512).all()


def test_leaderboard_file_and_dvc_metrics(smoke_results):
    directory, board = smoke_results
    saved = pd.read_csv(directory / "results/smoke/leaderboard.csv")
    assert set(saved["method"]) == FOUNDATION and len(saved) == 5
    for col in ("rank", "backbone", "knn_k20", "knn_k20_std", "knn_k200", "linear", "n_seeds", "images_seen",
                "seconds", "flops", "peak_mem_mb", "status"):
        assert col in saved.columns
    metrics = json.loads((directory / "results/smoke/metrics.json").read_text())
    assert set(metrics) == FOUNDATION and "linear" in metrics["simclr"]


def test_runs_hold_checkpoint_metrics_and_record(smoke_results):
    directory, _ = smoke_results
    run = directory / "runs/smoke/mocov2/seed0"
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "complete" and record["images_seen"] == 512
    assert (run / "encoder.pt").is_file() and (run / "metrics.jsonl").is_file()


def test_leaderboard_aggregates_seeds_and_shows_worst_status():
    base = {c: 0 for c in ROW_COLUMNS}
    rows = pd.DataFrame([
        {**base, "method": "a", "backbone": "r18", "seed": 0, "protocol": "linear", "metric": "top1", "value": 50.0,
         "status": "complete", "deviation": ""},
        {**base, "method": "a", "backbone": "r18", "seed": 1, "protocol": "linear", "metric": "top1", "value": 60.0,
         "status": "diverged", "deviation": ""},
        {**base, "method": "b", "backbone": "r18", "seed": 0, "protocol": "linear", "metric": "top1", "value": 70.0,
         "status": "complete", "deviation": "single-channel views"},
    ])
    board = leaderboard(rows).set_index("method")
    assert board.loc["a", "linear"] == 55.0 and round(board.loc["a", "linear_std"], 2) == 7.07
    assert board.loc["a", "status"] == "diverged" and board.loc["b", "status"] == "deviation"
    assert board.loc["b", "rank"] == 1


def test_a_failed_transfer_seed_is_counted_and_named_but_keeps_the_method_status():
    import math

    import pandas as pd

    from pipeline.results import leaderboard

    base = {"family": "x", "backbone": "resnet18", "deviation": "", "images_seen": 1, "steps": 1, "seconds": 1.0,
            "flops": 1.0, "peak_mem_mb": 1.0, "device": "cpu", "method": "m"}
    rows = [{**base, "seed": s, "protocol": "linear", "metric": "top1", "value": 70.0 + s, "status": "complete"}
            for s in (0, 1)]
    rows += [{**base, "seed": 0, "protocol": "det_box_ap", "metric": "ap", "value": math.nan, "status": "diverged"},
             {**base, "seed": 1, "protocol": "det_box_ap", "metric": "ap", "value": 30.0, "status": "complete"}]
    board = leaderboard(pd.DataFrame(rows)).iloc[0]
    assert board["status"] == "complete" and board["n_seeds"] == 2
    assert board["det_box_ap"] == 30.0 and math.isnan(board["det_box_ap_std"]) and board["det_box_ap_n"] == 1
    assert board["notes"] == "det_box_ap: seed 0 diverged"
    assert "linear_n" not in board or math.isnan(board["linear_n"])
