"""Linear probe on frozen features (the backbone stays in eval mode).

Protocol: features extracted once (no augmentation), standardised with the
training set's mean and std (a fixed affine map, i.e. BatchNorm without affine as
in MAE's probe, foldable into the linear layer: the probe stays linear), then a
linear classifier trained with SGD momentum 0.9, lr x batch/256, cosine schedule.
The FINAL epoch's test accuracy is reported, never the max over epochs.

Deviation from MoCo/SimCLR: no crop/flip augmentation during the probe (features
are cached); this is cheaper and identical for every method.
"""

from __future__ import annotations

import math

import torch


def train_linear(train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int, epochs: int, lr: float,
                 batch_size: int, momentum: float = 0.9, weight_decay: float = 0.0, seed: int = 0):
    """Fit the probe; returns a function mapping features to logits.

    The step is ``torch.optim.SGD``'s (momentum, weight decay on weight and bias, no
    dampening) with the softmax cross-entropy gradient written out, ``(softmax - onehot) / B``:
    without autograd's and the optimizer's per-step overhead, the tiny suite's 4,700 steps
    take a third of the time (tests/evaluations/test_knn_linear.py checks it against the autograd step).
    """
    gen = torch.Generator().manual_seed(seed)
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    x = (train_x - mean) / std
    weight = torch.empty(num_classes, x.shape[1]).normal_(std=0.01, generator=gen)
    bias = torch.zeros(num_classes)
    params, buffers = (weight, bias), (torch.zeros_like(weight), torch.zeros_like(bias))
    base_lr = lr * batch_size / 256
    total = epochs * math.ceil(len(x) / batch_size)
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch_size):
            idx = perm[start : start + batch_size]
            xb = x[idx]
            grad_logits = torch.addmm(bias, xb, weight.t()).softmax(dim=1)
            grad_logits[torch.arange(len(idx)), train_y[idx]] -= 1
            grad_logits /= len(idx)
            grads = (grad_logits.t() @ xb, grad_logits.sum(0))
            step_lr = base_lr * 0.5 * (1 + math.cos(math.pi * step / total))
            for param, grad, buf in zip(params, grads, buffers):
                if weight_decay:
                    grad = grad.add(param, alpha=weight_decay)
                buf.mul_(momentum).add_(grad)
                param.sub_(buf, alpha=step_lr)
            step += 1

    def predict(features: torch.Tensor) -> torch.Tensor:
        return torch.addmm(bias, (features - mean) / std, weight.t())

    return predict


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == labels.view(-1, 1)).any(dim=1).float().mean().item() * 100


def linear_probe(train_x, train_y, test_x, test_y, num_classes: int, cfg, seed: int = 0) -> dict[str, float]:
    """Final-epoch top-1 (and top-5 when there are more than 10 classes), in %."""
    predict = train_linear(train_x, train_y, num_classes, cfg.epochs, cfg.lr, cfg.batch_size,
                           cfg.momentum, cfg.weight_decay, seed)
    logits = predict(test_x)
    out = {"top1": topk_accuracy(logits, test_y, 1)}
    if num_classes > 10:
        out["top5"] = topk_accuracy(logits, test_y, 5)
    return out
