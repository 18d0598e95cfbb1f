"""Read-only loaders for results/ and runs/ under the project root.

The root is the parent of app/, or ``SSLBENCH_ROOT`` when set. Every loader is
cached with ``st.cache_data`` keyed on the file's modification time, so a new
result appears on the next rerun. Nothing here writes, unpickles, or takes a
path from the user: names come from listing the directories.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import pandas as pd
import streamlit as st
import yaml

CODE_ROOT = Path(__file__).resolve().parents[1]
if str(CODE_ROOT) not in sys.path:
    sys.path.append(str(CODE_ROOT))


def code(module: str):
    """``<package>.<module>`` of the code, e.g. ``pipeline.results`` (importable once this module has put
    the code root on sys.path)."""
    return importlib.import_module(module)


def root() -> Path:
    """The project directory holding results/ and runs/."""
    env = os.environ.get("SSLBENCH_ROOT")
    return Path(env).expanduser().resolve() if env else CODE_ROOT


def layout():
    """``bench.paths``: the names of the results/ and runs/ layout the pipeline writes."""
    return code("bench.paths")


def results_dir() -> Path:
    return root() / layout().RESULTS


def runs_dir() -> Path:
    return root() / layout().RUNS


def relative(path: Path) -> str:
    """``path`` relative to the project root, for display."""
    try:
        return str(path.relative_to(root()))
    except ValueError:
        return str(path)


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns


@st.cache_data(show_spinner=False)
def _csv(path: str, mtime: int) -> pd.DataFrame:
    return pd.read_csv(path)


@st.cache_data(show_spinner=False)
def _json(path: str, mtime: int) -> dict:
    return json.loads(Path(path).read_text())


@st.cache_data(show_spinner=False)
def _yaml(path: str, mtime: int) -> dict:
    return yaml.safe_load(Path(path).read_text()) or {}


@st.cache_data(show_spinner=False)
def _jsonl(path: str, mtime: int) -> pd.DataFrame:
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written by a live run
            continue
    return pd.DataFrame(records)


def read_csv(path: Path) -> pd.DataFrame | None:
    return _csv(str(path), _mtime(path)) if path.is_file() else None


def read_json(path: Path) -> dict | None:
    return _json(str(path), _mtime(path)) if path.is_file() else None


def read_jsonl(path: Path) -> pd.DataFrame | None:
    return _jsonl(str(path), _mtime(path)) if path.is_file() else None


def concat_csvs(paths: list[Path], label: str) -> pd.DataFrame | None:
    """Several CSV files as one table, with the file's stem in column ``label``."""
    frames = [read_csv(p).assign(**{label: p.stem}) for p in sorted(paths)]
    return pd.concat(frames, ignore_index=True) if frames else None


# results/


def suites() -> list[str]:
    """Sub-folders of results/ that hold a leaderboard.csv."""
    base = results_dir()
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / layout().LEADERBOARD).is_file())


def leaderboard(suite: str) -> pd.DataFrame | None:
    return read_csv(results_dir() / suite / layout().LEADERBOARD) if suite in suites() else None


def rows(suite: str) -> pd.DataFrame | None:
    """Long-form result rows of every method of ``suite``."""
    if suite not in suites():
        return None
    return concat_csvs(list((results_dir() / suite / layout().ROWS).glob("*.csv")), "file")


def paper_results() -> pd.DataFrame | None:
    return read_csv(results_dir() / "reference" / "paper_results.csv")


def paper_ablations() -> pd.DataFrame | None:
    return read_csv(results_dir() / "reference" / "paper_ablations.csv")


def ablations_dir() -> Path:
    return results_dir() / "ablations"


def ablations() -> pd.DataFrame | None:
    """All sweeps in results/ablations/*.csv (column ``sweep`` = file name), or None."""
    return concat_csvs(list(ablations_dir().glob("*.csv")), "sweep") if ablations_dir().is_dir() else None


def claims_path() -> Path:
    return results_dir() / "claims.csv"


def claims() -> pd.DataFrame | None:
    return read_csv(claims_path())


def suite_info(suite: str) -> dict:
    """The suite's definition (bench/suites/<suite>.yaml in the code), or {} if unknown."""
    path = CODE_ROOT / "bench" / "suites" / f"{suite}.yaml"
    return _yaml(str(path), _mtime(path)) if path.is_file() else {}


# runs/


def runs() -> pd.DataFrame:
    """One row per run directory runs/<suite>/<method>[/<backbone>]/seed<N>/, the layout ``bench.paths`` writes
    (``backbone`` is None for the suite's own backbone; hidden folders skipped)."""
    found = layout().find_runs(runs_dir())
    return pd.DataFrame(found, columns=["suite", "method", "backbone", "seed", "path"])


def run_record(run: Path) -> dict | None:
    return read_json(run / "run.json")


def run_metrics(run: Path) -> pd.DataFrame | None:
    return read_jsonl(run / "metrics.jsonl")
