"""The run-directory format: file names, the run record, checkpoints, the metrics log,
and the source files a run's identity hashes.

A run directory (``runs/<suite>/<method>[/<backbone>]/seed<s>``, bench/paths.py) holds
``run.json`` (the record, written last), ``encoder.pt`` (the backbone's weights),
``checkpoint.pt`` and ``checkpoint.prev.pt`` (resume state) and ``metrics.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tqdm import tqdm

from bench.errors import SSLBenchError
from bench.io import atomic_torch_save, atomic_write_text, safe_torch_load

CHECKPOINT, PREVIOUS, ENCODER, RUN_JSON, METRICS = (
    "checkpoint.pt", "checkpoint.prev.pt", "encoder.pt", "run.json", "metrics.jsonl")

ROOT = Path(__file__).resolve().parent.parent

# The source files every pretraining run depends on, besides the method's own module(s):
# ``code_digest`` hashes them into the run identity and dvc.yaml's pretrain stage lists
# exactly these as its deps (tests/test_dvc.py checks the two agree).
PRETRAIN_SOURCES = (
    "pipeline/engine.py",
    "bench/distributed.py",
    "bench/views.py",
    "bench/sources.py",
    "bench/folders.py",
    "bench/backbones.py",
    "bench/optim.py",
    "methods/base.py",
    "methods/losses.py",
    "methods/modules.py",
    "evaluations/diagnostics.py",
)


def method_sources(method_cls: type) -> list[str]:
    """The method's own module and those of its parent classes in methods/ (mocov1: mocov1.py
    and mocov2.py), found through the class's MRO."""
    return list(dict.fromkeys(c.__module__.replace(".", "/") + ".py" for c in method_cls.__mro__
                              if c.__module__.startswith("methods.")))


def code_digest(method_cls: type) -> str:
    """Hash of ``PRETRAIN_SOURCES`` and the method's own files (``method_sources``): a code change
    gives a new run identity, so a stale finished run is never reused. DVC's pretrain deps are
    ``PRETRAIN_SOURCES`` plus ``methods/<name>.py``; a parent class's file (mocov2.py for mocov1)
    is hashed here but is not a DVC dep of the child's stage (see dvc.yaml)."""
    h = hashlib.sha256()
    for source in dict.fromkeys([*PRETRAIN_SOURCES, *method_sources(method_cls)]):
        h.update((ROOT / source).read_bytes())
    return h.hexdigest()[:12]


def read_record(path: Path, strict: bool = True) -> dict | None:
    """A run's ``run.json``; a corrupt one is an error naming it (``strict``) or treated as absent."""
    if not path.is_file():
        if strict:
            raise SSLBenchError(f"run '{path.parent}' has no {RUN_JSON}; pretrain it first (`sslbench pretrain`).")
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        if strict:
            raise SSLBenchError(f"run record '{path}' is corrupt; re-run `sslbench pretrain` to rebuild it.") from None
        tqdm.write(f"warning: run record '{path}' is corrupt; the run resumes from its checkpoint.")
        return None


def write_record(out_dir: Path, record: dict) -> None:
    atomic_write_text(out_dir / RUN_JSON, json.dumps(record, indent=2))


def trim_metrics(path: Path, last_step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (no duplicates), and torn lines."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def load_checkpoint(out_dir: Path) -> dict | None:
    """The newest readable checkpoint; falls back to the previous one if the last is corrupt."""
    for name in (CHECKPOINT, PREVIOUS):
        path = out_dir / name
        if path.is_file():
            try:
                return safe_torch_load(path)
            except SSLBenchError as err:
                tqdm.write(f"warning: {err} Falling back to the previous checkpoint.")
    return None


def save_checkpoint(out_dir: Path, state: dict) -> None:
    current = out_dir / CHECKPOINT
    if current.is_file():
        os.replace(current, out_dir / PREVIOUS)
    atomic_torch_save(state, current)
