"""The claims ledger: each paper claim, our numbers, the verdict and the rule that decided it."""

import streamlit as st

import data
import widgets

COLUMNS = ["claim", "source", "our_numbers", "verdict", "rule"]

widgets.page("Claims", "Qualitative claims from the papers, re-tested at small scale, with the evidence numbers.")

claims = data.claims()
if claims is None:
    widgets.not_yet("The claims ledger", data.relative(data.claims_path()),
                    "It is produced from the ablation sweeps (a separate issue); nothing has been tested yet.")
    st.stop()

counts = claims["verdict"].astype(str).value_counts()
for column, (verdict, n) in zip(st.columns(max(1, len(counts))), counts.items()):
    column.metric(verdict, n)
shown = claims[[c for c in COLUMNS if c in claims.columns] + [c for c in claims.columns if c not in COLUMNS]]
widgets.table(shown, "sslbench_claims.csv", {
    "our_numbers": st.column_config.TextColumn("our numbers", help="The evidence measured by sslbench"),
    "rule": st.column_config.TextColumn("rule", help="How the verdict is decided from the numbers"),
})
