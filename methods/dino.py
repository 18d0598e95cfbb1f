"""DINO — Caron, Touvron, Misra, Jégou, Mairal, Bojanowski, Joulin 2021, "Emerging
Properties in Self-Supervised Vision Transformers", arXiv 2104.14294.

Mechanism: self-distillation without labels. A student (backbone + DINO head) and
a teacher (EMA of the student, momentum rising from 0.996 to 1 on a cosine). The
DINO head is a 3-layer MLP (GELU) to a 256-d bottleneck, L2-normalised, then a
weight-normalised linear layer to K outputs (gain fixed or learned). Multi-crop: the
teacher sees the 2 global crops only, the student every crop; loss = cross
entropy between the teacher's softmax((t - c) / T_t) of one global crop and the
student's softmax(s / T_s) of every other crop, averaged over the pairs. The
centre c is an EMA (momentum 0.9) of the teacher's batch-mean output; T_t is 0.04
(ViT-S: warming up to 0.07). The last layer is frozen during the first epoch.

Paper defaults, two recipes (main_dino.py and the authors' commands). ViT-S/16:
K = 65536, head hidden 2048, bottleneck 256, last-layer gain learned
(``norm_last_layer`` false), T_s = 0.1, T_t 0.04 -> 0.07 over the first 30 of 100
epochs, centre momentum 0.9, teacher momentum 0.996 -> 1 (batch 1024), 2x224 global
crops (scale 0.4-1) + 8 (10 in the best runs) 96 px local crops (0.05-0.4), BYOL's
augmentation, AdamW lr 5e-4 x batch/256 with 10 warm-up epochs, weight decay
0.04 -> 0.4 (cosine), per-parameter gradient clipping at norm 3.0, last layer frozen
for 1 epoch. ResNet-50 (``--arch resnet50``): the same, except global crops 0.14-1,
local crops 0.05-0.14, T_t = 0.04 throughout, last-layer gain fixed to 1, no BN in the
head, SGD lr 0.03 x batch/256, weight decay 1e-4 constant. The teacher's backbone is
what eval_linear and eval_knn evaluate; the EMA covers parameters only, the teacher's
BN statistics come from its own forward passes; the student's backbone runs once per
crop resolution and its head once on all crops (MultiCropWrapper).

The recipe follows the backbone: a ResNet gets the ResNet-50 command's crop scales
(``global_crop_min: 0`` -> 0.14), teacher temperature (``teacher_temp: 0`` -> 0.04) and
fixed last-layer gain (``last_layer_gain: auto`` -> fixed); a ViT the ViT-S ones (0.4,
0.04 -> 0.07, learned).

Deviations: the head's MLP has batch norm (``use_bn_in_head: true``; the authors'
option, off in both their recipes). Measured on the tiny suite (stride-2 stem, seed 0,
fp32, 320 steps; ResNet recipe, teacher evaluated, parameters-only EMA): without it the
teacher is uniform from the first logged step to the last (loss 8.318 = log K,
``teacher_entropy`` 8.317 of 8.318), kNN-20 of the teacher 47.3 (10k/2k subset); with it
loss 8.20 and ``teacher_entropy`` 8.05 at the end, kNN-20 63.8. Both stay close to a
uniform teacher on this 2-epoch budget. K defaults to 4096 instead of 65536
(``out_dim``): on the small suites the 65536-way last layer costs several times the
whole backbone; the paper's appendix ablation shows a modest gain from large K, set
``out_dim: 65536`` at paper scale. The head's hidden width is min(2048, 8 x the
backbone's feature dimension) (``hidden_dim: 0``): 2048 for ResNet-50 and ViT-S as in
the paper, 1536 for ViT-Tiny, 512 for the width-8 ResNet-18 of the small suites. The
teacher-temperature warm-up (30 of 100 epochs, ViT recipe) and the last-layer freeze (1
of 100 epochs) are fractions of the budget (0.3 and 0.01); the teacher momentum is
scaled to the suite by the shared rule (``methods.modules.scale_momentum`` from batch
1024 on ImageNet; ``scale_to_dataset: false`` keeps 0.996), with its horizon capped at
the suite's ``train.ema_horizon_cap`` of the run (the tiny suite's 0.1 = 32 of its 320
steps; the scaled horizon, 31 steps, is already shorter:
``results/ablations/dino_ema_cap.csv``, 2 seeds, gives identical results with and
without the cap). Local crops are 96/224 of the suite's resolution (12 px at 28 px, a
multiple of the ViT patch). The default optimizer is the ViT-S one (AdamW; the ResNet-50
command's SGD is ``optimizer: {name: sgd, lr: 0.03, weight_decay: 1e-4}``) and weight
decay is constant, not the ViT recipe's 0.04 -> 0.4 schedule; the suite may impose one
optimizer for every method (the tiny suite does). The embedding logged for the collapse
metrics is the student's head output on the first global crop; ``teacher_entropy`` (->
0: one-hot collapse, -> log K: uniform collapse) is logged too.

Fixed (issue 16), formerly deviations: the student's backbone was evaluated (now the
teacher's, ``encoder``); the EMA copied the student's BN buffers into the teacher, about
half of them from 12-px local crops (now parameters only); the head ran once per crop
size, so its BN saw global and local crops apart (now once on all crops,
``methods.modules.multicrop_forward``); the ResNet run used the ViT-S recipe (crops
0.4-1 / 0.05-0.4, T_t 0.04 -> 0.07, learned gain).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from bench.views import ViewSpec, dino_views, scaled_crop_size
from methods.base import Batch, Method, OptimizerCfg, StepOutput
from methods.losses import dino_loss
from methods.modules import (
    cosine_increase,
    ema_update,
    frozen_copy,
    is_vit,
    multicrop_forward,
    scale_momentum,
)
from methods.registry import register


class NormalizedLinear(nn.Module):
    """Linear layer without bias, weight-normalised: rows L2-normalised in the forward
    pass times a per-row gain, fixed to 1 (DINO's ``norm_last_layer``) or learned from 1."""

    def __init__(self, in_dim: int, out_dim: int, learn_gain: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.trunc_normal_(self.weight, std=0.02)
        self.gain = nn.Parameter(torch.ones(out_dim, 1)) if learn_gain else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = nn.functional.normalize(self.weight, dim=1)
        return nn.functional.linear(x, weight if self.gain is None else weight * self.gain)


class DINOHead(nn.Module):
    """DINO's projection head: ``layers``-layer MLP (GELU, BN if ``use_bn``) to a bottleneck, L2
    normalisation, then a weight-normalised linear layer to ``out_dim`` logits (its gain
    learned unless ``norm_last_layer``)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 layers: int = 3, norm_last_layer: bool = True, use_bn: bool = False):
        super().__init__()
        mods: list[nn.Module] = []
        dim = in_dim
        for _ in range(layers - 1):
            mods += [nn.Linear(dim, hidden_dim)] + [nn.BatchNorm1d(hidden_dim)] * use_bn + [nn.GELU()]
            dim = hidden_dim
        mods.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*mods)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = NormalizedLinear(bottleneck_dim, out_dim, learn_gain=not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(nn.functional.normalize(self.mlp(x), dim=-1))


@torch.no_grad()
def ema_center(center: torch.Tensor, teacher_logits: torch.Tensor, momentum: float) -> torch.Tensor:
    """DINO's centering: c <- m c + (1 - m) mean over the batch of the teacher's outputs."""
    return center * momentum + teacher_logits.float().mean(dim=0, keepdim=True) * (1 - momentum)


def warmup_constant(start: float, end: float, progress: float, warmup: float) -> float:
    """Linear from ``start`` to ``end`` over the first ``warmup`` fraction, then ``end``
    (DINO's teacher temperature: 0.04 -> 0.07 over 30 of 100 epochs)."""
    if warmup <= 0 or progress >= warmup:
        return end
    return start + (end - start) * max(0.0, progress) / warmup


@dataclass(frozen=True)
class DINOHparams:
    out_dim: int = field(default=4096, metadata={"positive": True, "doc": "K (paper: 65536)"})
    hidden_dim: int = field(default=0, metadata={"nonnegative": True,
                                                 "doc": "0 = min(2048, 8 x backbone feature dim)"})
    bottleneck_dim: int = field(default=256, metadata={"positive": True})
    use_bn_in_head: bool = field(default=True, metadata={"doc": "BN in the head's MLP (paper: off; see Deviations)"})
    last_layer_gain: str = field(default="auto", metadata={
        "choices": ("auto", "fixed", "learned"),
        "doc": "auto = fixed for a ResNet (norm_last_layer, RN-50 command), learned for a ViT (ViT-S)"})
    student_temp: float = field(default=0.1, metadata={"positive": True})
    warmup_teacher_temp: float = field(default=0.04, metadata={"positive": True})
    teacher_temp: float = field(default=0.0, metadata={"nonnegative": True,
                                                       "doc": "0 = the recipe's: 0.04 ResNet-50, 0.07 ViT-S"})
    teacher_temp_warmup: float = field(default=0.3, metadata={"nonnegative": True, "doc": "fraction of the budget"})
    center_momentum: float = field(default=0.9, metadata={"nonnegative": True})
    momentum_teacher: float = field(default=0.996, metadata={"nonnegative": True})
    local_crops: int = field(default=8, metadata={"nonnegative": True})
    global_crop_min: float = field(default=0.0, metadata={
        "nonnegative": True, "doc": "global crops scale s-1, local 0.05-s; 0 = the recipe's: 0.14 ResNet, 0.4 ViT"})
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
        vit = is_vit(backbone)
        hidden = hp.hidden_dim or min(2048, 8 * backbone.feature_dim)
        fixed_gain = hp.last_layer_gain == "fixed" or (hp.last_layer_gain == "auto" and not vit)
        head = DINOHead(backbone.feature_dim, hp.out_dim, hidden, hp.bottleneck_dim,
                        norm_last_layer=fixed_gain, use_bn=hp.use_bn_in_head)
        self.t_temp = hp.teacher_temp or (0.07 if vit else 0.04)
        self.crop_min = hp.global_crop_min or (0.4 if vit else 0.14)
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
        crops = dino_views(resolution, self.hp.local_crops, local).crops
        s = self.crop_min
        return ViewSpec(tuple(replace(c, scale=(s, 1.0)) for c in crops[:2])
                        + tuple(replace(c, scale=(0.05, s)) for c in crops[2:]))

    @property
    def encoder(self) -> nn.Module:
        """The teacher's backbone, which the authors' eval_linear and eval_knn evaluate."""
        return self.teacher[0]

    def teacher_temperature(self, progress: float) -> float:
        hp = self.hp
        return warmup_constant(hp.warmup_teacher_temp, self.t_temp, progress, hp.teacher_temp_warmup)

    def training_step(self, batch: Batch) -> StepOutput:
        views = batch.views
        student = multicrop_forward(self.student[0], self.student[1], views)
        with torch.no_grad():
            teacher = [t.float() for t in multicrop_forward(self.teacher[0], self.teacher[1], views[:2])]
        t_temp = self.teacher_temperature(float(self.progress))
        loss = dino_loss(student, teacher, self.center, self.hp.student_temp, t_temp)
        with torch.no_grad():
            probs = torch.softmax((teacher[0] - self.center) / t_temp, dim=-1)
            entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1).mean()
        self._teacher_out = torch.cat(teacher)
        logs = {"teacher_temp": torch.tensor(t_temp), "momentum": torch.tensor(self.m),
                "teacher_entropy": entropy, "entropy_max": torch.tensor(math.log(self.hp.out_dim))}
        return StepOutput(loss, logs, student[0])

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

    def after_step(self, progress: float, carry: object = None) -> None:
        self.center.copy_(ema_center(self.center, self._teacher_out, self.hp.center_momentum))
        self.m = cosine_increase(self.m_base, progress)
        ema_update(self.teacher, self.student, self.m)
        self.progress.fill_(progress)
