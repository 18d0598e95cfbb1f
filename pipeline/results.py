"""Result rows (long form) and their aggregation into a per-suite leaderboard.

A row is one number: (suite, method, backbone, seed, protocol, metric, value) plus
the run's cost and provenance. The leaderboard has one row per (method, backbone)
and, per protocol id, ``<protocol>`` (mean), ``<protocol>_std`` and ``n_seeds``.
Protocol ids, labels, statuses and those column names are ``bench.protocols``.
Every write is atomic; a failing write leaves the previous table intact.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pandas as pd

from bench import protocols as schema
from bench.errors import SSLBenchError
from bench.io import atomic_write_text, file_lock
from bench.paths import LEADERBOARD, METRICS_JSON, rows_file_stage

ROW_COLUMNS = [
    "suite", "method", "family", "backbone", "seed", "protocol", "metric", "value", "status", "deviation",
    "images_seen", "steps", "seconds", "flops", "peak_mem_mb", "device", "precision", "git_rev", "config_hash",
]
PROTOCOLS = schema.IDS
STATUS_ORDER = list(schema.STATUSES)
COST_COLUMNS = ["images_seen", "steps", "seconds", "flops", "peak_mem_mb"]


def make_rows(record: dict, metrics: dict[str, float], metric: str = "top1") -> list[dict]:
    """Rows for one run: ``metrics`` maps protocol id to value (NaN when not measured)."""
    base = {k: record.get(k) for k in ROW_COLUMNS if k in record}
    status = record.get("status", schema.COMPLETE)
    return [{**base, "protocol": protocol, "metric": metric, "value": value, "status": status,
             "deviation": record.get("deviation", "")} for protocol, value in metrics.items()]


def write_rows(path: Path, rows: list[dict]) -> None:
    """Replace one method's rows (all seeds) atomically."""
    frame = pd.DataFrame(rows, columns=ROW_COLUMNS)
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.4f")
    with file_lock(path):
        atomic_write_text(path, buf.getvalue())


def read_rows(paths: list[Path]) -> pd.DataFrame:
    frames = [_read_table(p) for p in paths if p.is_file()]
    if not frames:
        return pd.DataFrame(columns=ROW_COLUMNS)
    return pd.concat(frames, ignore_index=True)


REQUIRED_COLUMNS = ["method", "backbone", "seed", "protocol", "metric", "value", "status", "deviation",
                    *COST_COLUMNS, "device"]


def _read_table(path: Path) -> pd.DataFrame:
    """One rows file; a truncated, foreign or garbled file gets one sentence naming it."""
    method, stage = rows_file_stage(path)
    rerun = f"re-run `sslbench {stage} --method {method}` to rewrite it"
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise SSLBenchError(f"result rows file '{path}' is not a readable CSV table "
                            f"({type(err).__name__}); {rerun}.") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise SSLBenchError(f"result rows file '{path}' lacks the column '{missing[0]}'; {rerun}.")
    numeric = ["seed", "value", *COST_COLUMNS]
    bad = next((c for c in numeric if len(frame) and not pd.api.types.is_numeric_dtype(frame[c])), None)
    if bad is not None:
        raise SSLBenchError(f"result rows file '{path}' has non-numeric values in column '{bad}'; {rerun}.")
    return frame


def _worst(statuses) -> str:
    found = [s for s in statuses if isinstance(s, str)]
    return max(found, key=lambda s: STATUS_ORDER.index(s) if s in STATUS_ORDER else 0) if found else schema.COMPLETE


PRIMARY = schema.GROUPS[schema.PRETRAINED]  # the protocols a method's status is read from


