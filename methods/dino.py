"""DINO — Caron, Touvron, Misra, Jégou, Mairal, Bojanowski, Joulin 2021, "Emerging
Properties in Self-Supervised Vision Transformers", arXiv 2104.14294.

Mechanism: self-distillation without labels. A student (backbone + DINO head) and
a teacher (EMA of the student, momentum rising from 0.996 to 1 on a cosine). The
DINO head is a 3-layer MLP (GELU) to a 256-d bottleneck, L2-normalised, then a
weight-normalised linear layer to K outputs (gain fixed to 1). Multi-crop: the
teacher sees the 2 global crops only, the student every crop; loss = cross
entropy between the teacher's softmax((t - c) / T_t) of one global crop and the
student's softmax(s / T_s) of every other crop, averaged over the pairs. The
centre c is an EMA (momentum 0.9) of the teacher's batch-mean output; T_t warms
up linearly from 0.04 to 0.07. The last layer is frozen during the first epoch.

Paper defaults (ViT-S/16, main_dino.py): K = 65536, head hidden 2048, bottleneck
256, T_s = 0.1, T_t 0.04 -> 0.07 over the first 30 of 100 epochs, centre momentum
0.9, teacher momentum 0.996 -> 1 (batch 1024), 2x224 global crops (scale 0.4-1) +
8 (10 in the best runs) 96 px local crops (0.05-0.4), BYOL's augmentation, AdamW
lr 5e-4 x batch/256 with 10 warm-up epochs, weight decay 0.04 -> 0.4 (cosine),
per-parameter gradient clipping at norm 3.0, last layer frozen for 1 epoch.
The ResNet-50 run uses the same mechanism (SGD, lr 0.03 x batch/256, wd 1e-4).

Deviations: K defaults to 4096 instead of 65536 (``out_dim``): on the small
suites the 65536-way last layer costs several times the whole backbone; the
paper's appendix ablation shows a modest gain from large K, set ``out_dim: 65536``
at paper scale. The head's hidden width is min(2048, 8 x the backbone's feature
dimension) (``hidden_dim: 0``): 2048 for ResNet-50 and ViT-S as in the paper,
1536 for ViT-Tiny, 512 for the width-8 ResNet-18 of the small suites. The head's
MLP has batch norm (the authors' ``--use_bn_in_head`` option, off in their
default; ``use_bn_in_head``): without it every variant we ran on the tiny suite
(paper momentum, lr 0.03, learned last-layer gain) collapsed to a uniform teacher
from the first 100 steps (loss = log K, ``teacher_entropy`` = log K). The last
layer's gain is learned (``norm_last_layer: false``, the authors' setting for
ViT-S; ``true`` fixes it to 1 as for their ViT-B). The
teacher-temperature warm-up (30 of 100 epochs) and the
last-layer freeze (1 of 100 epochs) are fractions of the budget (0.3 and 0.01);
the teacher momentum is scaled to the suite by the shared rule
(``methods.modules.scale_momentum`` from batch 1024 on ImageNet;
``scale_to_dataset: false`` keeps 0.996). Local crops are 96/224 of the suite's
resolution (12 px at 28 px, a multiple of the ViT patch). Weight decay is
constant (the optimizer's), not the paper's 0.04 -> 0.4 schedule. The suite may
impose one optimizer for every method (the tiny suite does). The embedding
logged for the collapse metrics is the student's head output on the first
global crop; ``teacher_entropy`` (-> 0: one-hot collapse, -> log K: uniform
collapse) is logged too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from bench.views import ViewSpec, dino_views, scaled_crop_size
from methods.base import Batch, Method, OptimizerCfg, StepOutput
from methods.losses import dino_loss
from methods.modules import (
    DINOHead,
    cosine_increase,
    ema_center,
    ema_update,
    frozen_copy,
    scale_momentum,
    warmup_constant,
)
from methods.registry import register


@dataclass(frozen=True)
class DINOHparams:
    out_dim: int = field(default=4096, metadata={"positive": True, "doc": "K (paper: 65536)"})
    hidden_dim: int = field(default=0, metadata={"nonnegative": True,
                                                 "doc": "0 = min(2048, 8 x backbone feature dim)"})
    bottleneck_dim: int = field(default=256, metadata={"positive": True})
    use_bn_in_head: bool = field(default=True, metadata={"doc": "BN in the head's MLP (paper default: off)"})
    norm_last_layer: bool = field(default=False, metadata={"doc": "fix the last layer's gain (paper: ViT-B)"})
    student_temp: float = field(default=0.1, metadata={"positive": True})
    warmup_teacher_temp: float = field(default=0.04, metadata={"positive": True})
    teacher_temp: float = field(default=0.07, metadata={"positive": True})
    teacher_temp_warmup: float = field(default=0.3, metadata={"nonnegative": True, "doc": "fraction of the budget"})
    center_momentum: float = field(default=0.9, metadata={"nonnegative": True})
    momentum_teacher: float = field(default=0.996, metadata={"nonnegative": True})
    local_crops: int = field(default=8, metadata={"nonnegative": True})
    local_size: int = field(default=96, metadata={"positive": True, "doc": "at 224 px; scaled to the suite"})
    freeze_last_layer: float = field(default=0.01, metadata={"nonnegative": True, "doc": "fraction of the budget"})
    clip_grad: float = field(default=3.0, metadata={"nonnegative": True, "doc": "per-parameter norm; 0 = off"})
    scale_to_dataset: bool = True
    optimizer: OptimizerCfg = field(default_factory=lambda: OptimizerCfg("adamw", 5e-4, 0.04))


@register
class DINO(Method):
    name = "dino"
    paper = "DINO — Caron et al. 2021, arXiv 2104.14294"
    family = "self-distillation"
    view_recipe = "dino"
    Hparams = DINOHparams

    def __init__(self, backbone, hp, ctx):
        super().__init__(backbone, hp, ctx)
        hidden = hp.hidden_dim or min(2048, 8 * backbone.feature_dim)
        head = DINOHead(backbone.feature_dim, hp.out_dim, hidden, hp.bottleneck_dim,
                        norm_last_layer=hp.norm_last_layer, use_bn=hp.use_bn_in_head)
        self.student = nn.Sequential(backbone, head)
        self.teacher = frozen_copy(self.student)
        self.register_buffer("center", torch.zeros(1, hp.out_dim))
        self.m_base = hp.momentum_teacher
        if hp.scale_to_dataset:
            self.m_base = scale_momentum(hp.momentum_teacher, 1024, ctx)
        self.m = self.m_base
        self.register_buffer("progress", torch.zeros(()))  # a buffer: a resumed run keeps its schedule

    def views(self, resolution: int) -> ViewSpec:
        multiple = getattr(getattr(self.backbone, "patch_embed", None), "patch", 1)
        local = scaled_crop_size(resolution, self.hp.local_size, multiple=multiple)
        return dino_views(resolution, self.hp.local_crops, local)

    def teacher_temperature(self, progress: float) -> float:
        hp = self.hp
        return warmup_constant(hp.warmup_teacher_temp, hp.teacher_temp, progress, hp.teacher_temp_warmup)

    def training_step(self, batch: Batch) -> StepOutput:
        views = batch.views
        n = len(views[0])
        student = list(self.student(torch.cat(views[:2])).chunk(2))
        if len(views) > 2:
            student += list(self.student(torch.cat(views[2:])).chunk(len(views) - 2))
        with torch.no_grad():
            teacher = [t.float() for t in self.teacher(torch.cat(views[:2])).chunk(2)]
        t_temp = self.teacher_temperature(float(self.progress))
        loss = dino_loss(student, teacher, self.center, self.hp.student_temp, t_temp)
        with torch.no_grad():
            probs = torch.softmax((teacher[0] - self.center) / t_temp, dim=-1)
            entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1).mean()
        self._teacher_out = torch.cat(teacher)
        logs = {"teacher_temp": torch.tensor(t_temp), "momentum": torch.tensor(self.m),
                "teacher_entropy": entropy, "entropy_max": torch.tensor(math.log(self.hp.out_dim))}
        return StepOutput(loss, logs, student[0][:n])

    @torch.no_grad()
    def before_optimizer_step(self, progress: float) -> None:
        if self.hp.clip_grad:
            for p in self.student.parameters():
                if p.grad is not None:
                    norm = p.grad.norm()
                    p.grad.mul_(torch.clamp(self.hp.clip_grad / (norm + 1e-6), max=1.0))
        if progress < self.hp.freeze_last_layer:
            for p in self.student[1].last_layer.parameters():
                p.grad = None

    def after_step(self, progress: float) -> None:
        self.center.copy_(ema_center(self.center, self._teacher_out, self.hp.center_momentum))
        self.m = cosine_increase(self.m_base, progress)
        ema_update(self.teacher, self.student, self.m)
        self.progress.fill_(progress)
