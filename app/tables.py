"""Pure table transforms for the pages (no Streamlit calls): labels, mean ± std, published numbers, Pareto front."""

from __future__ import annotations

import math

import pandas as pd

PROTOCOL_LABELS = {
    "knn_k20": "kNN k=20", "knn_k200": "kNN k=200", "linear": "linear", "semi_1pct": "semi 1 %",
    "semi_10pct": "semi 10 %", "det_box_ap": "box AP", "det_box_ap50": "box AP50", "det_box_ap75": "box AP75",
    "seg_mask_ap": "mask AP",
}
STATUS_MARKERS = {"complete": "✔ complete", "deviation": "⚠ deviation", "diverged": "✘ diverged",
                  "failed": "✖ failed"}  # plain glyphs: they render without an emoji font
PUBLISHED = "published IN-1k linear"
PUBLISHED_SOURCE = "published source"
GAP = "gap (pts)"
REFERENCE_DATASET = "imagenet1k"


def marker(status) -> str:
    return STATUS_MARKERS.get(status, f"? {status}")


def _isnum(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def mean_std(mean, std, n_seeds) -> str:
    """``"77.98 ± 0.41"``; the std reads ``—`` with a single seed (it is undefined)."""
    if not _isnum(mean):
        return ""
    spread = f"{std:.2f}" if _isnum(std) and _isnum(n_seeds) and n_seeds > 1 else "—"
    return f"{mean:.2f} ± {spread}"


def protocols_in(board: pd.DataFrame) -> list[str]:
    """Protocol ids that have a column in ``board``, in the declared order."""
    return [p for p in PROTOCOL_LABELS if p in board.columns]


def suite_dataset(info: dict) -> str:
    """The reference-table name of a suite's dataset (``imagenet1k`` for full ImageNet folders)."""
    dataset = (info or {}).get("dataset") or {}
    name = dataset.get("name", "")
    if name == "imagefolder":
        return "imagenet100" if dataset.get("classes_file") else REFERENCE_DATASET
    return name


def published_linear(paper: pd.DataFrame | None) -> pd.DataFrame:
    """Per method, the published ImageNet-1k linear top-1 with the longest pretraining schedule."""
    cols = ["method", PUBLISHED, "backbone", "pretrain_epochs", "batch_size", "source"]
    if paper is None or paper.empty:
        return pd.DataFrame(columns=cols)
    sel = paper[(paper["dataset"] == REFERENCE_DATASET) & (paper["protocol"] == "linear")
                & (paper["metric"] == "top1")]
    sel = sel.sort_values(["method", "pretrain_epochs"], ascending=[True, False], na_position="last")
    best = sel.drop_duplicates("method").rename(columns={"value": PUBLISHED})
    return best[cols].reset_index(drop=True)


def describe_source(row) -> str:
    """``"SimCLR (arXiv 2002.05709) Table 6; resnet50, 1000 ep, batch 4096"``."""
    parts = [str(row["backbone"])]
    if _isnum(row.get("pretrain_epochs")):
        parts.append(f"{int(row['pretrain_epochs'])} ep")
    if _isnum(row.get("batch_size")):
        parts.append(f"batch {int(row['batch_size'])}")
    return f"{row['source']}; {', '.join(parts)}"


def leaderboard_table(board: pd.DataFrame, families: dict[str, str], paper: pd.DataFrame | None,
                      dataset: str) -> pd.DataFrame:
    """The displayed leaderboard: one row per (method, backbone), protocols as mean ± std, cost, published."""
    out = pd.DataFrame({
        "rank": board.get("rank"),
        "status": board["status"].map(marker),
        "method": board["method"],
        "family": board["method"].map(lambda m: families.get(m, "unregistered")),
        "backbone": board["backbone"],
        "seeds": board["n_seeds"],
    })
    for p in protocols_in(board):
        seeds = board.get(f"{p}_n", board["n_seeds"]).fillna(board["n_seeds"])  # fewer where a seed failed
        out[PROTOCOL_LABELS[p]] = [mean_std(m, s, n) + (f" ({int(n)} of {int(total)} seeds)" if n < total else "")
                                   for m, s, n, total in zip(board[p], board.get(f"{p}_std", [None] * len(board)),
                                                             seeds, board["n_seeds"])]
    pub = published_linear(paper).set_index("method")
    out[PUBLISHED] = board["method"].map(pub[PUBLISHED]).astype("Float64")
    comparable = dataset == REFERENCE_DATASET and "linear" in board.columns
    out[GAP] = (board["linear"] - out[PUBLISHED]).round(2) if comparable else pd.Series(pd.NA, index=out.index,
                                                                                           dtype="Float64")
    sources = {m: describe_source(r) for m, r in pub.iterrows()}
    out[PUBLISHED_SOURCE] = board["method"].map(sources).fillna("")
    out["images seen"] = board.get("images_seen")
    hours = board.get("seconds", pd.Series(math.nan, index=board.index)) / 3600
    gpu = board.get("device", pd.Series("", index=board.index)).astype(str).str.contains("cuda")
    out["CPU hours"] = hours.where(~gpu)
    out["GPU hours"] = hours.where(gpu)
    out["TFLOPs"] = board.get("flops") / 1e12 if "flops" in board else None
    out["peak memory (MB)"] = board.get("peak_mem_mb")
    out["device"] = board.get("device")
    out["deviation"] = board.get("deviation", pd.Series("", index=board.index)).astype("string").fillna("")
    out["notes"] = board.get("notes", pd.Series("", index=board.index)).astype("string").fillna("")
    return out[[c for c in out.columns if c != PUBLISHED_SOURCE] + [PUBLISHED_SOURCE]]  # long text last


def pareto_front(frame: pd.DataFrame, cost: str, score: str) -> pd.DataFrame:
    """Points no other point beats on both axes (lower ``cost``, higher ``score``), by increasing cost."""
    pts = frame.dropna(subset=[cost, score]).sort_values([cost, score], ascending=[True, False])
    keep, best = [], -math.inf
    for idx, value in pts[score].items():
        if value > best:
            keep.append(idx)
            best = value
    return pts.loc[keep]


def seed_stats(frame: pd.DataFrame, by: list[str], metric: str) -> pd.DataFrame:
    """Mean, std (0 with one seed) and seed count of ``metric`` per group; NaN values (diverged) excluded."""
    valid = frame.dropna(subset=[metric])
    stats = valid.groupby(by, dropna=False)[metric].agg(["mean", "std", "count"]).reset_index()
    stats["std"] = stats["std"].fillna(0.0)
    stats["low"], stats["high"] = stats["mean"] - stats["std"], stats["mean"] + stats["std"]
    return stats
