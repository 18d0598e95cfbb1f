"""Home page: a suite's leaderboard, one row per method, with cost, status and the published number."""

import streamlit as st

import data
import meta
import tables
import widgets

widgets.page("sslbench leaderboard",
             "Matched budget, one declared protocol per column, mean ± std over seeds. "
             "Pages on the left: ImageNet board, ablations, runs, claims, methods, cost vs accuracy.")

suites = data.suites()
if not suites:
    widgets.not_yet("Leaderboards", "results/<suite>/leaderboard.csv",
                    "Run `make run` (or `dvc repro`) to produce the default suite.")
    st.stop()

suite = widgets.suite_picker(suites)
board = data.leaderboard(suite)
dataset = tables.suite_dataset(data.suite_info(suite))
widgets.suite_caveat(suite, dataset)

families = (dict(zip(board["method"], board["family"])) if "family" in board  # no registry import needed
            else meta.families())
view = tables.leaderboard_table(board, families, data.paper_results(), dataset)
left, right = st.columns(2)
families = left.multiselect("Method family", sorted(view["family"].unique()), default=sorted(view["family"].unique()),
                            help="From the method registry")
backbones = right.multiselect("Backbone", sorted(view["backbone"].unique()), default=sorted(view["backbone"].unique()))
widgets.status_alert(view)
shown = view[view["family"].isin(families) & view["backbone"].isin(backbones)]

sources = tables.published_linear(data.paper_results())
source_help = "Published ImageNet-1k linear top-1 (longest schedule), per method:\n\n" + "\n".join(
    f"- **{r['method']}** {r[tables.PUBLISHED]}: {tables.describe_source(r)}" for _, r in sources.iterrows()
    if r["method"] in set(shown["method"]))
protocol_help = "mean ± std over seeds (— : one seed, no std); top-1 %, "
config = {
    "rank": st.column_config.NumberColumn("rank", help="By linear top-1 (else kNN k=20)"),
    "status": st.column_config.TextColumn("status", help="complete, deviation, diverged or failed: never hidden"),
    "seeds": st.column_config.NumberColumn("seeds", help="Number of seeds behind mean ± std"),
    **{label: st.column_config.TextColumn(label, help=protocol_help + f"protocol id `{pid}`", width=110)
       for pid, label in tables.PROTOCOL_LABELS.items()},
    tables.PUBLISHED: st.column_config.NumberColumn(tables.PUBLISHED, help=source_help, format="%.1f"),
    tables.GAP: st.column_config.NumberColumn(
        tables.GAP, format="%+.2f", help="ours linear − published; only where protocol and dataset match"),
    tables.PUBLISHED_SOURCE: st.column_config.TextColumn(tables.PUBLISHED_SOURCE, help=source_help),
    "images seen": st.column_config.NumberColumn("images seen", format="%d", help="Source images (budget)"),
    "CPU hours": st.column_config.NumberColumn("CPU hours", format="%.4f", help="Wall seconds / 3600 on CPU"),
    "GPU hours": st.column_config.NumberColumn("GPU hours", format="%.3f", help="Wall seconds / 3600 per device"),
    "TFLOPs": st.column_config.NumberColumn("TFLOPs", format="%.3g", help="Measured training FLOPs"),
    "peak memory (MB)": st.column_config.NumberColumn("peak memory (MB)", format="%.0f"),
}
widgets.table(shown, f"sslbench_{suite}_leaderboard.csv", config)

if dataset == tables.REFERENCE_DATASET:
    st.caption(f"Gap = our linear top-1 − the published ImageNet-1k linear top-1 ({tables.PUBLISHED}).")
else:
    st.caption(f"**The gap column is empty on purpose:** `{suite}` evaluates on {dataset or 'another dataset'}, "
               "the published numbers are ImageNet-1k linear top-1; a reproduction gap is computed only where "
               "the protocol and the dataset both match (the `imagenet` suite). Hover the column headers for "
               "protocols and sources.")
source = data.relative(data.results_dir() / suite / "leaderboard.csv")
st.caption(f"{len(shown)} of {len(view)} rows shown · `{source}`")

with st.expander("Per-seed result rows (protocol, metric, seed, git revision, configuration hash)"):
    st.dataframe(data.rows(suite), hide_index=True)
