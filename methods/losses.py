"""Loss functions of the methods: pure functions of tensors, computed in fp32.

Each one is tested against a hand computation in ``tests/test_losses.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """InfoNCE with one positive per query and a shared set of negatives.

    ``query`` and ``positive`` are [N, D], ``negatives`` [K, D], all L2-normalised.
    loss = -log exp(q.k+/T) / (exp(q.k+/T) + sum_k exp(q.k-/T))   (MoCo eq. 1)
    """
    query, positive, negatives = query.float(), positive.float(), negatives.float()
    pos = (query * positive).sum(dim=1, keepdim=True)
    neg = query @ negatives.T
    logits = torch.cat([pos, neg], dim=1) / temperature
    labels = torch.zeros(len(query), dtype=torch.long, device=query.device)
    return F.cross_entropy(logits, labels)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross entropy over 2N views.

    Each of the 2N views has one positive (its pair) and 2N - 2 negatives.
    """
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = len(z1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)


def negative_cosine(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean negative cosine similarity; the target is detached (stop-gradient)."""
    return -F.cosine_similarity(prediction.float(), target.detach().float(), dim=-1).mean()


def byol_regression(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL's normalised MSE, 2 - 2 cos(p, z'), averaged over the batch (target detached)."""
    return 2 + 2 * negative_cosine(prediction, target)
