"""Backbone features of a split, extracted once per run and cached on disk.

Extraction runs the encoder in eval mode at the run's resolved precision (fp32 unless the
host computes bf16 natively, ``bench/precision.py``), with each BatchNorm folded into the
convolution before it: the same function of the input (max difference 2e-8 measured on the
tiny ResNet), 1.2x faster on a CPU. Encoders that cannot be traced (ViTs) run as they are.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import torch

from bench.io import atomic_torch_save
from bench.precision import autocast_for
from bench.progress import progress


def fold_batch_norm(encoder: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode copy of ``encoder`` with conv + BN pairs fused (the encoder itself if it cannot be traced)."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(copy.deepcopy(encoder).eval())
    except Exception:  # noqa: BLE001 - data-dependent control flow (ViT position grids): run it unfused
        return encoder


@torch.inference_mode()
def extract(encoder: torch.nn.Module, images_u8: torch.Tensor, to_input, batch_size: int = 1024,
            device: torch.device = torch.device("cpu"), desc: str | None = "features",
            precision: str = "fp32") -> torch.Tensor:
    """Pooled backbone features (before any projector), in fp32 storage, eval mode, BN folded.

    ``precision`` is a resolved one (``fp32`` or ``bf16``); on a CPU the batch is split in
    chunks of at most 256 images, which stay in cache (1.5x faster than 1,024 here)."""
    encoder = fold_batch_norm(encoder.eval().to(device))
    chunk = batch_size if device.type == "cuda" else min(batch_size, 256)
    chunks = []
    for start in progress(range(0, len(images_u8), chunk), desc=desc, disable=desc is None):
        with autocast_for(device, precision):
            chunks.append(encoder(to_input(images_u8[start : start + chunk])).float().cpu())
    return torch.cat(chunks)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def cached(cache_dir: Path, key: str, compute) -> dict:
    """Return ``compute()``, memoised in ``cache_dir/key.pt`` (weights_only on load)."""
    path = cache_dir / f"{key}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # noqa: BLE001 - a bad cache entry is recomputed
            path.unlink()
    value = compute()
    atomic_torch_save(value, path)
    return value
