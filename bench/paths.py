"""Where things live, relative to the project root (the current directory, as for DVC).

Torch-free: the app reads results/ and runs/ through the same names (``find_runs``, the
file names below). What a results file holds is ``bench.protocols``.

    results/<suite>/leaderboard.csv, metrics.json, metrics/<row>.json, plots/<protocol>.svg
    results/<suite>/rows/<method>.csv            (sslbench evaluate)
    results/<suite>/rows/<method>-transfer.csv   (sslbench transfer)
    runs/<suite>/<method>[/<backbone>]/seed<s>/  (one pretraining run; its files: bench/runs.py)
    runs/.features/<suite>/                      (cached frozen features)
"""

from __future__ import annotations

from pathlib import Path

RESULTS, RUNS, ROWS = "results", "runs", "rows"
LEADERBOARD, METRICS_JSON = "leaderboard.csv", "metrics.json"
TRANSFER_SUFFIX = "-transfer"  # rows/<method>-transfer.csv
SEED_PREFIX = "seed"


def root() -> Path:
    return Path.cwd()


def prepared_dir(suite: str) -> Path:
    return root() / "data" / suite


def scenes_dir(suite: str) -> Path:
    """Generated detection scenes: beside ``data/<suite>``, so pretraining's input is unchanged."""
    return root() / "data" / f"{suite}-scenes"


def method_dir(suite: str, method: str, runs: Path | None = None) -> Path:
    return (runs or root() / RUNS) / suite / method


def run_dir(suite: str, method: str, seed: int, runs: Path | None = None, backbone: str | None = None) -> Path:
    """``runs/<suite>/<method>[/<backbone>]/seed<s>``: the backbone level only for non-default backbones."""
    base = method_dir(suite, method, runs)
    return (base / backbone if backbone else base) / f"{SEED_PREFIX}{seed}"


def find_runs(runs: Path) -> list[dict]:
    """Every run directory under ``runs`` (``runs/<suite>/<method>[/<backbone>]/seed<s>``), sorted, as dicts
    with ``suite``, ``method``, ``backbone`` (None: the suite's own) and ``seed``, ``path``; hidden folders
    (``runs/.features``) are skipped."""
    found = []
    for pattern in (f"*/*/{SEED_PREFIX}*", f"*/*/*/{SEED_PREFIX}*"):
        for seed_dir in sorted(runs.glob(pattern)) if runs.is_dir() else []:
            parts = seed_dir.relative_to(runs).parts
            seed = seed_dir.name[len(SEED_PREFIX):]
            if not seed_dir.is_dir() or not seed.isdigit() or any(p.startswith(".") for p in parts):
                continue
            backbone = parts[2] if len(parts) == 4 else None
            found.append({"suite": parts[0], "method": parts[1], "backbone": backbone, "seed": int(seed),
                          "path": seed_dir})
    return sorted(found, key=lambda r: (r["suite"], r["method"], r["backbone"] or "", r["seed"]))


def results_dir(suite: str) -> Path:
    return root() / RESULTS / suite


def leaderboard_path(suite: str) -> Path:
    return results_dir(suite) / LEADERBOARD


def rows_path(suite: str, method: str) -> Path:
    return results_dir(suite) / ROWS / f"{method}.csv"


def features_cache(suite: str) -> Path:
    return root() / RUNS / ".features" / suite


def transfer_rows_path(suite: str, method: str) -> Path:
    return results_dir(suite) / ROWS / f"{method}{TRANSFER_SUFFIX}.csv"


def rows_file_stage(path: Path) -> tuple[str, str]:
    """(method, the ``sslbench`` command that writes it) of a rows file: ``simclr-transfer.csv`` ->
    ``("simclr", "transfer")``, ``simclr.csv`` -> ``("simclr", "evaluate")``."""
    stem = Path(path).stem
    if stem.endswith(TRANSFER_SUFFIX):
        return stem[: -len(TRANSFER_SUFFIX)], "transfer"
    return stem, "evaluate"
