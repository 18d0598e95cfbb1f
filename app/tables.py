"""Pure table transforms for the pages (no Streamlit calls): labels, mean ± std, published numbers, Pareto front.

Protocol ids, labels, tooltips and statuses are the code's results schema, ``bench.protocols``."""

from __future__ import annotations

import math
import re

import pandas as pd

import data

schema = data.code("bench.protocols")  # the results schema (data puts the code root on sys.path)
PROTOCOL_LABELS = schema.LABELS
PROTOCOL_HELP = schema.HELP
STATUS_MARKERS = {schema.COMPLETE: "✔ complete", schema.DEVIATION: "⚠ deviation", schema.DIVERGED: "✘ diverged",
                  schema.FAILED: "✖ failed"}  # plain glyphs: they render without an emoji font
NOT_SSL = schema.NOT_SSL_FAMILIES
PRETRAINED = schema.GROUPS[schema.PRETRAINED]  # kNN, linear and semi: measured on every pretrained run
BASELINES = ("random", "pixels")  # rows a self-supervised method should beat
MARKS = {"best": "★", "tie": "≈", "below_random": "▼", "below_pixels": "▽"}
PUBLISHED = "published IN-1k linear"
PUBLISHED_SOURCE = "published source"
GAP = "gap (pts)"
REFERENCE_DATASET = "imagenet1k"


def marker(status) -> str:
    return STATUS_MARKERS.get(status, f"? {status}")


def shown_status(status, notes) -> str:
    """The status as displayed: a row whose seeds are all complete but one protocol lost a seed is not complete."""
    notes = notes if isinstance(notes, str) else ""
    if status == schema.COMPLETE and notes:
        why = next((w for w in (schema.DIVERGED, schema.FAILED) if w in notes), "missing")
        return f"⚠ seed {why}"
    return marker(status)


def _backbone_family(name) -> str:
    return "vit" if str(name).lower().startswith("vit") else "resnet"


def rank_by(board: pd.DataFrame, protocol: str) -> pd.Series:
    """Rank (1 = best, ties share the rank) by ``protocol``'s mean; rows without a value get no rank."""
    return board[protocol].rank(ascending=False, method="min").astype("Int64")


def _baseline_value(board: pd.DataFrame, name: str, protocol: str, backbone) -> float:
    """The ``name`` baseline's mean: its row on ``backbone``, else its only row (pixels has its own backbone)."""
    rows = board[(board["method"] == name) & board[protocol].notna()]
    same = rows[rows["backbone"] == backbone]
    rows = same if len(same) else rows
    return float(rows[protocol].iloc[0]) if len(rows) == 1 else math.nan


def cell_marks(board: pd.DataFrame, protocol: str) -> pd.Series:
    """Per row, the marks of one protocol's cell (keys of ``MARKS``, space-separated).

    best: the highest self-supervised mean among the rows of its backbone; tie: within one std of
    it (the larger of the two rows' std); below_random / below_pixels: mean below that baseline's.
    """
    out = pd.Series("", index=board.index, dtype=object)
    if protocol not in board:
        return out
    family = board["family"] if "family" in board else pd.Series("", index=board.index)
    std = board.get(schema.std_column(protocol), pd.Series(math.nan, index=board.index)).fillna(0.0)
    ssl = ~family.isin(NOT_SSL) & board[protocol].notna()
    for _, group in board[ssl].groupby("backbone"):
        best = group[protocol].idxmax()
        for idx, value in group[protocol].items():
            if idx == best:
                out[idx] = "best"
            elif value >= board.at[best, protocol] - max(std[best], std[idx]):
                out[idx] = "tie"
    for idx, row in board[board[protocol].notna() & ~board["method"].isin(BASELINES)].iterrows():
        for name in BASELINES:  # below random first: below pixels is then implied and not repeated
            base = _baseline_value(board, name, protocol, row["backbone"])
            if not math.isnan(base) and row[protocol] < base:
                out[idx] = f"{out[idx]} below_{name}".strip()
                break
    return out


