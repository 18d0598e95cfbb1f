"""Accuracy against training cost per suite, with the Pareto front (cheaper and better at once)."""

import streamlit as st

import charts
import data
import tables
import widgets

COSTS = {"seconds": "wall seconds", "flops": "training FLOPs", "images_seen": "images seen"}

widgets.page("Cost vs accuracy", "Each point is one method of a suite; the dashed line is the Pareto front "
             "(no other method is both cheaper and more accurate). The x axis is symlog: baselines cost 0.")

suites = data.suites()
if not suites:
    widgets.not_yet("Leaderboards", "results/<suite>/leaderboard.csv", "Run `make run` first.")
    st.stop()

left, right = st.columns(2)
score = left.radio("Accuracy", ["linear", "knn_k20"], horizontal=True)
cost = right.radio("Cost", list(COSTS), format_func=COSTS.get, horizontal=True)

for suite in suites:
    board = data.leaderboard(suite)
    if score not in board or cost not in board:
        st.caption(f"`{suite}`: no {score} or {cost} column.")
        continue
    front = tables.pareto_front(board, cost, score)
    widgets.chart(charts.pareto(board, front, cost, score, f"suite {suite}"))
    st.caption(f"`{suite}` Pareto front: " + " → ".join(front["method"]))
