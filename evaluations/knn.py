"""Weighted k-nearest-neighbour classification (InstDisc / DINO protocol).

Features are L2-normalised; the k most cosine-similar training features vote for
their class with weight exp(s / T). Chunked matmul + top-k: memory stays bounded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.inference_mode()
def knn_predict(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, ks: list[int],
                temperature: float, num_classes: int, chunk: int = 2048) -> dict[int, torch.Tensor]:
    """Predicted class of every test feature, for each k in ``ks``."""
    train_x = F.normalize(train_x.float(), dim=1)
    test_x = F.normalize(test_x.float(), dim=1)
    kmax = min(max(ks), len(train_x))
    preds: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    for start in range(0, len(test_x), chunk):
        sims, idx = (test_x[start : start + chunk] @ train_x.T).topk(kmax, dim=1)
        weights = (sims / temperature).exp()
        neighbours = train_y[idx]
        for k in ks:
            votes = torch.zeros(len(idx), num_classes, dtype=weights.dtype)
            votes.scatter_add_(1, neighbours[:, :k], weights[:, :k])
            preds[k].append(votes.argmax(1))
    return {k: torch.cat(v) for k, v in preds.items()}


def knn_accuracy(train_x, train_y, test_x, test_y, ks, temperature, num_classes) -> dict[int, float]:
    """Top-1 accuracy (%) for each k."""
    preds = knn_predict(train_x, train_y, test_x, ks, temperature, num_classes)
    return {k: (p == test_y).float().mean().item() * 100 for k, p in preds.items()}
