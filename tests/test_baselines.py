"""Baselines: `random` with BN statistics from the pretraining images, the `pixels` row,
alignment / uniformity diagnostics, and the "above a baseline" counts."""

import math

import pandas as pd


def _board():
    rows = [
        ("random", "baseline", "resnet18", 50.0, 1.0),
        ("pixels", "baseline", "pixels", 80.0, 0.0),
        ("supervised", "baseline", "resnet18", 90.0, 0.5),
        ("a", "end-to-end", "resnet18", 85.0, 1.0),  # clearly above both
        ("b", "momentum", "resnet18", 51.0, 1.0),  # above random, not clearly
        ("c", "momentum", "resnet18", 49.0, math.nan),  # below random
        ("d", "momentum", "resnet18", 70.0, math.nan),  # above random, one seed: never clearly
    ]
    return pd.DataFrame([{"method": m, "family": f, "backbone": b, "linear": v, "linear_std": s}
                         for m, f, b, v, s in rows])


def test_counts_above_a_baseline():
    from bench.results import above_baseline

    random = above_baseline(_board(), "random").set_index("protocol").loc["linear"]
    assert (random["methods"], random["above"], random["clearly_above"], random["below"]) == (4, 3, 1, "c")
    pixels = above_baseline(_board(), "pixels").set_index("protocol").loc["linear"]
    assert (pixels["methods"], pixels["above"], pixels["clearly_above"]) == (4, 1, 1)
    assert pixels["below"] == "b, c, d"
    assert above_baseline(_board(), "nobody").empty


def test_claims_rule_is_the_counting_rule():
    from bench.claims import beats_clearly, verdict

    assert beats_clearly(10.0, 1.0, 7.0, 0.5) and not beats_clearly(10.0, 1.0, 8.5, 0.5)
    assert not beats_clearly(10.0, math.nan, 0.0, 0.1)
    assert verdict([10.0, 11.0], [1.0, 2.0]) == "reproduced"
    assert verdict([1.0, 2.0], [10.0, 11.0]) == "not reproduced"
