"""Optimizers (SGD, LARS, AdamW) and the linear-warmup + cosine schedule."""

from __future__ import annotations

import math

import torch

from bench.errors import SSLBenchError, choices


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017) as SimCLR/BYOL use it:
    SGD with momentum where each tensor's update is scaled by
    ``eta * ||w|| / (||g|| + wd * ||w||)``; tensors flagged ``lars_exclude``
    (biases, BN) get neither weight decay nor adaptation."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta,
                                      lars_exclude=False))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if not group["lars_exclude"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.norm(p), torch.norm(grad)
                    trust = torch.where((w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm,
                                        torch.ones_like(w_norm))
                    grad = grad.mul(trust)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.clone(grad)
                else:
                    state["mu"].mul_(group["momentum"]).add_(grad)
                p.add_(state["mu"], alpha=-group["lr"])


def _split_exclude(groups: list[dict]) -> list[dict]:
    """Split each group into (weights) and (biases + norm params, no wd / no adaptation)."""
    out = []
    for group in groups:
        params = group["params"]
        main = [p for p in params if p.ndim > 1]
        rest = [p for p in params if p.ndim <= 1]
        extra = {k: v for k, v in group.items() if k != "params"}
        if main:
            out.append({**extra, "params": main})
        if rest:
            out.append({**extra, "params": rest, "weight_decay": 0.0, "lars_exclude": True})
    return out


def build_optimizer(cfg, groups: list[dict], batch_size: int) -> torch.optim.Optimizer:
    """Build the method's optimizer; lr = cfg.lr x batch/256 (linear scaling rule)."""
    lr = cfg.lr * batch_size / 256
    if cfg.exclude_bias_bn:
        groups = _split_exclude(groups)
    for group in groups:
        group["base_lr"] = lr * group.pop("lr_scale", 1.0)
        group["lr"] = group["base_lr"]
        group.setdefault("fixed_lr", False)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True)
    if cfg.name == "lars":
        return LARS(groups, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=cfg.weight_decay, foreach=True)
    raise SSLBenchError(f"unknown optimizer '{cfg.name}'; valid choices are: {choices(['sgd', 'lars', 'adamw'])}.")


def lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` fraction of training, then cosine to 0."""
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 1e-3)
    rest = (progress - warmup) / max(1e-12, 1 - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, rest)))


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] if group.get("fixed_lr") else group["base_lr"] * factor
