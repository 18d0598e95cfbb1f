"""Streamlit pieces shared by the pages: header, pickers, notices, tables with a CSV download."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import data
import tables


def page(title: str, intro: str = "") -> None:
    """Page config, title, one-line intro, and where the data comes from (sidebar)."""
    st.set_page_config(page_title=f"sslbench · {title}", layout="wide")
    st.title(title)
    if intro:
        st.caption(intro)
    st.sidebar.caption(f"Reading (read-only): `{data.root()}`")


def not_yet(what: str, path: str, how: str) -> None:
    """A plain notice that a table or folder does not exist yet."""
    st.info(f"**{what} not yet available.** `{path}` does not exist under the project root. {how}", icon="ℹ️")


def pick(label: str, options: list, default=None, key: str | None = None, **kwargs):
    """A selectbox preselecting ``default`` when it is one of ``options``."""
    index = options.index(default) if default in options else 0
    return st.selectbox(label, options, index=index, key=key, **kwargs)


def suite_picker(suites: list[str], key: str = "suite") -> str:
    return pick("Suite", suites, default="tiny", key=key,
                help="Sub-folders of results/ that hold a leaderboard.csv")


def suite_caveat(suite: str, dataset: str) -> None:
    """Say what a suite's numbers are, and that small suites are not comparable to papers."""
    info = data.suite_info(suite)
    if info.get("description"):
        st.markdown(f"**Suite `{suite}`:** {info['description']}.")
    if dataset != tables.REFERENCE_DATASET:
        st.warning(
            f"The `{suite}` numbers come from a short budget on {dataset or 'its own dataset'} "
            "(on this machine: a few minutes of CPU). They rank methods at this budget only and are "
            "**not comparable to the papers' ImageNet numbers**.", icon="⚠️")


def status_alert(frame: pd.DataFrame, status_col: str = "status", name_col: str = "method") -> None:
    """List every row whose status is not complete (independent of any filter)."""
    flagged = frame[~frame[status_col].astype(str).str.contains("complete")]
    if not flagged.empty:
        items = ", ".join(f"`{r[name_col]}` ({r[status_col]})" for _, r in flagged.iterrows())
        st.warning(f"Not a clean run: {items}. See the status and deviation columns.", icon="⚠️")


def table(frame: pd.DataFrame, file_name: str, column_config: dict | None = None, key: str | None = None) -> None:
    """The table as displayed, plus a CSV download of exactly those rows and columns."""
    st.dataframe(frame, hide_index=True, column_config=column_config, width="stretch", placeholder="—")
    st.download_button("Download this table (CSV)", frame.to_csv(index=False).encode("utf-8"),
                       file_name=file_name, mime="text/csv", key=key or f"download-{file_name}")


def chart(spec) -> None:
    st.altair_chart(spec, width="stretch")
