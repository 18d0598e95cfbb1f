"""Streamlit pieces shared by the pages: header, pickers, notices, tables with a CSV download."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import data
import tables

NARROW_MARGINS = "[data-testid='stMainBlockContainer'] {padding: 3.5rem 1.5rem 3rem 1.5rem;}"  # room for tables


def page(title: str, intro: str = "") -> None:
    """Page config, title, one-line intro, and where the data comes from (sidebar)."""
    st.set_page_config(page_title=f"sslbench · {title}", layout="wide")
    st.html(f"<style>{NARROW_MARGINS}</style>")
    st.title(title)
    st.caption(f"{intro} Reading (read-only): `{data.root()}`".strip())


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


def suite_caveat(suite: str, dataset: str, board: pd.DataFrame | None = None) -> None:
    """Say what a suite's numbers are (the suite file's description, the board's measured time), and that
    small suites are not comparable to papers."""
    info = data.suite_info(suite)
    line = f"**Suite `{suite}`:** {info['description'].rstrip('.')}." if info.get("description") else ""
    if board is not None and "seconds" in board and board["seconds"].notna().any():
        trained = board.loc[board["seconds"] > 0, "seconds"]
        if len(trained):
            line += (f" This board measured a median of {trained.median():.0f} s of pretraining per method and "
                     f"seed (range {trained.min():.0f}-{trained.max():.0f} s; the `seconds` column).")
    if line:
        st.markdown(line.strip())
    if dataset != tables.REFERENCE_DATASET:
        st.warning(
            f"The `{suite}` numbers come from a short budget on {dataset or 'its own dataset'}. They rank methods "
            "at this budget only and are **not comparable to the papers' ImageNet numbers**.", icon="⚠️")


def status_alert(frame: pd.DataFrame, hidden: pd.DataFrame | None = None, status_col: str = "status",
                 name_col: str = "method") -> None:
    """Name every shown row whose status is not complete, and count the flagged rows the filters hide."""
    def flagged(rows):
        return rows[~rows[status_col].astype(str).str.contains(tables.schema.COMPLETE)] if rows is not None else rows

    shown, more = flagged(frame), flagged(hidden)
    extra = f" ({len(more)} more among the rows hidden by the filters.)" if more is not None and len(more) else ""
    if not shown.empty:
        items = ", ".join(f"`{r[name_col]}` ({r[status_col]})" for _, r in shown.iterrows())
        st.warning(f"Not a clean run: {items}. See the status column and the notes below the table.{extra}",
                   icon="⚠️")
    elif extra:
        st.info(f"The rows shown ran clean.{extra}", icon="ℹ️")


SHADES = {"best": "#c8e6c9", "tie": "#e8f5e9", "below_random": "#ffcdd2", "below_pixels": "#ffe0b2"}


def shade(view: pd.DataFrame, marks: pd.DataFrame, protocols: list[str]):
    """The view with each protocol cell's background coloured by its first mark (the glyphs say the same)."""
    def colour(column: pd.Series) -> list[str]:
        found = marks[next(p for p in protocols if tables.PROTOCOL_LABELS[p] == column.name)]
        return [f"background-color: {SHADES[m.split()[0]]}" if m else "" for m in found.loc[column.index]]

    labels = [tables.PROTOCOL_LABELS[p] for p in protocols]
    return view.style.apply(colour, subset=labels)


ROW_PX, HEADER_PX = 35, 38


def table_height(n_rows: int) -> int:
    """A data frame height that shows every row without an inner scroll bar."""
    return HEADER_PX + ROW_PX * max(1, n_rows) + 3


def baseline_summary(counts: list[pd.DataFrame]) -> None:
    """One line per baseline: per protocol, how many self-supervised rows beat it (and clearly, > 2 std)."""
    for frame in counts:
        if frame is None or frame.empty:
            continue
        name = frame["baseline"].iloc[0]
        cells = [f"{tables.PROTOCOL_LABELS.get(r['protocol'], r['protocol'])} {r['above']}/{r['methods']} "
                 f"({r['clearly_above']} clearly)" for _, r in frame.iterrows()]
        st.caption(f"Self-supervised rows above `{name}` (mean; clearly: by more than 2 std): " + " · ".join(cells))


def notes(board: pd.DataFrame) -> None:
    """The notes and deviations of the given rows, one line each (never hidden in a tooltip)."""
    lines = []
    for _, row in board.iterrows():
        for kind in ("notes", "deviation"):
            text = row.get(kind)
            if isinstance(text, str) and text:
                lines.append(f"- `{row['method']}` ({row['backbone']}), {'note' if kind == 'notes' else kind}: {text}")
    if lines:
        st.markdown("**Notes**\n" + "\n".join(lines))


def details_config(paper: pd.DataFrame | None, details: pd.DataFrame) -> dict:
    """Column help and number formats of the details table (published numbers, cost, device)."""
    sources = tables.published_linear(paper)
    source_help = "Published ImageNet-1k linear top-1 (longest schedule), per method:\n\n" + "\n".join(
        f"- **{r['method']}** {r[tables.PUBLISHED]}: {tables.describe_source(r)}" for _, r in sources.iterrows()
        if r["method"] in set(details["method"]))
    return {
        "rank": st.column_config.NumberColumn("rank"),
        "seeds": st.column_config.NumberColumn("seeds", help="Number of seeds behind mean ± std"),
        **{label: st.column_config.TextColumn(label, help=f"{tables.PROTOCOL_HELP[pid]}; mean ± std over seeds")
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


def table(frame: pd.DataFrame, file_name: str, column_config: dict | None = None, key: str | None = None,
          height: int | str = "auto") -> None:
    """The table as displayed, plus a CSV download of exactly those rows and columns."""
    st.dataframe(frame, hide_index=True, column_config=column_config, width="stretch", placeholder="—",
                 height=height)
    st.download_button("Download this table (CSV)", frame.to_csv(index=False).encode("utf-8"),
                       file_name=file_name, mime="text/csv", key=key or f"download-{file_name}")


def chart(spec, title: str = "") -> None:
    """A chart at the column's width; its title as text above it (a Vega title can be clipped)."""
    if title:
        st.markdown(f"**{title}**")
    st.altair_chart(spec, width="stretch")