def leaderboard(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, backbone): mean and std over seeds per protocol, cost, status.

    The status comes from the pretrained runs (their kNN / linear / semi rows); a protocol
    measured on fewer seeds than the method has (a transfer fine-tune that diverged, say)
    gets a ``<protocol>_n`` seed count and a line in ``notes`` naming the seeds and why.
    """
    if rows.empty:
        return pd.DataFrame(columns=["rank", "method", "backbone", "status", "n_seeds"])
    out = []
    for (method, backbone), group in rows.groupby(["method", "backbone"], sort=False):
        families = group["family"].dropna() if "family" in group else []
        n_seeds = group["seed"].nunique()
        entry = {"method": method, "family": families.iloc[0] if len(families) else "",
                 "backbone": backbone, "n_seeds": n_seeds}
        primary = group[group["protocol"].isin(PRIMARY)]
        status = _worst((primary if len(primary) else group)["status"])
        deviation = next((d for d in group["deviation"] if isinstance(d, str) and d), "")
        entry["status"] = schema.DEVIATION if status == schema.COMPLETE and deviation else status
        entry["deviation"] = deviation
        notes = {}
        for protocol in PROTOCOLS:
            chosen = group.loc[(group["protocol"] == protocol) & (group["metric"] == schema.BY_ID[protocol].metric)]
            values = chosen["value"].dropna()
            if len(values):
                entry[protocol] = round(values.mean(), 2)
                entry[schema.std_column(protocol)] = round(values.std(ddof=1), 2) if len(values) > 1 else math.nan
            missing = chosen[chosen["value"].isna()]
            if len(chosen) and len(missing):
                entry[schema.n_column(protocol)] = len(values)
                why = ", ".join(f"seed {int(r.seed)} {r.status if r.status != schema.COMPLETE else 'no value'}"
                                for r in missing.itertuples())
                notes.setdefault(why, []).append(protocol)
        entry["notes"] = "; ".join(f"{', '.join(ps)}: {why}" for why, ps in notes.items())
        per_seed = group.drop_duplicates("seed")
        for col in COST_COLUMNS:
            entry[col] = per_seed[col].mean()
        entry["device"] = ",".join(sorted(set(per_seed["device"].astype(str))))
        precisions = per_seed["precision"].dropna().astype(str) if "precision" in per_seed else []
        entry["precision"] = ",".join(sorted(set(precisions)))
        out.append(entry)
    board = pd.DataFrame(out)
    key = next((p for p in (schema.LINEAR, schema.KNN20) if p in board), None)
    if key:
        board = board.sort_values(key, ascending=False, na_position="last")
        board.insert(0, "rank", board[key].rank(ascending=False, method="min").astype("Int64"))
    return board.reset_index(drop=True)


def mixed_precision(board: pd.DataFrame) -> str:
    """A sentence when the board's rows were trained in more than one precision, else ''."""
    if "precision" not in board:
        return ""
    found = sorted({p for cell in board["precision"].dropna().astype(str) for p in cell.split(",") if p})
    if len(found) < 2:
        return ""
    return (f"this board mixes precisions ({', '.join(found)}): compare rows of one precision only "
            "(the 'precision' column says which).")


NOT_SSL = schema.NOT_SSL_FAMILIES


def above_baseline(board: pd.DataFrame, baseline: str = "random", protocols: list[str] | None = None,
                   backbone: str | None = None) -> pd.DataFrame:
    """Per protocol, how many SSL methods (family not baseline / supervised) on ``backbone``
    (default: the SSL rows' most common one, the suite's) score above the ``baseline`` row.

    Columns: ``protocol``, ``baseline``, ``methods`` (SSL rows with a value), ``above`` (mean
    above the baseline's), ``clearly_above`` (by more than 2 x the larger std, the claims
    ledger's rule, ``pipeline.claims.beats_clearly``) and ``below`` (names of the others, mean not
    above, in board order). Empty when the board has no ``baseline`` row; a protocol the baseline lacks is left out.
    """
    from pipeline.claims import beats_clearly

    base = board[board["method"] == baseline]
    ssl = board[~board["family"].isin(NOT_SSL)] if "family" in board else board.iloc[0:0]
    if base.empty or ssl.empty:
        return pd.DataFrame(columns=["protocol", "baseline", "methods", "above", "clearly_above", "below"])
    ssl = ssl[ssl["backbone"] == (backbone or ssl["backbone"].mode().iloc[0])]
    base, out = base.iloc[0], []
    for protocol in protocols or PROTOCOLS:
        if protocol not in board or _isnan(base[protocol]):
            continue
        rows = ssl[ssl[protocol].notna()]
        above = rows[protocol] > base[protocol]
        clearly = [beats_clearly(float(r[protocol]), _std(r, protocol), float(base[protocol]), _std(base, protocol))
                   for _, r in rows.iterrows()]
        out.append({"protocol": protocol, "baseline": baseline, "methods": len(rows), "above": int(above.sum()),
                    "clearly_above": int(sum(clearly)), "below": ", ".join(rows.loc[~above, "method"])})
    return pd.DataFrame(out, columns=["protocol", "baseline", "methods", "above", "clearly_above", "below"])


def _std(row: pd.Series, protocol: str) -> float:
    value = row.get(schema.std_column(protocol), math.nan)
    return math.nan if _isnan(value) else float(value)


