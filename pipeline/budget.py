"""Budget curves from a budget sweep's rows: Kendall's tau of each budget's ranking against the largest
budget's, per protocol, and the budget at which each method's mean first beats the ``random`` and
``pixels`` baselines (which have no budget: their leaderboard means are horizontal lines)."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from bench.protocols import COMPLETE, KNN20, LINEAR

PROTOCOLS = (KNN20, LINEAR)
BASELINES = ("random", "pixels")
NEVER = "never"


def read_rows(path: Path) -> list[dict]:
    """The sweep CSV's complete rows, numbers parsed (``value`` = budget multiple)."""
    with Path(path).open() as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("status") == COMPLETE]
    for row in rows:
        for key in ("value", "images_seen", *PROTOCOLS):
            row[key] = float(row[key]) if row.get(key) not in (None, "") else None
    return rows


def read_baselines(board: Path) -> dict[str, dict[str, float]]:
    """``{baseline: {protocol: mean}}`` from a leaderboard CSV (absent file or row: left out)."""
    if not Path(board).is_file():
        return {}
    with Path(board).open() as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    return {name: {p: float(rows[name][p]) for p in PROTOCOLS if rows[name].get(p)}
            for name in BASELINES if name in rows}


def means(rows: list[dict], protocol: str) -> dict[str, dict[float, tuple[float, float, int]]]:
    """``{method: {budget: (mean, std, n_seeds)}}`` (std 0 for one seed)."""
    groups: dict[str, dict[float, list[float]]] = {}
    for row in rows:
        if row.get(protocol) is not None:
            groups.setdefault(row["method"], {}).setdefault(row["value"], []).append(row[protocol])
    return {m: {b: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))
                for b, v in sorted(by.items())} for m, by in groups.items()}


def kendall_tau(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b of two paired samples (ties in either counted as neither concordant nor discordant)."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = ((concordant + discordant + ties_x) * (concordant + discordant + ties_y)) ** 0.5
    return (concordant - discordant) / denominator if denominator else float("nan")


def tau_table(rows: list[dict]) -> list[dict]:
    """One row per (protocol, budget): tau of the methods' means against the largest budget's, over the
    methods measured at both."""
    out = []
    for protocol in PROTOCOLS:
        by_method = means(rows, protocol)
        budgets = sorted({b for by in by_method.values() for b in by})
        if not budgets:
            continue
        top = budgets[-1]
        for budget in budgets:
            shared = [m for m, by in by_method.items() if budget in by and top in by]
            tau = kendall_tau([by_method[m][budget][0] for m in shared], [by_method[m][top][0] for m in shared])
            out.append({"protocol": protocol, "budget": budget, "vs": top, "methods": len(shared), "tau": tau})
    return out


def crossings(rows: list[dict], baselines: dict[str, dict[str, float]]) -> list[dict]:
    """One row per (protocol, method): for each baseline, the smallest budget whose mean beats it, or ``never``."""
    out = []
    for protocol in PROTOCOLS:
        for method, by in sorted(means(rows, protocol).items()):
            row = {"protocol": protocol, "method": method}
            for name, values in baselines.items():
                if protocol in values:
                    above = [b for b, (mean, _, _) in by.items() if mean > values[protocol]]
                    row[name] = min(above) if above else NEVER
            out.append(row)
    return out


def _budget(value) -> str:
    return value if isinstance(value, str) else f"{value:g}x"


def report(rows: list[dict], baselines: dict[str, dict[str, float]]) -> str:
    """The tau table and the crossings as plain text."""
    lines = ["Kendall's tau of each budget's ranking vs the largest budget's", "protocol  budget  vs  methods  tau"]
    lines += [f"{t['protocol']:<8}  {_budget(t['budget']):>6}  {_budget(t['vs']):>2}  {t['methods']:>7}  "
              f"{t['tau']:+.2f}" for t in tau_table(rows)]
    names = [n for n in BASELINES if n in baselines]
    lines += ["", "Budget at which the mean first beats " + " / ".join(names or ["(no baselines found)"]),
              "protocol  method        " + "  ".join(f"{n:>7}" for n in names)]
    lines += [f"{c['protocol']:<8}  {c['method']:<12}  " + "  ".join(f"{_budget(c.get(n, '-')):>7}" for n in names)
              for c in crossings(rows, baselines)]
    return "\n".join(lines)
