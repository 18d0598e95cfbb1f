"""Altair chart builders (data in, chart out; no Streamlit calls)."""

from __future__ import annotations

import altair as alt
import pandas as pd

HEIGHT = 260
PANEL_WIDTH = 420


def _label(value) -> str:
    """A setting as a short category label (``256``, not ``256.0``)."""
    if isinstance(value, bool) or str(value) in ("True", "False"):
        return str(value)
    number = pd.to_numeric(value, errors="coerce")
    return str(value) if pd.isna(number) else f"{number:g}"


def _ordinal(labels) -> list:
    """Category labels sorted numerically where they are numbers."""
    return sorted(pd.unique(labels), key=lambda v: (pd.to_numeric(v, errors="coerce"), str(v)))


def run_lines(log: pd.DataFrame, x: str, ys: list[str]) -> alt.Chart:
    """One line per run (colour) and column of ``ys`` (dash: a reference column such as ``embed_std_ideal``)."""
    long = log[[x, "run", *ys]].melt([x, "run"], var_name="series", value_name="value").dropna()
    several = len(ys) > 1
    return alt.Chart(long, height=HEIGHT).mark_line(point=len(log) < 50).encode(
        x=alt.X(f"{x}:Q", title=x.replace("_", " ")),
        y=alt.Y("value:Q", title=", ".join(ys), scale=alt.Scale(zero=False)),
        color=alt.Color("run:N", title=None, legend=alt.Legend(orient="bottom", labelLimit=0)),
        strokeDash=alt.StrokeDash("series:N", title=None, legend=alt.Legend(orient="bottom")) if several
        else alt.Undefined,
        tooltip=["run", "series", x, alt.Tooltip("value:Q", format=".4g")],
    )


PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#b15928", "#bcbd22",
           "#17becf", "#393b79", "#ad494a", "#637939", "#8c6d31", "#7b4173", "#3182bd", "#e6550d", "#31a354",
           "#756bb1", "#00838f", "#a55194", "#6baed6"]  # tab10, then darker distinct hues: no colour repeats


def method_colours(methods: list[str]) -> dict[str, str]:
    """One fixed colour per method, the same on every panel of a page."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(sorted(set(methods)))}


def _colour(field: str, present, colours: dict[str, str] | None, title: str) -> alt.Color:
    """Colour by ``field`` with the page's fixed colours; the legend lists only what this chart shows."""
    present = sorted(set(present))
    scale = alt.Scale(domain=present, range=[colours[m] for m in present]) if colours else alt.Undefined
    return alt.Color(f"{field}:N", title=title, scale=scale, legend=alt.Legend(orient="bottom", labelLimit=0))


def seeds_panel(stats: pd.DataFrame, metric: str, x_title: str = "setting",
                colours: dict[str, str] | None = None) -> alt.Chart:
    """Mean over seeds with ± std error bars, one colour per method (the title goes above, as text)."""
    stats = stats.assign(value=stats["value"].map(_label))
    base = alt.Chart(stats, height=HEIGHT + 60).encode(
        x=alt.X("value:O", sort=_ordinal(stats["value"]), title=x_title, axis=alt.Axis(labelAngle=0)),
        color=_colour("method", stats["method"], colours, "sslbench"),
    )
    tip = ["method", "value", alt.Tooltip("mean:Q", format=".2f"), alt.Tooltip("std:Q", format=".2f"),
           alt.Tooltip("count:Q", title="seeds")]
    return alt.layer(
        base.mark_line(point=True).encode(y=alt.Y("mean:Q", title=f"{metric} (%)",
                                                  scale=alt.Scale(zero=False)), tooltip=tip),
        base.mark_errorbar(ticks={"size": 10}).encode(y=alt.Y("low:Q", title=f"{metric} (%)"), y2="high:Q"),
    )


