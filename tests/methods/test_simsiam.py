"""SimSiam: the stop-gradient, and collapse without it."""

import json
from dataclasses import replace

import pytest
import torch

from bench.backbones import BackboneCfg, build_backbone
from bench.config import Params, load_suite
from methods.base import Context
from methods.losses import (
    symmetric_negative_cosine,
)
from methods.registry import get_method, resolve_hparams
from pipeline.stages import pretrain
from tests.conftest import needs_fmnist


@pytest.mark.parametrize("stop", [True, False])
def test_simsiam_stop_gradient_really_stops_gradients(stop):
    p1, p2, z1, z2 = (torch.randn(4, 3, requires_grad=True) for _ in range(4))
    symmetric_negative_cosine(p1, p2, z1, z2, stop_gradient=stop).backward()
    assert p1.grad is not None and p2.grad is not None
    assert (z1.grad is None and z2.grad is None) if stop else (z1.grad.abs().sum() > 0)


def test_simsiam_method_stop_gradient_blocks_the_target_branch():
    """Through the whole method: with stop-gradient the projector gets gradient only via p."""
    ctx = Context(256, 4, 8, 10, 16, 1)
    backbone = build_backbone(BackboneCfg(width=8, small_stem=True, in_channels=1))
    hp = resolve_hparams("simsiam", {})
    method = get_method("simsiam")(backbone, hp, ctx)
    x1, x2 = torch.randn(8, 1, 16, 16), torch.randn(8, 1, 16, 16)
    z1 = method.projector(method.backbone(x1))
    z2 = method.projector(method.backbone(x2))
    z1.retain_grad()
    z2.retain_grad()
    p1, p2 = method.predictor(z1), method.predictor(z2)
    loss = symmetric_negative_cosine(p1, p2, z1, z2, True)
    loss.backward()
    # z's gradient is only the path through the predictor: equal to d loss / d z via p
    z1d = z1.detach().requires_grad_(True)
    ref = symmetric_negative_cosine(method.predictor(z1d), p2.detach(), z1.detach(), z2.detach(), True)
    ref.backward()
    assert torch.allclose(z1.grad, z1d.grad, atol=1e-6)


def _collapse_run(method_overrides, steps):
    suite = load_suite("smoke")
    suite = replace(suite, budget=replace(suite.budget, value=64 * steps),
                    train=replace(suite.train, log_every=max(1, steps // 6), checkpoint_every=10_000))

    params = Params(suite="smoke", methods={"simsiam": method_overrides})
    record = pretrain(suite, params, "simsiam", progress_bar=False)[0]
    lines = [json.loads(ln) for ln in open(f"runs/smoke/simsiam/seed{record['seed']}/metrics.jsonl")]
    return lines[-1]


@needs_fmnist
def test_simsiam_without_stop_gradient_starts_to_collapse_fast(workdir):
    """A short variant (100 steps): without stop-gradient the loss races towards -1 and the
    normalised projection's spread already shrinks; with it, the spread stays at 1/sqrt(d)."""
    real = _collapse_run({}, 100)
    (workdir / "runs").rename(workdir / "runs_real")
    ablated = _collapse_run({"stop_gradient": False}, 100)
    assert real["embed_std"] > 0.85 * real["embed_std_ideal"], real
    assert ablated["embed_std"] < 0.95 * real["embed_std"], (ablated, real)
    assert ablated["eff_rank"] < 0.8 * real["eff_rank"], (ablated, real)
    assert ablated["loss"] < real["loss"] - 0.2


@pytest.mark.slow
@needs_fmnist
def test_simsiam_without_stop_gradient_collapses(workdir):
    """The paper's Fig. 2 on Fashion-MNIST: std of the normalised projection z falls without
    stop-gradient and stays near 1/sqrt(d) with it."""
    real = _collapse_run({}, 120)
    (workdir / "runs").rename(workdir / "runs_real")
    ablated = _collapse_run({"stop_gradient": False}, 120)
    assert real["embed_std"] > 0.85 * real["embed_std_ideal"], real
    assert ablated["embed_std"] < 0.7 * real["embed_std"], (ablated, real)
    assert ablated["loss"] < real["loss"] - 0.1  # the ablation reaches the trivial solution's low loss