def compact(mean, std, n, total, marks: str = "") -> str:
    """``"★ 85.8 ± 0.5"``; ``"25.9 (1 of 2)"`` where seeds are missing; the marks' glyphs in front."""
    if not _isnum(mean):
        return ""
    glyphs = "".join(MARKS[m] for m in marks.split())
    spread = f" ± {std:.1f}" if _isnum(std) and _isnum(n) and n > 1 else ""
    missing = f" ({int(n)} of {int(total)})" if _isnum(n) and _isnum(total) and n < total else ""
    return f"{glyphs} {mean:.1f}{spread}{missing}".strip()


def board_view(board: pd.DataFrame, protocol: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The compact leaderboard ranked by ``protocol`` (one text cell per protocol) and its cells' marks.

    Both frames share the board's index, in rank order; the numbers stay in ``board`` (for the CSV).
    """
    board = board.assign(rank=rank_by(board, protocol)).sort_values(["rank", "method"], na_position="last")
    out = pd.DataFrame({
        "rank": board["rank"], "method": board["method"], "backbone": board["backbone"],
        "precision": board.get("precision", pd.Series("", index=board.index)).fillna("").astype(str),
        "status": [shown_status(s, n) for s, n in zip(board["status"], board.get("notes", [""] * len(board)))],
        "seeds": board["n_seeds"],
    }, index=board.index)
    marks = pd.DataFrame(index=board.index)
    for p in protocols_in(board):
        marks[p] = cell_marks(board, p)
        seeds = board.get(schema.n_column(p), board["n_seeds"]).fillna(board["n_seeds"])
        stds = board.get(schema.std_column(p), pd.Series(math.nan, index=board.index))
        out[PROTOCOL_LABELS[p]] = [compact(m, s, n, t, k) for m, s, n, t, k in
                                   zip(board[p], stds, seeds, board["n_seeds"], marks[p])]
    return out, marks


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
    return schema.in_columns(board.columns)


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
    sel = paper[(paper["dataset"] == REFERENCE_DATASET) & (paper["protocol"] == schema.LINEAR)
                & (paper["metric"] == "top1")]
    sel = sel.sort_values(["method", "pretrain_epochs"], ascending=[True, False], na_position="last")
    best = sel.drop_duplicates("method").rename(columns={"value": PUBLISHED})
    return best[cols].reset_index(drop=True)


_ARXIV = re.compile(r"arXiv (\d{4}\.\d{4,5})")
_REPO = re.compile(r"^([\w.-]+/[\w.-]+)\b")


def source_link(source) -> str:
    """A link for a source note: its first arXiv id, else the GitHub repository it starts with, else ''."""
    text = str(source or "")
    if match := _ARXIV.search(text):
        return f"https://arxiv.org/abs/{match.group(1)}"
    if match := _REPO.match(text):
        return f"https://github.com/{match.group(1)}"
    return ""


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
        seeds = board.get(schema.n_column(p), board["n_seeds"]).fillna(board["n_seeds"])  # fewer where a seed failed
        out[PROTOCOL_LABELS[p]] = [mean_std(m, s, n) + (f" ({int(n)} of {int(total)} seeds)" if n < total else "")
                                   for m, s, n, total in zip(board[p], board.get(schema.std_column(p),
                                                                                 [None] * len(board)),
                                                             seeds, board["n_seeds"])]
    pub = published_linear(paper).set_index("method")
    same_kind = [_backbone_family(b) == _backbone_family(pub["backbone"].get(m, "")) for m, b in
                 zip(board["method"], board["backbone"])]  # a ViT row is not compared with a ResNet-50 number
    out[PUBLISHED] = board["method"].map(pub[PUBLISHED]).astype("Float64").where(same_kind)
    comparable = dataset == REFERENCE_DATASET and schema.LINEAR in board.columns
    out[GAP] = (board[schema.LINEAR] - out[PUBLISHED]).round(2) if comparable else pd.Series(pd.NA, index=out.index,
                                                                                           dtype="Float64")
    sources = {m: describe_source(r) for m, r in pub.iterrows()}
    out[PUBLISHED_SOURCE] = board["method"].map(sources).fillna("").where(same_kind, "")
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


def per_seed(rows: pd.DataFrame, board: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, backbone, seed) of ``board``'s rows (in its order): protocol values, status, provenance.

    ``status`` names the protocols of a seed that did not complete (``"diverged: box AP, mask AP"``).
    """
    keys = list(zip(board["method"], board["backbone"].astype(str)))
    rows = rows[[k in set(keys) for k in zip(rows["method"], rows["backbone"].astype(str))]]
    averaged = rows["protocol"].map({p.id: p.metric for p in schema.PROTOCOLS})  # the metric the board averages
    rows = rows[averaged.isna() | (rows["metric"] == averaged)]
    cols = ["method", "backbone", "seed"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    wide = rows.groupby([*cols, "protocol"])["value"].first().unstack("protocol")
    wide = wide[schema.in_columns(wide.columns)].rename(columns=PROTOCOL_LABELS)
    wide.columns.name = None

    def status(group: pd.DataFrame) -> str:
        bad = group[group["status"].astype(str) != schema.COMPLETE]
        return "; ".join(f"{s}: {', '.join(schema.label(p) for p in g['protocol'])}"
                         for s, g in bad.groupby("status")) or schema.COMPLETE

    grouped = rows.groupby(cols)
    info = pd.DataFrame({"status": grouped.apply(status, include_groups=False)})
    for col in ("precision", "git_rev", "config_hash"):
        if col in rows:
            info[col] = grouped[col].agg(lambda v: ",".join(sorted({str(x) for x in v.dropna()})))
    out = wide.join(info).reset_index()
    order = {k: i for i, k in enumerate(keys)}
    out = out.assign(_order=[order[(m, str(b))] for m, b in zip(out["method"], out["backbone"])])
    return out.sort_values(["_order", "seed"]).drop(columns="_order").reset_index(drop=True)


TWO_ARM_RULE = "reproduced if the claimed arm beats the other by more than 2 std over seeds"
_ARM = re.compile(r"^\s*(?P<arm>[^:]+):\s*(?P<mean>-?[\d.]+)\s*±\s*(?P<std>[\d.]+)\s*\(n=(?P<n>\d+)\)\s*$")


def rule_verdict(numbers, rule) -> str:
    """The verdict the printed two-arm rule gives for ``"a: 78.6 ± 0.7 (n=2); b: 78.9 ± 0.6 (n=2)"`` (claimed
    arm first): reproduced if it beats the other by more than 2 x the larger std, not reproduced for the
    reverse, else inconclusive; '' when the rule is another one or the numbers do not parse."""
    if not isinstance(rule, str) or not rule.startswith(TWO_ARM_RULE) or not isinstance(numbers, str):
        return ""
    arms = [_ARM.match(part) for part in numbers.split(";")]
    if len(arms) != 2 or not all(arms):
        return ""
    (m1, s1, n1), (m2, s2, n2) = [(float(a["mean"]), float(a["std"]), int(a["n"])) for a in arms]
    if min(n1, n2) < 2:
        return "inconclusive"
    margin = 2 * max(s1, s2)
    return "reproduced" if m1 - m2 > margin else "not reproduced" if m2 - m1 > margin else "inconclusive"


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


def describe_crop(crop: dict) -> str:
    """One view of ``bench.views.Augment`` (as a dict) in a line: size, crop scale, and each random
    transform with its probability (those at probability 0 left out)."""
    def num(x) -> str:
        return f"{x:g}"

    parts = [f"{crop['size']} px", f"crop scale {num(crop['scale'][0])}–{num(crop['scale'][1])}"]
    if crop.get("flip_p"):
        parts.append(f"flip {num(crop['flip_p'])}")
    if crop.get("jitter_p"):
        strengths = "/".join(num(crop[k]) for k in ("brightness", "contrast", "saturation", "hue"))
        parts.append(f"colour jitter {num(crop['jitter_p'])} ({strengths})")
    for key, name in (("grayscale_p", "grey"), ("blur_p", "blur"), ("solarize_p", "solarize")):
        if crop.get(key):
            parts.append(f"{name} {num(crop[key])}")
    return ", ".join(parts)


def describe_views(crops: list[dict]) -> str:
    """A method's views (``Method.views(resolution).crops`` as dicts), equal neighbours grouped:
    ``"2 × [28 px, crop scale 0.08–1, ...]"``, then ``" + 6 × [...]"`` for multi-crop."""
    groups: list[list] = []
    for crop in crops:
        if groups and groups[-1][1] == crop:
            groups[-1][0] += 1
        else:
            groups.append([1, crop])
    return " + ".join(f"{n} × [{describe_crop(c)}]" for n, c in groups)
