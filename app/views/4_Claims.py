"""The claims ledger: each paper claim, our numbers, the verdict (coloured) and the rule that decided it."""

import streamlit as st

import data
import tables
import widgets

COLUMNS = ["claim", "source", "our_numbers", "verdict", "rule"]
COLOURS = {"reproduced": "#c8e6c9", "not reproduced": "#ffcdd2", "inconclusive": "#fff3c4", "not run": "#eeeeee"}

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
shown = shown.assign(**{"printed rule gives": [tables.rule_verdict(n, r) for n, r in
                                               zip(shown.get("our_numbers", ""), shown.get("rule", ""))]})
mismatch = shown[(shown["printed rule gives"] != "") & (shown["printed rule gives"] != shown["verdict"])]
if len(mismatch):
    st.warning("A verdict that does not follow its printed rule: " + "; ".join(
        f"**{r['claim']}** says *{r['verdict']}*, its rule gives *{r['printed rule gives']}*"
        for _, r in mismatch.iterrows()) + ". The ledger (pipeline/claims.py) must print the rule it applies.",
        icon="⚠️")
shown = shown.rename(columns={"our_numbers": "our numbers"}).fillna("")
st.table(shown.style.map(lambda v: f"background-color: {COLOURS[v]}" if v in COLOURS else "",
                         subset=["verdict", "printed rule gives"]))
st.download_button("Download this table (CSV)", claims.to_csv(index=False).encode(), file_name="sslbench_claims.csv",
                   mime="text/csv", key="download-claims")
st.caption(f"`{data.relative(data.claims_path())}` · verdict colours: green reproduced, red not reproduced, "
           "amber inconclusive, grey not run. 'printed rule gives': the verdict re-derived here from the numbers "
           "and the rule as printed (empty where the rule is not the two-arm rule).")
