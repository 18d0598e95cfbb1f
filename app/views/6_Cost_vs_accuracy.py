"""Accuracy against training cost for one suite: linear axes, labelled points, the Pareto front of the
self-supervised methods (cheaper and better at once)."""

import streamlit as st

import charts
import data
import tables
import widgets

COSTS = {"seconds": ("pretraining wall time", "s", 1.0), "flops": ("training FLOPs", "TFLOPs", 1e12),
         "images_seen": ("images seen", "images", 1.0)}

widgets.page("Cost vs accuracy", "Each point is one row of a suite's leaderboard. The dashed line is the Pareto "
             "front of the self-supervised methods (no other one is both cheaper and more accurate); baselines "
             "are grey.")

suites = data.suites()
if not suites:
    widgets.not_yet("Leaderboards", "results/<suite>/leaderboard.csv", "Run `make run` first.")
    st.stop()

pick_suite, pick_score, pick_cost = st.columns([1, 1, 2])
with pick_suite:
    suite = widgets.suite_picker(suites, key="cost_suite")
board = data.leaderboard(suite)
if "family" not in board:
    board = board.assign(family="")
ssl = ~board["family"].isin(tables.NOT_SSL)
scores = [p for p in tables.PRETRAINED if p in board]
# a cost that is the same for every self-supervised row (images seen under a matched budget) is no axis
costs = [c for c in COSTS if c in board and board.loc[ssl, c].nunique() > 1]
constant = [COSTS[c][0] for c in COSTS if c in board and c not in costs]
if not scores or not costs:
    st.caption(f"`{suite}`: no accuracy or cost column that varies.")
    st.stop()
score = pick_score.radio("Accuracy", scores, index=scores.index("linear") if "linear" in scores else 0,
                         format_func=tables.PROTOCOL_LABELS.get, horizontal=True)
cost = pick_cost.radio("Cost", costs, format_func=lambda c: f"{COSTS[c][0]} ({COSTS[c][1]})", horizontal=True)

name, unit, scale = COSTS[cost]
frame = board.assign(cost=board[cost] / scale, kind=ssl.map({True: "self-supervised", False: "baseline"}))
front = tables.pareto_front(frame[ssl], "cost", score)
widgets.chart(charts.pareto(frame, front, score, f"{name} ({unit})", tables.PROTOCOL_LABELS[score]),
              f"suite `{suite}`: {tables.PROTOCOL_LABELS[score]} against {name}")
st.caption(f"`{suite}` Pareto front (self-supervised): " + " → ".join(front["method"])
           + (f". Not an axis: {', '.join(constant)} (the same for every self-supervised row)." if constant else "."))