def paper_panel(rows: pd.DataFrame, x_title: str = "setting", colours: dict[str, str] | None = None) -> alt.Chart:
    """Published curves: colour = method (as on the sslbench panels), dash = the curve's fixed setting."""
    rows = rows.dropna(subset=["value"]).assign(curve=lambda d: d["method"] + ": " + d["fixed"].astype(str),
                                                setting=lambda d: d["setting"].map(_label))
    curves = rows["curve"].nunique()
    chart = alt.Chart(rows, height=HEIGHT + 60 + 18 * curves)
    return chart.mark_line(point=True).encode(
        x=alt.X("setting:O", sort=_ordinal(rows["setting"]), title=x_title, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("value:Q", title="published linear top-1 (%)", scale=alt.Scale(zero=False)),
        color=_colour("method", rows["method"], colours, "published"),
        strokeDash=alt.StrokeDash("curve:N", title="curve",
                                  legend=alt.Legend(orient="bottom", direction="vertical", labelLimit=0)),
        tooltip=["method", "setting", "value", "fixed", "source"],
    )


def side_by_side(*panels: alt.Chart) -> alt.HConcatChart:
    """Panels with their own y scales and legends (they are on different scales)."""
    return alt.hconcat(*panels).resolve_scale(y="independent", color="independent")


def place_labels(frame: pd.DataFrame, x: str, y: str, text: str, width: float = 1000, height: float = 420,
                 char_px: float = 6.5) -> pd.DataFrame:
    """Label positions (``label_x``, ``label_y``, ``align``) that avoid each other and the points.

    Greedy on an assumed plot of ``width`` x ``height`` px (linear scales over the padded data range): each
    label takes the first free spot among right, left, above and below its point, further out and further
    up or down if needed; with none free, the spot that overlaps the fewest labels and points.
    """
    xs, ys = frame[x].astype(float), frame[y].astype(float)
    x0, x1 = _padded(xs)
    y0, y1 = _padded(ys)
    px, py = (xs - x0) / (x1 - x0) * width, (1 - (ys - y0) / (y1 - y0)) * height
    points = [(a - 5, b - 5, a + 5, b + 5) for a, b in zip(px, py)]
    placed, out = [], []
    for (idx, a), b in zip(px.items(), py):
        w, h = char_px * len(str(frame.at[idx, text])), 12
        rows = [(k, d) for k in (0, 40, 80) for d in (0, -14, 14, -28, 28)]
        spots = [(a + 8 + k, b - h / 2 + d) for k, d in rows] + [(a - 8 - w - k, b - h / 2 + d) for k, d in rows]
        spots += [(a - w / 2, b - 20 - h), (a - w / 2, b + 8)]
        others = placed + [p for i, p in enumerate(points) if i != len(out)]
        boxes = [(sx, sy, sx + w, sy + h) for sx, sy in spots if 0 <= sx and sx + w <= width and 0 <= sy
                 and sy + h <= height] or [(a + 8, b - h / 2, a + 8 + w, b + h / 2)]
        box = min(boxes, key=lambda bx: sum(_overlap(bx, o) for o in others))  # the first free one, if any
        placed.append(box)
        out.append({"label_x": x0 + box[0] / width * (x1 - x0), "label_y": y1 - (box[1] + h / 2) / height * (y1 - y0)})
    return frame.assign(**pd.DataFrame(out, index=frame.index))


def _padded(values: pd.Series) -> tuple[float, float]:
    low, high = float(values.min()), float(values.max())
    pad = (high - low) * 0.06 or 1.0
    return low - pad, high + pad


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def pareto(frame: pd.DataFrame, front: pd.DataFrame, score: str, cost_title: str, score_title: str) -> alt.Chart:
    """Accuracy (column ``score``) against ``cost`` on linear axes; one distinct colour per self-supervised
    method (baselines grey), each point labelled beside it (labels placed to avoid each other), the Pareto
    front as a dashed step line."""
    frame = place_labels(frame.dropna(subset=["cost", score]), "cost", score, "method")
    x0, x1 = _padded(frame["cost"])
    y0, y1 = _padded(frame[score])
    x_scale, y_scale = alt.Scale(domain=[x0, x1], nice=False), alt.Scale(domain=[y0, y1], nice=False)
    x = alt.X("cost:Q", title=cost_title, scale=x_scale, axis=alt.Axis(format="~s"))
    y = alt.Y(f"{score}:Q", title=f"{score_title} (%)", scale=y_scale)
    ssl = sorted(frame.loc[frame["kind"] == "self-supervised", "method"])
    colours = method_colours(ssl)
    domain = ssl + sorted(frame.loc[frame["kind"] != "self-supervised", "method"])
    colour = alt.Color("method:N", scale=alt.Scale(domain=domain, range=[colours.get(m, "#9e9e9e") for m in domain]),
                       legend=None)
    base = alt.Chart(frame, height=460)
    points = base.mark_point(filled=True, size=90, opacity=0.9).encode(
        x=x, y=y, color=colour, shape=alt.Shape("kind:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=["method", "family", "backbone", alt.Tooltip("cost:Q", title=cost_title, format=",.4g"),
                 alt.Tooltip(f"{score}:Q", format=".2f"), "status"])
    labels = base.mark_text(align="left", baseline="middle", fontSize=11).encode(
        x=alt.X("label_x:Q", scale=x_scale, title=cost_title), y=alt.Y("label_y:Q", scale=y_scale), text="method:N",
        color=colour)
    line = alt.Chart(front.assign(front="Pareto front")).mark_line(
        interpolate="step-after", color="#616161", strokeDash=[6, 3]).encode(x=x, y=y)
    return alt.layer(line, points, labels)


def seed_spread(seeds: pd.DataFrame, label: str, order: list[str]) -> alt.Chart:
    """Each seed's value of one protocol as a dot, the range over seeds as a bar, one row per method."""
    frame = seeds.dropna(subset=[label]).assign(row=lambda d: d["method"] + " · " + d["backbone"].astype(str))
    frame = frame.rename(columns={label: "value"})
    y = alt.Y("row:N", sort=[r for r in order if r in set(frame["row"])], title=None,
              axis=alt.Axis(labelLimit=220, labelOverlap=False))
    x = alt.X("value:Q", title=f"{label} (%)", scale=alt.Scale(zero=False), axis=alt.Axis(tickCount=10))
    height = 22 * frame["row"].nunique() + 20
    base = alt.Chart(frame, height=height)
    span = base.mark_rule(strokeWidth=3, color="#9e9e9e").encode(
        y=y, x=alt.X("min(value):Q", title=f"{label} (%)", scale=alt.Scale(zero=False)), x2="max(value):Q")
    dots = base.mark_point(filled=True, size=45, color="#1565c0").encode(
        y=y, x=x, tooltip=["method", "backbone", "seed", alt.Tooltip("value:Q", format=".2f")])
    return alt.layer(span, dots)
