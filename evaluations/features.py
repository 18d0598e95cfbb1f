"""Backbone features of a split, extracted once per run and cached on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from bench.io import atomic_torch_save
from bench.progress import progress


@torch.inference_mode()
def extract(encoder: torch.nn.Module, images_u8: torch.Tensor, to_input, batch_size: int = 1024,
            device: torch.device = torch.device("cpu"), desc: str = "features") -> torch.Tensor:
    """Pooled backbone features (before any projector) in fp32, eval mode, bf16 autocast."""
    encoder.eval().to(device)
    chunks = []
    steps = range(0, len(images_u8), batch_size)
    for start in progress(steps, desc=desc):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            chunks.append(encoder(to_input(images_u8[start : start + batch_size])).float().cpu())
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