# ``dvc metrics show`` reads results/<suite>/metrics/<method>.json: one row per method, a short key per
# protocol (mean) and ``<key>-sd`` (std over seeds) side by side, and ``ok`` (1: a clean row, every seed on every
# protocol). The keys are ``bench.protocols``' ``metric_key``s; box AP50 / AP75 have none (see there why).
METRIC_KEYS = schema.METRIC_KEYS


def metrics_of(row: pd.Series) -> dict[str, float]:
    """One leaderboard row as the numbers ``dvc metrics show`` prints."""
    out = {}
    for protocol, key in METRIC_KEYS.items():
        if protocol in row and not _isnan(row[protocol]):
            out[key] = float(row[protocol])
            std = row.get(schema.std_column(protocol), math.nan)
            out[f"{key}-sd"] = None if _isnan(std) else float(std)
    notes = row.get("notes")
    out["ok"] = int(row.get("status") == schema.COMPLETE and not (isinstance(notes, str) and notes))
    return out


def write_leaderboard(board: pd.DataFrame, directory: Path) -> None:
    """``leaderboard.csv``, ``metrics/<row>.json`` (what ``dvc metrics show`` reads), ``metrics.json`` (all
    rows' means in one file, for scripts) and ``plots/<protocol>.svg`` (what ``dvc plots show`` shows)."""
    buf = io.StringIO()
    board.to_csv(buf, index=False)
    metrics, per_row = {}, {}
    for _, row in board.iterrows():
        key = row["method"] if (board["method"] == row["method"]).sum() == 1 else f"{row['method']}@{row['backbone']}"
        metrics[key] = {p: float(row[p]) for p in PROTOCOLS if p in row and not _isnan(row[p])}
        per_row[key] = metrics_of(row)
    # Locked, so two concurrent writers cannot leave one's table next to the other's metrics.
    with file_lock(directory / LEADERBOARD):
        atomic_write_text(directory / LEADERBOARD, buf.getvalue())
        atomic_write_text(directory / METRICS_JSON, json.dumps(metrics, indent=2, sort_keys=True))
        folder = directory / "metrics"
        folder.mkdir(exist_ok=True)
        for stale in set(folder.glob("*.json")) - {folder / f"{k}.json" for k in per_row}:
            stale.unlink()
        for key, values in per_row.items():
            atomic_write_text(folder / f"{key}.json", json.dumps(values, indent=1))
        plots = directory / "plots"
        plots.mkdir(exist_ok=True)
        for protocol in [p for p in PLOTTED if p in board]:
            atomic_write_text(plots / f"{protocol}.svg", bar_chart_svg(board, protocol))


PLOTTED = [schema.LINEAR, schema.KNN20]  # the board's static plots (``dvc plots show`` renders them offline)


def bar_chart_svg(board: pd.DataFrame, protocol: str) -> str:
    """One protocol of the board as a self-contained SVG: a bar per row (mean, sorted), a whisker of ± std,
    the value printed; no script, font or file it needs from elsewhere."""
    from html import escape

    rows = board[board[protocol].notna()].sort_values(protocol, ascending=False)
    names = [r["method"] if (board["method"] == r["method"]).sum() == 1 else f"{r['method']}@{r['backbone']}"
             for _, r in rows.iterrows()]
    stds = [0.0 if _isnan(v) else float(v) for v in rows.get(schema.std_column(protocol), [math.nan] * len(rows))]
    top = max([m + s for m, s in zip(rows[protocol], stds)] + [1.0])
    label_w, bar_w, row_h, head = 130, 520, 20, 40
    width, height = label_w + bar_w + 110, head + row_h * len(rows) + 30
    scale = bar_w / (math.ceil(top / 10) * 10)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<text x="8" y="20" font-size="14" font-weight="bold">{escape(protocol)}: mean ± std over seeds '
           f'({escape(str(rows["n_seeds"].max()) if len(rows) else "0")} seeds; top-1 %)</text>']
    for i, (name, mean, std) in enumerate(zip(names, rows[protocol], stds)):
        y = head + i * row_h
        x_end = label_w + mean * scale
        out += [f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(name)}</text>',
                f'<rect x="{label_w}" y="{y + 3}" width="{mean * scale:.1f}" height="{row_h - 6}" fill="#4c78a8"/>',
                f'<line x1="{x_end - std * scale:.1f}" x2="{x_end + std * scale:.1f}" y1="{y + 10}" y2="{y + 10}" '
                f'stroke="#222" stroke-width="1.5"/>',
                f'<text x="{x_end + std * scale + 6:.1f}" y="{y + 14}">{mean:.2f} ± {std:.2f}</text>']
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _isnan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
