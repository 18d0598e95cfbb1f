"""Helpers shared by the method tests (not collected: no ``test_`` prefix)."""

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from bench.backbones import BackboneCfg, backbone_preset, build_backbone
from bench.config import load_suite
from bench.data import Dataset, Split
from methods.base import Batch, Context
from methods.registry import get_method, method_names, resolve_hparams


def _toy_dataset28(n=256, channels=1, size=28):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 4, (n,), generator=g)
    split = Split(images, labels)
    return Dataset("toy", split, split, 4, (0.5,) * channels, (0.25,) * channels, "generated")


def _toy_suite(steps=3, batch=32, resolution=28):
    suite = load_suite("smoke")
    return replace(suite, resolution=resolution, budget=replace(suite.budget, value=batch * steps),
                   train=replace(suite.train, batch_size=batch, checkpoint_every=100, log_every=1))


# DINO is implemented but not registered where it collapses (tiny); its tests run where it is.
DINO = "dino" in method_names()


needs_dino = pytest.mark.skipif(not DINO, reason="dino is not registered")


def _registered(cases):
    """Parametrize cases whose method (first element, or the item itself) is registered."""
    return [c for c in cases if (c[0] if isinstance(c, tuple) else c) in method_names()]


def _lse(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def _cos(a, b):
    return _dot(a, b) / math.sqrt(_dot(a, a) * _dot(b, b))


def _softmax(values):
    z = _lse(values)
    return [math.exp(v - z) for v in values]


def _backbone(vit=False):
    cfg = BackboneCfg("resnet18", 8, True, in_channels=1)
    return build_backbone(backbone_preset("vit_tiny", cfg) if vit else cfg)


def _build(name, batch=8, dataset=64, vit=False, **overrides):
    torch.manual_seed(0)
    ctx = Context(dataset, 4, batch, 10, 28, 1)
    return get_method(name)(_backbone(vit), resolve_hparams(name, overrides), ctx)


def _batch(method, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    views = [torch.randn(n, 1, a.size, a.size, generator=g) for a in method.views(28).crops]
    return Batch(views, torch.arange(n), torch.zeros(n, dtype=torch.long), torch.Generator().manual_seed(seed))


def _step(method, batch):
    """One training step as the engine runs it (train mode, SGD, after_step)."""
    method.train()
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
    out = method.training_step(batch)
    out.loss.backward()
    method.before_optimizer_step(0.5)
    opt.step()
    method.after_step(0.5, out.carry)
    return out


def _first_bn(module):
    return next(m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
