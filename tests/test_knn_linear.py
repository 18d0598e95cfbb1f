"""kNN against a brute-force reference; the linear probe on separable data."""

import torch
import torch.nn.functional as F

from bench.config import LinearCfg
from evaluations.knn import knn_accuracy, knn_predict
from evaluations.linear import linear_probe


def _brute_force(train_x, train_y, test_x, k, t, num_classes):
    train_x, test_x = F.normalize(train_x, dim=1), F.normalize(test_x, dim=1)
    preds = []
    for q in test_x:
        sims = [(float(q @ x), int(y)) for x, y in zip(train_x, train_y)]
        sims.sort(key=lambda s: -s[0])
        votes = [0.0] * num_classes
        for s, y in sims[:k]:
            votes[y] += float(torch.exp(torch.tensor(s / t)))
        preds.append(max(range(num_classes), key=lambda c: votes[c]))
    return torch.tensor(preds)


def test_knn_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    train_x, test_x = torch.randn(300, 8, generator=g), torch.randn(50, 8, generator=g)
    train_y = torch.randint(0, 4, (300,), generator=g)
    fast = knn_predict(train_x, train_y, test_x, [1, 5, 20], 0.07, 4, chunk=7)
    for k in (1, 5, 20):
        assert torch.equal(fast[k], _brute_force(train_x, train_y, test_x, k, 0.07, 4))


def test_knn_accuracy_on_clustered_data():
    centers = torch.eye(3) * 5
    x = torch.cat([c + 0.3 * torch.randn(100, 3) for c in centers])
    y = torch.arange(3).repeat_interleave(100)
    assert knn_accuracy(x, y, x, y, [20], 0.07, 3)[20] > 99


def test_linear_probe_learns_separable_classes_and_reports_top5_only_above_ten_classes():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 12, generator=g)
    x = torch.randn(2000, 16, generator=g)
    y = (x @ w).argmax(1)
    out = linear_probe(x[:1500], y[:1500], x[1500:], y[1500:], 12, LinearCfg(epochs=30, lr=0.5))
    assert out["top1"] > 85 and "top5" in out
    y10 = y % 10
    assert "top5" not in linear_probe(x[:200], y10[:200], x[200:], y10[200:], 10, LinearCfg(epochs=1))
