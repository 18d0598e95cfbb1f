"""Weighted k-nearest-neighbour classification (InstDisc / DINO protocol).

Features are L2-normalised; the k most cosine-similar training features vote for
their class with weight exp(s / T). Chunked matmul + top-k: memory stays bounded.

On CPU the similarities of a chunk are first computed in bfloat16 (3-4x faster than
float32 here) to shortlist the k + ``margin`` best candidates, which are then
re-scored exactly in float32: the votes use float32 similarities, and the shortlist
holds the exact top k unless bfloat16 rounding (about 1e-3) reorders a candidate by
more than ``margin`` places (tests compare it with the float32 path).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _top_k(queries: torch.Tensor, train_x: torch.Tensor, train_low: torch.Tensor | None, k: int,
           margin: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact float32 similarities and indices of the ``k`` nearest training features."""
    if train_low is None:
        return (queries @ train_x.T).topk(k, dim=1)
    _, cand = (queries.to(train_low.dtype) @ train_low.T).topk(k + margin, dim=1)
    sims = torch.bmm(train_x[cand], queries.unsqueeze(2)).squeeze(2)
    sims, order = sims.topk(k, dim=1)
    return sims, cand.gather(1, order)


@torch.inference_mode()
def knn_predict(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, ks: list[int],
                temperature: float, num_classes: int, chunk: int = 2048, margin: int = 32,
                shortlist: bool | None = None) -> dict[int, torch.Tensor]:
    """Predicted class of every test feature, for each k in ``ks``. ``shortlist``:
    None = bfloat16 shortlist on CPU when the train set is large, else float32 only."""
    train_x = F.normalize(train_x.float(), dim=1)
    test_x = F.normalize(test_x.float(), dim=1)
    kmax = min(max(ks), len(train_x))
    if shortlist is None:
        shortlist = train_x.device.type == "cpu" and len(train_x) >= 8 * (kmax + margin)
    train_low = train_x.bfloat16() if shortlist else None
    preds: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    for start in range(0, len(test_x), chunk):
        sims, idx = _top_k(test_x[start : start + chunk], train_x, train_low, kmax, margin)
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
