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


def _autograd_probe(x, y, num_classes, epochs, lr, batch_size, momentum, weight_decay, seed):
    """The probe as nn.Linear + cross_entropy + torch.optim.SGD (what train_linear writes out)."""
    import math

    gen = torch.Generator().manual_seed(seed)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    xs = (x - mean) / std
    head = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.normal_(head.weight, std=0.01, generator=gen)
    torch.nn.init.zeros_(head.bias)
    base_lr = lr * batch_size / 256
    opt = torch.optim.SGD(head.parameters(), lr=base_lr, momentum=momentum, weight_decay=weight_decay)
    total, step = epochs * math.ceil(len(xs) / batch_size), 0
    for _ in range(epochs):
        perm = torch.randperm(len(xs), generator=gen)
        for start in range(0, len(xs), batch_size):
            idx = perm[start : start + batch_size]
            opt.param_groups[0]["lr"] = base_lr * 0.5 * (1 + math.cos(math.pi * step / total))
            opt.zero_grad()
            F.cross_entropy(head(xs[idx]), y[idx]).backward()
            opt.step()
            step += 1
    return lambda f: head((f - mean) / std).detach()


def test_written_out_sgd_step_equals_autograd_and_torch_sgd():
    from evaluations.linear import train_linear

    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(700, 20, generator=g) * 3 + 1, torch.randint(0, 7, (700,), generator=g)
    test = torch.randn(50, 20, generator=g)
    args = (x, y, 7, 3, 0.4, 64, 0.9, 1e-3, 5)  # 700 / 64: a short last batch
    assert torch.allclose(train_linear(*args)(test), _autograd_probe(*args)(test), atol=1e-5)
