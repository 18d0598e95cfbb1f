"""Where things live, relative to the project root (the current directory, as for DVC)."""

from __future__ import annotations

from pathlib import Path


def root() -> Path:
    return Path.cwd()


def prepared_dir(suite: str) -> Path:
    return root() / "data" / suite


def scenes_dir(suite: str) -> Path:
    """Generated detection scenes: beside ``data/<suite>``, so pretraining's input is unchanged."""
    return root() / "data" / f"{suite}-scenes"


def method_dir(suite: str, method: str, runs: Path | None = None) -> Path:
    return (runs or root() / "runs") / suite / method


def run_dir(suite: str, method: str, seed: int, runs: Path | None = None, backbone: str | None = None) -> Path:
    """``runs/<suite>/<method>[/<backbone>]/seed<s>``: the backbone level only for non-default backbones."""
    base = method_dir(suite, method, runs)
    return (base / backbone if backbone else base) / f"seed{seed}"


def results_dir(suite: str) -> Path:
    return root() / "results" / suite


def rows_path(suite: str, method: str) -> Path:
    return results_dir(suite) / "rows" / f"{method}.csv"


def features_cache(suite: str) -> Path:
    return root() / "runs" / ".features" / suite


def transfer_rows_path(suite: str, method: str) -> Path:
    return results_dir(suite) / "rows" / f"{method}-transfer.csv"
