"""Budget curves: accuracy against images seen, one line per method (std band where two seeds exist),
``random`` and ``pixels`` as horizontal lines, and Kendall's tau of each budget's ranking vs the largest."""

import altair as alt
import pandas as pd
import streamlit as st
from pipeline import budget

import charts
import data
import tables
import widgets

widgets.page("Budget curves", "Each point is a separate matched-budget run (its own schedule) at 1x-8x the "
             "suite's budget. Does the ranking at the board's budget survive a bigger one?")

# every budget sweep's CSV (bench/sweeps/<name>.yaml writes results/<suite>/budget/<name>.csv)
found = {f"{p.parent.parent.name}/{p.stem}": p for p in sorted(data.results_dir().glob("*/budget/*.csv"))}
if not found:
    st.info("**Budget curves: not run yet: `sslbench sweep budget`** (60 trials, ~40 min on 2 cores; or "
            "`sslbench sweep budget_short`, 30 trials, ~15 min). They write `results/tiny/budget/`.", icon="ℹ️")
    st.stop()

pick_sweep, pick_protocol = st.columns(2)
sweep = pick_sweep.radio("Sweep", list(found), horizontal=True)
protocol = pick_protocol.radio("Protocol", budget.PROTOCOLS, format_func=tables.PROTOCOL_LABELS.get,
                               horizontal=True)
rows = budget.read_rows(found[sweep])
if not rows:
    st.caption(f"`{sweep}`: no complete trial yet.")
    st.stop()
suite = rows[0]["suite"]
baselines = budget.read_baselines(data.results_dir() / suite / "leaderboard.csv")

images = {(r["method"], r["value"]): r["images_seen"] for r in rows}
curves = pd.DataFrame([{"method": m, "budget": b, "images_seen": images[(m, b)], "mean": mean,
                        "low": mean - std, "high": mean + std, "seeds": n}
                       for m, by in budget.means(rows, protocol).items() for b, (mean, std, n) in by.items()])
colours = charts.method_colours(list(curves["method"]))
colour = alt.Color("method:N", title=None, scale=alt.Scale(domain=list(colours), range=list(colours.values())),
                   legend=alt.Legend(orient="bottom", labelLimit=0))
x = alt.X("images_seen:Q", title="images seen (log2)", scale=alt.Scale(type="log", base=2))
y = alt.Y("mean:Q", title=tables.PROTOCOL_LABELS[protocol], scale=alt.Scale(zero=False))
base = alt.Chart(curves, height=charts.HEIGHT + 100)
layers = [base.mark_area(opacity=0.15).encode(x=x, y="low:Q", y2="high:Q", color=colour)
          .transform_filter(alt.datum.seeds > 1),
          base.mark_line(point=True).encode(x=x, y=y, color=colour,
                                            tooltip=["method", "budget", "images_seen", "seeds",
                                                     alt.Tooltip("mean:Q", format=".2f")])]
lines = pd.DataFrame([{"baseline": n, "mean": v[protocol]} for n, v in baselines.items() if protocol in v])
if not lines.empty:
    rule = alt.Chart(lines).encode(y="mean:Q")
    layers += [rule.mark_rule(color="grey", strokeDash=[6, 4]),
               rule.mark_text(align="left", dx=4, dy=-6, color="grey").encode(x=alt.value(0), text="baseline:N")]
widgets.chart(alt.layer(*layers), f"suite `{suite}`, sweep `{sweep}`: {tables.PROTOCOL_LABELS[protocol]} "
              "against images seen")
if lines.empty:
    st.caption(f"No `random` / `pixels` rows in `results/{suite}/leaderboard.csv`: no baseline lines.")

left, right = st.columns(2)
with left:
    st.markdown("**Kendall's tau vs the largest budget**")
    taus = pd.DataFrame(budget.tau_table(rows))
    st.dataframe(taus.assign(protocol=taus["protocol"].map(tables.PROTOCOL_LABELS)), hide_index=True)
with right:
    st.markdown("**Smallest budget whose mean beats each baseline**")
    st.dataframe(pd.DataFrame(budget.crossings(rows, baselines)).astype(str), hide_index=True)
