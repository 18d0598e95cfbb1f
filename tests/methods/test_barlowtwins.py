"""Barlow Twins: lambda's default and the lambda x D scaling ablation."""

import math

from bench.backbones import BackboneCfg, build_backbone
from methods.base import Context
from methods.registry import get_method, resolve_hparams


def test_barlow_twins_lambda_default_and_scaling_ablation():
    ctx = Context(256, 4, 8, 10, 16, 1)
    backbone = build_backbone(BackboneCfg(width=8, small_stem=True, in_channels=1))  # 64-d features
    method = get_method("barlowtwins")(backbone, resolve_hparams("barlowtwins", {}), ctx)
    assert method.projector[-1].out_features == 256
    assert method.lambd == 5e-3  # the paper's value by default
    scaled = get_method("barlowtwins")(backbone, resolve_hparams("barlowtwins", {"scale_lambda": True}), ctx)
    assert math.isclose(scaled.lambd, 5e-3 * 8192 / 256)
