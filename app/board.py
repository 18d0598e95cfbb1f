"""Home page: a suite's leaderboard, ranked by a chosen protocol, with honest markers; details in expanders."""

import streamlit as st

import charts
import data
import meta
import tables
import widgets

results = data.code("pipeline.results")

widgets.page("sslbench leaderboard",
             "Matched budget, one declared protocol per column, mean ± std over seeds. "
             "Other pages: the menu at the top.")

suites = data.suites()
if not suites:
    widgets.not_yet("Leaderboards", "results/<suite>/leaderboard.csv",
                    "Run `make run` (or `dvc repro`) to produce the default suite.")
    st.stop()

pick_suite, pick_rank, pick_family, pick_backbone = st.columns([1, 1, 2, 1])
with pick_suite:
    suite = widgets.suite_picker(suites)
board = data.leaderboard(suite)
if "family" not in board:  # older boards: the registry says
    board = board.assign(family=board["method"].map(meta.families()).fillna("unregistered"))
board = board.assign(family=board["family"].fillna("unregistered"))
protocols = tables.protocols_in(board)
with pick_rank:
    rank = widgets.pick("Rank by", protocols, default=tables.schema.LINEAR, format_func=tables.PROTOCOL_LABELS.get,
                        key="rank_by", help="Rank (1 = best) by this protocol's mean over seeds")
all_families, all_backbones = sorted(board["family"].unique()), sorted(board["backbone"].astype(str).unique())
families = pick_family.multiselect("Method family", all_families, default=all_families, help="From the method registry")
backbones = pick_backbone.multiselect("Backbone", all_backbones, default=all_backbones)

dataset = tables.suite_dataset(data.suite_info(suite))
widgets.suite_caveat(suite, dataset, board)
if mixed := results.mixed_precision(board):
    st.warning(mixed[0].upper() + mixed[1:], icon="⚠️")

shown_board = board[board["family"].isin(families) & board["backbone"].astype(str).isin(backbones)]
view, marks = tables.board_view(shown_board, rank)
hidden = tables.board_view(board[~board.index.isin(shown_board.index)], rank)[0] if len(shown_board) < len(board) \
    else view.iloc[0:0]
widgets.status_alert(view, hidden)

config = {
    "rank": st.column_config.NumberColumn("rank", help=f"By {tables.PROTOCOL_LABELS[rank]} (the 'Rank by' box)",
                                          width=45),
    "status": st.column_config.TextColumn("status", width=125, help="complete, deviation, diverged or failed; "
                                          "'⚠ seed …' when one protocol lost a seed (see the notes below the table)"),
    "seeds": st.column_config.NumberColumn("seeds", help="Seeds the method ran", width=45),
    "precision": st.column_config.TextColumn("precision", help="Training precision (fp32 / bf16)", width=70),
    **{tables.PROTOCOL_LABELS[p]: st.column_config.TextColumn(
        tables.PROTOCOL_LABELS[p], help=f"{tables.PROTOCOL_HELP[p]}. Mean ± std over seeds; protocol id `{p}`.")
       for p in protocols},
}
if not view["precision"].str.len().any():  # a board written before rows carried their precision
    view = view.drop(columns="precision")
st.dataframe(widgets.shade(view, marks, protocols), hide_index=True, column_config=config, width="stretch",
             height=widgets.table_height(len(view)), key="board")
st.caption(" · ".join([f"**{tables.MARKS['best']}** best self-supervised mean in the column (per backbone)",
                       f"**{tables.MARKS['tie']}** within one std of it (the larger of the two rows' std)",
                       f"**{tables.MARKS['below_random']}** below `random`",
                       f"**{tables.MARKS['below_pixels']}** below `pixels` (above `random`)",
                       "(1 of 2): seeds behind a mean where one was lost"])
           + f" · {len(view)} of {len(board)} rows shown · "
           f"`{data.relative(data.results_dir() / suite / 'leaderboard.csv')}`")
widgets.baseline_summary([results.above_baseline(board, name, protocols) for name in tables.BASELINES])
widgets.notes(shown_board)
numbers = shown_board.assign(rank=view["rank"]).loc[view.index]
st.download_button("Download CSV (numbers: mean, std, seed counts, cost)", numbers.to_csv(index=False).encode(),
                   file_name=f"sslbench_{suite}_leaderboard.csv", mime="text/csv", key="download-board")

rows = data.rows(suite)
seeds = tables.per_seed(rows, shown_board.loc[view.index]) if rows is not None else None
if seeds is not None and not seeds.empty:
    st.subheader(f"Per-seed spread: {tables.PROTOCOL_LABELS[rank]}")
    widgets.chart(charts.seed_spread(seeds, tables.PROTOCOL_LABELS[rank],
                                     list(view["method"] + " · " + view["backbone"].astype(str))))

with st.expander("Published numbers, cost and device per row"):
    details = tables.leaderboard_table(shown_board, dict(zip(board["method"], board["family"])),
                                       data.paper_results(), dataset).set_index(view.index).loc[view.index]
    details = details.assign(rank=view["rank"])
    widgets.table(details, f"sslbench_{suite}_details.csv", widgets.details_config(data.paper_results(), details),
                  key="details")
    if dataset == tables.REFERENCE_DATASET:
        st.caption(f"Gap = our linear top-1 − the published ImageNet-1k linear top-1 ({tables.PUBLISHED}).")
    else:
        st.caption(f"**The gap column is empty on purpose:** `{suite}` evaluates on {dataset or 'another dataset'}, "
                   "the published numbers are ImageNet-1k linear top-1; a reproduction gap is computed only where "
                   "the protocol and the dataset both match (the `imagenet` suite). Published numbers are shown "
                   "only beside rows of the same backbone family (ResNet or ViT).")

with st.expander("Per-seed results of the rows shown (one row per method, backbone and seed)"):
    if seeds is None or seeds.empty:
        st.caption("No per-seed rows (results/<suite>/rows/) for the rows shown.")
    else:
        widgets.table(seeds, f"sslbench_{suite}_per_seed.csv", key="per-seed",
                      column_config={tables.PROTOCOL_LABELS.get(p, p): st.column_config.NumberColumn(format="%.2f")
                                     for p in protocols})
