"""Ablations: accuracy against batch size, momentum, queue length and temperature, next to the papers' curves."""

import streamlit as st

import charts
import data
import tables
import widgets

# panel -> (hyper-parameter names in sslbench sweeps, ablation names in paper_ablations.csv)
PANELS = {
    "batch size": ({"batch_size"}, {"batch_size"}),
    "momentum (EMA decay)": ({"momentum", "tau_base", "target_decay"}, {"momentum", "target_decay"}),
    "queue length": ({"queue_length", "queue_size"}, {"queue_length"}),
    "temperature": ({"temperature"}, {"temperature"}),
}
METRICS = ["linear", "knn_k20", "knn_k200"]

widgets.page("Ablations",
             "sslbench sweeps (mean ± std over seeds) on the left; the papers' published curves on the right. "
             "The two panels are on different scales (different data, backbone and budget): compare shapes, "
             "not values.")

sweeps = data.ablations()
paper = data.paper_ablations()
if sweeps is None:
    widgets.not_yet("sslbench ablation sweeps", "results/ablations/",
                    "The sweeps are produced by `sslbench sweep` (a separate issue); until then only the papers' "
                    "curves are shown below.")
    metric = None
else:
    metric = widgets.pick("Metric", [m for m in METRICS if m in sweeps.columns], default="linear")
    widgets.status_alert(sweeps.assign(method=sweeps["method"] + " " + sweeps["parameter"] + "="
                                       + sweeps["value"].astype(str) + " seed " + sweeps["seed"].astype(str)))

for panel, (ours_names, paper_names) in PANELS.items():
    st.subheader(f"Accuracy vs {panel}")
    parts = []
    if sweeps is not None:
        sel = sweeps[sweeps["parameter"].isin(ours_names)]
        if sel.empty:
            st.caption(f"No sslbench sweep over {panel} yet.")
        else:
            stats = tables.seed_stats(sel, ["suite", "method", "value"], metric)
            suites = ", ".join(sorted(sel["suite"].astype(str).unique()))
            parts.append(charts.seeds_panel(stats, f"sslbench ({suites}; error bars: ± std over seeds)", metric))
    published = paper[paper["ablation"].isin(paper_names)] if paper is not None else paper
    if published is not None and not published.empty:
        parts.append(charts.paper_panel(published, "published (ImageNet, ResNet-50) — different scale"))
        missing = published[published["value"].isna()]
        notes = "; ".join(f"{r['method']} {r['ablation']}={r['setting']}: no number ({r['fixed']})"
                          for _, r in missing.iterrows())
        sources = "; ".join(sorted(published["source"].unique()))
        st.caption(f"Published curves from `results/reference/paper_ablations.csv`: {sources}."
                   + (f" {notes}." if notes else ""))
    if parts:
        widgets.chart(charts.side_by_side(*parts))
    else:
        st.caption(f"No published curve for {panel} in the reference table.")
