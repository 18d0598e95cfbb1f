"""The claims ledger: turn results/ablations/*.csv into verdicts on the papers' qualitative claims."""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.io import atomic_write_text
from bench.protocols import COMPLETE, KNN200, LINEAR

COLUMNS = ["claim", "source", "our_numbers", "verdict", "rule", "sweep", "metric"]
RULES = {  # the rule each mode of `verdict` applies, printed beside every verdict
    "greater": "reproduced if the claimed arm beats the other by more than 2 std over seeds; "
               "the reverse = not reproduced",
    "not_less": "reproduced unless the claimed arm is below the other by more than 2 std over seeds "
                "(then not reproduced)",
    "interior": "reproduced if the best value is inside the grid and beats both ends by more than 2 std",
}


@dataclass(frozen=True)
class Claim:
    """One claim: arm `better` beats arm `worse` on `metric` in sweep file `sweep` (values compared as strings)."""

    claim: str
    source: str
    sweep: str
    better: str
    worse: str
    metric: str = LINEAR
    mode: str = "greater"  # "greater", "not_less" (does not hurt) or "interior" (optimum inside the grid)


CLAIMS = [
    Claim("MoCo: momentum 0.99 beats momentum 0", "MoCo (arXiv 1911.05722) section 4.1",
          "mocov2_momentum", "0.99", "0"),
    Claim("MoCo: a longer queue does not hurt", "MoCo (arXiv 1911.05722) section 4.1 and Fig. 3",
          "mocov2_queue", "max", "min", mode="not_less"),
    Claim("InstDisc: a larger memory does not hurt", "MoCo (arXiv 1911.05722) Fig. 3",
          "instdisc_memory", "max", "min", mode="not_less"),
    Claim("SimSiam: removing stop-gradient collapses", "SimSiam (arXiv 2011.10566) section 4.1",
          "simsiam_stopgrad", "True", "False", metric=KNN200),
    Claim("BYOL: target decay 0.99 beats 1.0", "BYOL (arXiv 2006.07733) section 5", "byol_decay", "0.99", "1.0"),
    Claim("BYOL: target decay 0.99 beats 0.0", "BYOL (arXiv 2006.07733) section 5", "byol_decay", "0.99", "0.0"),
    Claim("SimCLR: a projection head beats no head", "SimCLR (arXiv 2002.05709) section 4.2",
          "simclr_head", "2", "0"),
    Claim("SimCLR: temperature has an interior optimum", "SimCLR (arXiv 2002.05709) Table 5",
          "simclr_temperature", "", "", mode="interior"),
    Claim("SimCLR: larger batch helps at fixed epochs", "SimCLR (arXiv 2002.05709) Table B.1",
          "simclr_batch", "max", "min"),
]


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def _arms(rows: list[dict], metric: str) -> dict[str, list[float]]:
    arms: dict[str, list[float]] = {}
    for row in rows:
        if row.get("status", COMPLETE) in (COMPLETE, "") and row.get(metric, "") not in ("", None):
            arms.setdefault(str(row["value"]), []).append(float(row[metric]))
    return arms


def _key(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


def _pick(arms: dict[str, list[float]], name: str) -> str | None:
    if name in ("max", "min"):
        ordered = sorted(arms, key=_key)
        return (ordered[-1] if name == "max" else ordered[0]) if len(ordered) > 1 else None
    matches = [v for v in arms if v == name or _key(v) == _key(name)]
    return matches[0] if matches else None


def beats_clearly(mean: float, std: float, other_mean: float, other_std: float) -> bool:
    """The ledger's rule: ``mean`` beats ``other_mean`` by more than 2 x the larger std over seeds
    (never with a missing std, i.e. one seed). The leaderboard's "above a baseline" counts use it too."""
    if any(math.isnan(v) for v in (mean, std, other_mean, other_std)):
        return False
    return mean - other_mean > 2 * max(std, other_std)


def verdict(better: list[float], worse: list[float], mode: str = "greater") -> str:
    """Decide one comparison: difference vs 2 x the larger std over seeds (needs >= 2 seeds per arm)."""
    if len(better) < 2 or len(worse) < 2:
        return "inconclusive"
    (mb, sb), (mw, sw) = _stats(better), _stats(worse)
    if mode == "not_less":
        return "not reproduced" if beats_clearly(mw, sw, mb, sb) else "reproduced"
    if beats_clearly(mb, sb, mw, sw):
        return "reproduced"
    return "not reproduced" if beats_clearly(mw, sw, mb, sb) else "inconclusive"


def _fmt(arms: dict[str, list[float]], values: list[str]) -> str:
    parts = []
    for v in values:
        mean, std = _stats(arms[v])
        parts.append(f"{v}: {mean:.1f} ± {std:.1f} (n={len(arms[v])})")
    return "; ".join(parts)


def judge(claim: Claim, rows: list[dict] | None) -> dict:
    """One ledger row for `claim` from the sweep's CSV rows (None = sweep not run)."""
    out = {"claim": claim.claim, "source": claim.source, "sweep": claim.sweep, "metric": claim.metric,
           "rule": RULES[claim.mode]}
    arms = _arms(rows or [], claim.metric)
    if claim.mode == "interior":
        ordered = sorted(arms, key=_key)
        if len(ordered) < 3:
            return {**out, "our_numbers": _fmt(arms, ordered), "verdict": "not run" if not arms else "inconclusive"}
        best = max(ordered, key=lambda v: _stats(arms[v])[0])
        ends = [verdict(arms[best], arms[e]) for e in (ordered[0], ordered[-1]) if e != best]
        result = "reproduced" if len(ends) == 2 and all(e == "reproduced" for e in ends) else (
            "not reproduced" if len(ends) < 2 else "inconclusive")
        return {**out, "our_numbers": _fmt(arms, ordered), "verdict": result}
    better, worse = _pick(arms, claim.better), _pick(arms, claim.worse)
    if better is None or worse is None:
        return {**out, "our_numbers": _fmt(arms, sorted(arms, key=_key)), "verdict": "not run"}
    return {**out, "our_numbers": _fmt(arms, [better, worse]),
            "verdict": verdict(arms[better], arms[worse], claim.mode)}


def read_sweep(path: Path) -> list[dict] | None:
    return list(csv.DictReader(path.open())) if path.is_file() else None


def build(ablations: Path, out: Path) -> list[dict]:
    """Write the ledger `out` (atomically) from `ablations`/<sweep>.csv; return its rows."""
    rows = [judge(c, read_sweep(ablations / f"{c.sweep}.csv")) for c in CLAIMS]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out, buf.getvalue())
    return rows
