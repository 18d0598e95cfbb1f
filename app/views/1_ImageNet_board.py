"""Published ImageNet-1k numbers (with sources) next to sslbench's own `imagenet` suite, where it exists."""

import pandas as pd
import streamlit as st

import data
import tables
import widgets

SUITE = "imagenet"
PRETRAIN = tables.PRETRAINED
TRANSFER = {"voc07+12": "VOC07+12", "coco2017": "COCO"}
DETAIL = ["method", "backbone", "pretrain_epochs", "batch_size", "protocol", "metric", "value", "verified", "source",
          "link"]
LINK = {"link": st.column_config.LinkColumn("link", help="The paper (arXiv) or repository the number comes from",
                                            display_text=r"https://(?:arxiv\.org/abs/|github\.com/)(.*)"),
        "linear: link": st.column_config.LinkColumn("linear: link", display_text=r"https://(?:arxiv\.org/abs/|"
                                                    r"github\.com/)(.*)")}

widgets.page("ImageNet board",
             "Published numbers, clearly labelled as published, each with its source; "
             "sslbench's own `imagenet` suite beside them wherever its results exist.")

paper = data.paper_results()
if paper is None:
    widgets.not_yet("Published numbers", "results/reference/paper_results.csv", "It is committed with the code.")
    st.stop()
paper = paper.assign(link=paper["source"].map(tables.source_link))


def column_label(row) -> str:
    if row["dataset"] in TRANSFER:
        return f"{TRANSFER[row['dataset']]} {row['metric']} ({row['backbone']})"
    return f"{tables.PROTOCOL_LABELS.get(row['protocol'], row['protocol'])} {row['metric']}"


def column_order(label: str) -> tuple:
    return (label.split()[0] in TRANSFER.values(), not label.startswith("linear"), label)


def summary(paper: pd.DataFrame) -> pd.DataFrame:
    """One row per method; a cell is the ResNet-50 (else any backbone) longest-schedule number of its column."""
    keep = paper[(paper["dataset"] == tables.REFERENCE_DATASET) & paper["protocol"].isin(PRETRAIN)
                 | paper["dataset"].isin(TRANSFER)]
    keep = keep.assign(column=keep.apply(column_label, axis=1), other=keep["backbone"] != "resnet50")
    best = keep.sort_values(["other", "pretrain_epochs"], ascending=[True, False], na_position="last")
    best = best.drop_duplicates(["method", "column"])
    wide = best.pivot(index="method", columns="column", values="value")
    wide = wide[sorted(wide.columns, key=column_order)]
    wide.columns.name = None
    linear = best[best["column"] == "linear top1"].set_index("method")
    wide.insert(0, "backbone (linear)", linear["backbone"])
    wide["linear: setting and source"] = linear.apply(tables.describe_source, axis=1)
    wide["linear: link"] = linear["source"].map(tables.source_link)
    return wide.reset_index()


ours = data.leaderboard(SUITE)
board = summary(paper)
if ours is None:
    st.info(f"**No sslbench results for the `{SUITE}` suite yet.** It needs ImageNet-1k and a GPU cluster "
            "(ResNet-50, 224 px, 200 epochs); this machine is CPU-only. Every number below is **published**, "
            f"not measured by sslbench. Once `results/{SUITE}/leaderboard.csv` exists its columns appear here.",
            icon="ℹ️")
else:
    mine = ours.drop_duplicates("method").set_index("method")
    for p in [p for p in tables.protocols_in(ours) if p in PRETRAIN]:
        board[f"sslbench {tables.PROTOCOL_LABELS[p]}"] = board["method"].map(mine[p])
    if "linear" in mine:
        board["gap linear (pts)"] = board["sslbench linear"] - board.get("linear top1")
    widgets.status_alert(ours)

st.subheader("Published summary (one row per method)")
st.caption("Each cell: the published number with the longest pretraining schedule for that column; "
           "the tables below give backbone, epochs, batch and the source of every number.")
widgets.table(board, "sslbench_imagenet_published_summary.csv", LINK, key="summary",
              height=widgets.table_height(len(board)))

st.subheader("Published: ImageNet-1k pretraining and evaluation")
pre = paper[paper["dataset"] == tables.REFERENCE_DATASET].sort_values(["method", "protocol", "pretrain_epochs"])
widgets.table(pre[DETAIL], "sslbench_published_imagenet1k.csv", LINK, key="pre")

st.subheader("Published: detection and segmentation transfer (VOC07+12, COCO)")
tr = paper[paper["dataset"].isin(TRANSFER)].sort_values(["dataset", "protocol", "method", "pretrain_epochs"])
widgets.table(tr[["dataset", *DETAIL]], "sslbench_published_transfer.csv", LINK, key="transfer")

st.subheader("Published: CIFAR-10 (small-scale reproductions)")
st.caption("Numbers reported on CIFAR-10, mostly by reproduction libraries (lightly, solo-learn): closer in scale to "
           "sslbench's suites than ImageNet, still a different dataset and budget.")
cifar = paper[paper["dataset"] == "cifar10"].sort_values(["method", "protocol", "pretrain_epochs"])
widgets.table(cifar[DETAIL], "sslbench_published_cifar10.csv", LINK, key="cifar10")
st.caption(f"Source table: `{data.relative(data.results_dir() / 'reference' / 'paper_results.csv')}`. "
           "`verified = partly`: quoted from a secondary source.")
