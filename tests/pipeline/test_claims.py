"""The claims ledger's verdict rule on hand-made sweep CSVs."""

from __future__ import annotations

import csv

from pipeline.claims import CLAIMS, build, verdict

HEADER = ["suite", "method", "param", "value", "seed", "knn_k20", "knn_k200", "linear", "seconds",
          "images_seen", "status"]


def _write(path, method, param, arms):
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for value, scores in arms.items():
            for seed, score in enumerate(scores):
                w.writerow(["smoke", method, param, value, seed, score, score, score, 1, 512, "complete"])


def test_verdict_rule():
    assert verdict([80, 81], [60, 61]) == "reproduced"
    assert verdict([60, 61], [80, 81]) == "not reproduced"
    assert verdict([70, 75], [69, 74]) == "inconclusive"
    assert verdict([80], [60]) == "inconclusive"  # one seed cannot decide
    assert verdict([70, 71], [70.5, 71.5], mode="not_less") == "reproduced"
    assert verdict([60, 61], [80, 81], mode="not_less") == "not reproduced"


def test_ledger_from_csvs(tmp_path):
    ab = tmp_path / "ablations"
    ab.mkdir()
    _write(ab / "mocov2_momentum.csv", "mocov2", "momentum", {"0": [40, 41], "0.9": [60, 61], "0.99": [70, 71]})
    _write(ab / "simclr_temperature.csv", "simclr", "temperature",
           {"0.05": [60, 61], "0.2": [75, 76], "1.0": [62, 61]})
    _write(ab / "byol_decay.csv", "byol", "tau_base", {"0.0": [70, 71], "0.99": [70, 72], "1.0": [50, 50.5]})
    _write(ab / "simclr_batch.csv", "simclr", "batch_size", {"32": [70, 70.5], "128": [69, 74]})
    rows = {r["claim"]: r for r in build(ab, tmp_path / "claims.csv")}
    assert len(rows) == len(CLAIMS)
    assert rows["MoCo: momentum 0.99 beats momentum 0"]["verdict"] == "reproduced"
    assert "0.99: 70.5 ± 0.7 (n=2)" in rows["MoCo: momentum 0.99 beats momentum 0"]["our_numbers"]
    assert rows["SimCLR: temperature has an interior optimum"]["verdict"] == "reproduced"
    assert rows["BYOL: target decay 0.99 beats 1.0"]["verdict"] == "reproduced"
    assert rows["BYOL: target decay 0.99 beats 0.0"]["verdict"] == "inconclusive"
    assert rows["SimCLR: larger batch helps at fixed epochs"]["verdict"] == "inconclusive"
    assert rows["MoCo: a longer queue does not hurt"]["verdict"] == "not run"
    assert "section 4.1" in rows["MoCo: momentum 0.99 beats momentum 0"]["source"]
    with (tmp_path / "claims.csv").open() as fh:
        assert next(csv.reader(fh))[:5] == ["claim", "source", "our_numbers", "verdict", "rule"]


def test_each_verdict_is_printed_with_the_rule_that_gave_it():
    """A "does not hurt" claim is judged by non-inferiority and says so: equal arms are reproduced
    under the printed rule, which is not the two-arm "beats by 2 std" rule."""
    from pipeline.claims import CLAIMS, judge

    claim = next(c for c in CLAIMS if c.mode == "not_less")
    rows = [{"value": v, "linear": x, "status": "complete"} for v, x in
            (("1024", 78.9), ("1024", 79.5), ("16384", 78.6), ("16384", 79.3))]
    row = judge(claim, rows)
    assert row["verdict"] == "reproduced"
    assert row["rule"].startswith("reproduced unless the claimed arm is below the other by more than 2 std")
