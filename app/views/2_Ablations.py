"""Ablations: every committed sslbench sweep, next to the papers' curves for the same hyper-parameter."""

import pandas as pd
import streamlit as st

import charts
import data
import meta
import tables
import widgets

# panel -> (hyper-parameter names in sslbench sweeps, ablation names in paper_ablations.csv); a swept
# parameter not listed here gets a panel of its own.
PANELS = {
    "batch size": ({"batch_size"}, {"batch_size"}),
    "momentum (EMA decay)": ({"momentum", "tau_base", "target_decay"}, {"momentum", "target_decay"}),
    "queue length": ({"queue_length", "queue_size", "negatives"}, {"queue_length"}),
    "temperature": ({"temperature"}, {"temperature"}),
}

widgets.page("Ablations",
             "sslbench sweeps (mean ± std over seeds) on the left; the papers' published curves on the right. "
             "The two panels are on different scales (different data, backbone and budget): compare shapes, "
             "not values. One colour per method on every panel.")

sweeps = data.ablations()
paper = data.paper_ablations()
if sweeps is None:
    widgets.not_yet("sslbench ablation sweeps", "results/ablations/",
                    "The sweeps are produced by `sslbench sweep` (a separate issue); until then only the papers' "
                    "curves are shown below.")
    metric = None
    panels = dict(PANELS)
else:
    metric = widgets.pick("Metric", tables.protocols_in(sweeps), default=tables.schema.LINEAR,
                          format_func=tables.PROTOCOL_LABELS.get)
    widgets.status_alert(sweeps.assign(method=sweeps["method"] + " " + sweeps["parameter"] + "="
                                       + sweeps["value"].astype(str) + " seed " + sweeps["seed"].astype(str)))
    known = set().union(*(names for names, _ in PANELS.values()))
    panels = {**PANELS, **{str(p).replace("_", " "): ({p}, set()) for p in sweeps["parameter"].unique()
                           if p not in known}}
methods = sorted(set(sweeps["method"] if sweeps is not None else []) | set(paper["method"] if paper is not None
                                                                         else []))
colours = charts.method_colours(methods)


def _g(value) -> str:
    return f"{pd.to_numeric(value):g}"


def effective_notes(sel: pd.DataFrame) -> list[str]:
    """'mocov2 momentum: 0.9 → 0, 0.99 → 0.68' for each sweep whose method rescales the swept value."""
    notes = []
    for (suite, method, parameter), group in sel.groupby(["suite", "method", "parameter"]):
        info = data.suite_info(str(suite))
        pairs = [(v, meta.effective_value(method, parameter, v, info)) for v in sorted(group["value"].unique(),
                                                                                     key=pd.to_numeric)]
        if any(e is not None for _, e in pairs):
            same = pd.Series([round(e, 3) for _, e in pairs]).duplicated().any()
            notes.append(f"`{method}` {parameter} on `{suite}`: " + ", ".join(f"{_g(v)} → {e:.4g}" for v, e in pairs)
                         + (" (some settings ran at the same value: their points are the same runs in effect)"
                            if same else ""))
    return notes


for panel, (ours_names, paper_names) in panels.items():
    st.subheader(f"Accuracy vs {panel}")
    left, right = st.columns(2)
    sel = sweeps[sweeps["parameter"].isin(ours_names)] if sweeps is not None else None
    if sel is None or sel.empty:
        left.caption(f"No sslbench sweep over {panel} yet.")
    else:
        stats = tables.seed_stats(sel, ["suite", "method", "parameter", "value"], metric)
        suites = ", ".join(sorted(sel["suite"].astype(str).unique()))
        x_title = " / ".join(sorted(sel["parameter"].unique())) + " (as set)"
        with left:
            widgets.chart(charts.seeds_panel(stats, tables.PROTOCOL_LABELS[metric], x_title, colours),
                          f"sslbench ({suites}; error bars: ± std over seeds)")
            sweeps_used = ", ".join(f"`{s}`" for s in sorted(sel["sweep"].unique()))
            notes = effective_notes(sel)
            st.caption(f"Sweeps: {sweeps_used}."
                       + (" Effective value after the method scales it to the suite (current rule): "
                          + "; ".join(notes) + "." if notes else ""))
    published = paper[paper["ablation"].isin(paper_names)] if paper is not None else None
    with right:
        if published is not None and not published.empty:
            x_title = " / ".join(sorted(published["ablation"].unique())).replace("_", " ")
            widgets.chart(charts.paper_panel(published, x_title, colours),
                          "published (ImageNet, ResNet-50) — different scale")
            missing = published[published["value"].isna()]
            notes = "; ".join(f"{r['method']} {r['ablation']}={r['setting']}: no number ({r['fixed']})"
                              for _, r in missing.iterrows())
            sources = "; ".join(sorted(published["source"].unique()))
            st.caption(f"Published curves from `results/reference/paper_ablations.csv`: {sources}."
                       + (f" {notes}." if notes else ""))
        else:
            st.caption(f"No published curve for {panel} in the reference table.")
