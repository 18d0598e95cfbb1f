"""Altair chart builders (data in, chart out; no Streamlit calls)."""

from __future__ import annotations

import altair as alt
import pandas as pd

HEIGHT = 260
PANEL_WIDTH = 420


def _label(value) -> str:
    """A setting as a short category label (``256``, not ``256.0``)."""
    number = pd.to_numeric(value, errors="coerce")
    return str(value) if pd.isna(number) else f"{number:g}"


def _ordinal(labels) -> list:
    """Category labels sorted numerically where they are numbers."""
    return sorted(pd.unique(labels), key=lambda v: (pd.to_numeric(v, errors="coerce"), str(v)))


def lines(frame: pd.DataFrame, x: str, ys: list[str], title: str, y_title: str = "") -> alt.Chart:
    """One line per column of ``ys`` against ``x``."""
    long = frame[[x, *ys]].melt(x, var_name="series", value_name="value").dropna()
    return alt.Chart(long, title=title, height=HEIGHT).mark_line(point=len(frame) < 50).encode(
        x=alt.X(f"{x}:Q", title=x.replace("_", " ")),
        y=alt.Y("value:Q", title=y_title or ", ".join(ys), scale=alt.Scale(zero=False)),
        color=alt.Color("series:N", title=None),
        tooltip=[x, "series", alt.Tooltip("value:Q", format=".4g")],
    )


def seeds_panel(stats: pd.DataFrame, title: str, metric: str) -> alt.Chart:
    """Mean over seeds with ± std error bars, one colour per method."""
    stats = stats.assign(value=stats["value"].map(_label))
    base = alt.Chart(stats, title=title, height=HEIGHT, width=PANEL_WIDTH).encode(
        x=alt.X("value:O", sort=_ordinal(stats["value"]), title="setting"),
        color=alt.Color("method:N", title="sslbench"),
    )
    tip = ["method", "value", alt.Tooltip("mean:Q", format=".2f"), alt.Tooltip("std:Q", format=".2f"),
           alt.Tooltip("count:Q", title="seeds")]
    return alt.layer(
        base.mark_line(point=True).encode(y=alt.Y("mean:Q", title=f"{metric} top-1 (%)",
                                                  scale=alt.Scale(zero=False)), tooltip=tip),
        base.mark_errorbar(ticks={"size": 10}).encode(y=alt.Y("low:Q", title=f"{metric} top-1 (%)"), y2="high:Q"),
    )


def paper_panel(rows: pd.DataFrame, title: str) -> alt.Chart:
    """Published curves: one line per (method, fixed setting), sources in the tooltip."""
    rows = rows.dropna(subset=["value"]).assign(curve=lambda d: d["method"] + ": " + d["fixed"].astype(str),
                                                setting=lambda d: d["setting"].map(_label))
    legend = alt.Legend(orient="bottom", columns=1, labelLimit=500)
    chart = alt.Chart(rows, title=title, height=HEIGHT, width=PANEL_WIDTH)
    return chart.mark_line(point=True, strokeDash=[4, 2]).encode(
        x=alt.X("setting:O", sort=_ordinal(rows["setting"]), title="setting"),
        y=alt.Y("value:Q", title="published linear top-1 (%)", scale=alt.Scale(zero=False)),
        color=alt.Color("curve:N", title="published", legend=legend),
        tooltip=["method", "setting", "value", "fixed", "source"],
    )


def side_by_side(*panels: alt.Chart) -> alt.HConcatChart:
    """Panels with their own y scales and legends (they are on different scales)."""
    return alt.hconcat(*panels).resolve_scale(y="independent", color="independent")


def pareto(frame: pd.DataFrame, front: pd.DataFrame, cost: str, score: str, title: str) -> alt.Chart:
    """Score against cost (symlog axis: baselines cost 0) with the Pareto front as a step line."""
    x = alt.X(f"{cost}:Q", title=cost, scale=alt.Scale(type="symlog"))
    y = alt.Y(f"{score}:Q", title=f"{score} top-1 (%)", scale=alt.Scale(zero=False))
    points = alt.Chart(frame, title=title, height=HEIGHT + 60).mark_circle(size=90).encode(
        x=x, y=y, color=alt.Color("method:N"), tooltip=["method", "backbone", cost, score, "status"])
    labels = alt.Chart(frame).mark_text(align="left", dx=7, dy=-7).encode(x=x, y=y, text="method:N")
    line = alt.Chart(front.assign(front="Pareto front")).mark_line(interpolate="step-after", color="gray",
                                                                    strokeDash=[6, 3]).encode(x=x, y=y)
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
