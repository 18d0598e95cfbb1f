"""Representation diagnostics: alignment and uniformity (Wang & Isola 2020, arXiv 2005.10242),
and the collapse measures the engine logs during training (:func:`collapse_metrics`).

On L2-normalised features ``f``: alignment = E ||f(x) - f(x+)||^alpha over positive pairs
(alpha = 2; lower = views of one image land closer), uniformity = log E exp(-t ||f(x) - f(y)||^2)
over distinct pairs of images (t = 2; lower = features spread more evenly over the sphere),
averaged over the two views as in the paper's loss. The engine measures them once, on the
run's final encoder (eval mode), on a fixed seeded subset of the TEST images, the positives
being two views of the SimCLR recipe (``bench/views.py``) drawn with a fixed seed, so every run
of a suite is measured on the same images and augmentations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bench.precision import autocast_for
from bench.views import ViewGenerator, recipe

N_IMAGES, SEED, CHUNK = 2000, 0, 256


def alignment_uniformity(z1: torch.Tensor, z2: torch.Tensor, t: float = 2.0, alpha: float = 2.0) -> dict[str, float]:
    """Alignment of the pairs (``z1[i]``, ``z2[i]``) and uniformity (mean over both views)."""
    z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    alignment = (z1 - z2).norm(dim=1).pow(alpha).mean()
    uniformity = (_uniformity(z1, t) + _uniformity(z2, t)) / 2
    return {"alignment": float(alignment), "uniformity": float(uniformity)}


def _uniformity(z: torch.Tensor, t: float) -> torch.Tensor:
    """log of the mean of exp(-t d^2) over the n(n-1)/2 distinct pairs (log-sum-exp for stability)."""
    n = len(z)
    sq = (2 - 2 * z @ z.T).clamp_min(0)  # squared distances of unit vectors
    pairs = sq[torch.ones(n, n, dtype=torch.bool, device=z.device).triu(1)]
    return torch.logsumexp(-t * pairs, 0) - math.log(len(pairs))


@torch.no_grad()
def representation_diagnostics(encoder: torch.nn.Module, dataset, resolution: int, device: torch.device,
                               autocast=None) -> dict[str, float]:
    """Alignment and uniformity of ``encoder`` on the fixed test subset (``diagnostics_images`` of them)."""
    n = min(N_IMAGES, len(dataset.test))
    idx = torch.randperm(len(dataset.test), generator=torch.Generator().manual_seed(SEED))[:n]
    views = ViewGenerator(recipe("simclr", resolution), dataset.mean, dataset.std, device)
    gen = torch.Generator(device=device).manual_seed(SEED)
    was_training = encoder.training
    encoder.eval()
    z1, z2 = [], []
    for chunk in idx.split(CHUNK):
        with autocast or autocast_for(device, "fp32"):
            a, b = (encoder(v).float().cpu() for v in views(dataset.test.images[chunk], gen))
        z1.append(a)
        z2.append(b)
    encoder.train(was_training)
    return {**alignment_uniformity(torch.cat(z1), torch.cat(z2)), "diagnostics_images": n}


def collapse_metrics(z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-channel std of L2-normalised embeddings (collapse -> 0; healthy ~ 1/sqrt(d))
    and effective rank (exp of the entropy of the normalised singular values)."""
    z = F.normalize(z.detach().float(), dim=1)
    std = z.std(dim=0).mean()
    s = torch.linalg.svdvals(z - z.mean(dim=0))
    p = s / s.sum().clamp_min(1e-12)
    rank = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())
    return {"embed_std": std, "embed_std_ideal": torch.tensor(1 / math.sqrt(z.shape[1])), "eff_rank": rank}
