"""DINO: centring, teacher temperature schedule, the evaluated teacher, the authors' ResNet-50 and ViT-S recipes."""

import math

import torch
from torch import nn

from bench.backbones import BackboneCfg, build_backbone
from methods.base import Context
from methods.dino import ema_center, warmup_constant
from methods.registry import get_method, resolve_hparams
from tests.methods.helpers import _batch, _build, _step, needs_dino


@needs_dino
def test_dino_center_is_an_ema_with_momentum_0_9():
    center = torch.tensor([[1.0, 0.0]])
    out = torch.tensor([[3.0, 2.0], [1.0, -4.0]])  # batch mean [2, -1]
    new = ema_center(center, out, 0.9)
    assert torch.allclose(new, torch.tensor([[0.9 * 1 + 0.1 * 2, 0.9 * 0 + 0.1 * -1]]))


@needs_dino
def test_teacher_temperature_schedule_endpoints():
    assert math.isclose(warmup_constant(0.04, 0.07, 0.0, 0.3), 0.04)
    assert math.isclose(warmup_constant(0.04, 0.07, 0.15, 0.3), 0.055)
    assert math.isclose(warmup_constant(0.04, 0.07, 0.3, 0.3), 0.07)
    assert math.isclose(warmup_constant(0.04, 0.07, 1.0, 0.3), 0.07)
    ctx = Context(256, 4, 8, 10, 16, 1)
    dino = get_method("dino")(build_backbone(BackboneCfg(width=8, small_stem=True, in_channels=1)),
                              resolve_hparams("dino", {"teacher_temp": 0.07}), ctx)  # the ViT-S recipe's
    assert math.isclose(dino.teacher_temperature(0.0), 0.04)
    assert math.isclose(dino.teacher_temperature(0.3), 0.07)
    assert math.isclose(dino.teacher_temperature(0.9), 0.07)


def test_dino_encoder_is_the_teacher():
    """The authors' eval_linear / eval_knn load the teacher's backbone."""
    dino = _build("dino", local_crops=2)
    _step(dino, _batch(dino))
    assert dino.encoder is dino.teacher[0]
    enc, student = dino.encoder.state_dict(), dino.student[0].state_dict()
    assert any(not torch.equal(enc[k], student[k]) for k in enc)  # the teacher, not the student


def test_dino_resnet_defaults_are_the_authors_resnet50_command():
    """main_dino.py --arch resnet50: global crops 0.14-1, local 0.05-0.14, teacher temperature 0.04
    (no warm-up), last-layer gain fixed (norm_last_layer true). BN stays in the head: without it the
    tiny suite's teacher is uniform (the measurement is in the docstring); ``use_bn_in_head`` drops it."""
    dino = _build("dino")
    crops = dino.views(28).crops
    assert [c.scale for c in crops[:2]] == [(0.14, 1.0)] * 2
    assert all(c.scale == (0.05, 0.14) for c in crops[2:]) and len(crops) == 10
    assert dino.teacher_temperature(0.0) == dino.teacher_temperature(0.9) == 0.04
    assert dino.student[1].last_layer.gain is None
    assert any(isinstance(m, nn.BatchNorm1d) for m in dino.student[1].modules())
    no_bn = _build("dino", use_bn_in_head=False)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in no_bn.student[1].modules())


def test_dino_vit_defaults_are_the_authors_vit_small_command():
    dino = _build("dino", vit=True)
    crops = dino.views(28).crops
    assert [c.scale for c in crops[:2]] == [(0.4, 1.0)] * 2
    assert all(c.scale == (0.05, 0.4) for c in crops[2:])
    assert math.isclose(dino.teacher_temperature(0.0), 0.04)
    assert math.isclose(dino.teacher_temperature(0.9), 0.07)
    assert dino.student[1].last_layer.gain is not None
