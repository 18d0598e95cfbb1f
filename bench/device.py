"""Where a run computes: the device, torch's CPU threads, peak memory and the code revision."""

from __future__ import annotations

import os
import resource
import subprocess

import torch

from bench.errors import SSLBenchError


def configure_threads(requested: int = 0) -> int:
    """Set torch's CPU threads: ``requested``, or the cores not already busy (at least 1).

    Two threads on two cores that other processes also use make every parallel region
    wait for both to be scheduled (measured here: 5 vs 113 images/s), so ``0`` (auto)
    subtracts the current load average from the available cores.
    """
    if not requested:
        cores = len(os.sched_getaffinity(0))
        requested = max(1, min(cores, cores - int(os.getloadavg()[0])))
    torch.set_num_threads(requested)
    return requested


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise SSLBenchError("device 'cuda' was requested but no CUDA device is available; use device: cpu.")
        return torch.device("cuda")
    return torch.device("cpu")


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
