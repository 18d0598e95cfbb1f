"""SwAV — Caron, Misra, Mairal, Goyal, Bojanowski, Joulin 2020, "Unsupervised
Learning of Visual Features by Contrasting Cluster Assignments", arXiv 2006.09882.

Mechanism: multi-crop (2 global + V small crops); every crop is embedded (backbone
+ 2-layer projector, L2-normalised) and scored against K L2-normalised prototypes;
the codes of each global crop are computed online by Sinkhorn-Knopp (equal
partition of the batch among the prototypes, entropy epsilon) and every *other*
crop predicts them: swapped prediction, cross entropy with softmax(scores / T).
The prototypes are re-normalised every step and frozen (no gradient) at the start.
With small batches, a queue of earlier global-crop embeddings joins the batch in
the Sinkhorn step (its codes are not used in the loss).

Paper defaults: K = 3000, projector 2048-2048-128 on ResNet-50, T = 0.1,
epsilon = 0.05, 3 Sinkhorn iterations, 2x224 + 6x96 crops (scales 0.14-1 and
0.05-0.14), SimCLR's augmentation at jitter strength 0.8, LARS lr 4.8 at batch
4096 (0.3 x batch/256), weight decay 1e-6, prototypes frozen during the first
epoch (313 iterations), queue of 3840 from epoch 15 when the batch is 256 (of a
100-400-epoch schedule).

Deviations: the small-crop size is scaled to the suite's resolution (96/224 of it,
12 px at 28 px); the projector's hidden width equals the backbone's feature
dimension (``hidden_factor``; 2048 on ResNet-50); the prototype freeze, one epoch
of the paper's 100-epoch schedule, is the first 1 % of the budget
(``freeze_prototypes``); the queue (one per global crop, as in the paper's code)
is scaled by the shared rule (``methods.modules.scale_length``, a multiple of the
batch; ``scale_to_dataset: false`` keeps 3840), starts at 15 % of the budget
(epoch 15 of 100), is used once full, and ``queue_length: 0`` disables it. The number
of prototypes keeps the paper's ratio to the features in the Sinkhorn step (K = 3000
for batch 256 + queue 3840 = 4096; the paper's appendix keeps about as many queued
features as prototypes, so that the features can be split equally among them):
K = round(3000 x (batch + queue) / 4096), at most 3000, so 94 at the tiny suite's batch
64 + queue 64 (``scale_to_dataset: false`` keeps 3000; not measured). The backbone
encodes the global crops and the small crops as two batches and the projector runs
once on all of them, as the paper's code does (it ran once per crop size, so its BN
normalised global and small crops apart; fixed in issue 16). The suite may impose one
optimizer for every method (the tiny suite does). The embedding logged for the
collapse metrics is the first global crop's normalised projection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from bench.views import ViewSpec, recipe, scaled_crop_size
from methods.base import Batch, Method, OptimizerCfg, StepOutput
from methods.losses import swapped_prediction
from methods.modules import FeatureQueue, mlp, multicrop_forward, scale_length
from methods.registry import register

PAPER_SINKHORN_SAMPLES = 256 + 3840  # batch + queue sharing the paper's K = 3000 prototypes


@dataclass(frozen=True)
class SwAVHparams:
    prototypes: int = field(default=3000, metadata={"positive": True, "doc": "K at the paper's batch + queue of 4096"})
    proj_dim: int = field(default=128, metadata={"positive": True})
    hidden_factor: float = field(default=1.0, metadata={"positive": True})
    temperature: float = field(default=0.1, metadata={"positive": True})
    epsilon: float = field(default=0.05, metadata={"positive": True})
    sinkhorn_iterations: int = field(default=3, metadata={"positive": True})
    small_crops: int = field(default=6, metadata={"nonnegative": True})
    small_size: int = field(default=96, metadata={"positive": True, "doc": "at 224 px; scaled to the suite"})
    freeze_prototypes: float = field(default=0.01, metadata={"nonnegative": True,
                                                             "doc": "fraction of the budget"})
    queue_length: int = field(default=3840, metadata={"nonnegative": True, "doc": "0 = no queue"})
    queue_start: float = field(default=0.15, metadata={"nonnegative": True, "doc": "fraction of the budget"})
    scale_to_dataset: bool = True
    optimizer: OptimizerCfg = field(default_factory=lambda: OptimizerCfg("lars", 0.3, 1e-6, 0.9, True))


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """SwAV's Sinkhorn-Knopp codes for prototype ``scores`` [B, K] (cosine similarities).

    Q = exp(scores / eps), normalised to total mass 1, then ``iterations`` rounds of
    (each prototype's mass -> 1/K, each sample's mass -> 1/B). Returned as [B, K] scaled
    by B: **each row (sample) sums to 1** exactly, each column (prototype) sums to about
    B/K (exactly in the limit of many iterations).
    """
    q = scores.float() / epsilon
    q = torch.exp(q - q.max()).T  # [K, B]; the shift cancels in the normalisation
    k, b = q.shape
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True)
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    return (q * b).T


@register
class SwAV(Method):
    name = "swav"
    paper = "SwAV — Caron et al. 2020, arXiv 2006.09882"
    family = "clustering"
    view_recipe = "swav"
    Hparams = SwAVHparams

    def __init__(self, backbone, hp, ctx):
        super().__init__(backbone, hp, ctx)
        dim = backbone.feature_dim
        self.projector = mlp(dim, max(8, int(round(dim * hp.hidden_factor))), hp.proj_dim, layers=2)
        length, k = hp.queue_length, hp.prototypes
        if hp.scale_to_dataset:
            length = scale_length(length, ctx.dataset_size, ctx.batch_size) if length else 0
            k = min(k, max(1, round(k * (ctx.batch_size + length) / PAPER_SINKHORN_SAMPLES)))
        self.prototypes = nn.Linear(hp.proj_dim, k, bias=False)
        self.queues = nn.ModuleList(FeatureQueue(length, hp.proj_dim) for _ in range(2)) if length else None
        self.register_buffer("queued", torch.zeros((), dtype=torch.long))  # keys pushed so far
        self.normalize_prototypes()

    def views(self, resolution: int) -> ViewSpec:
        multiple = getattr(getattr(self.backbone, "patch_embed", None), "patch", 1)
        small = scaled_crop_size(resolution, self.hp.small_size, multiple=multiple)
        return recipe("swav", resolution, self.hp.small_crops, small)

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def embed(self, crops: list[torch.Tensor]) -> list[torch.Tensor]:
        """Normalised projections of every crop: the backbone once per crop size, the projector
        once on all the features (the paper's code)."""
        return [F.normalize(z, dim=1) for z in multicrop_forward(self.backbone, self.projector, crops)]

    def queue_ready(self) -> bool:
        return self.queues is not None and int(self.queued) >= len(self.queues[0].keys)

    def training_step(self, batch: Batch) -> StepOutput:
        self.normalize_prototypes()
        z = self.embed(batch.views)
        scores = [self.prototypes(zi) for zi in z]
        codes = {}
        use_queue = self.queue_ready()
        with torch.no_grad():
            for i in range(2):
                s = scores[i].detach().float()
                if use_queue:
                    s = torch.cat([s, self.queues[i].keys @ self.prototypes.weight.float().T])
                codes[i] = sinkhorn(s, self.hp.epsilon, self.hp.sinkhorn_iterations)[: len(z[i])]
        loss = swapped_prediction(scores, codes, self.hp.temperature)
        carry = [z[0].detach(), z[1].detach()]
        return StepOutput(loss, {"queue_used": torch.tensor(float(use_queue))}, z[0], carry)

    def before_optimizer_step(self, progress: float) -> None:
        if progress < self.hp.freeze_prototypes:
            self.prototypes.weight.grad = None

    def after_step(self, progress: float, carry: object = None) -> None:
        if self.queues is not None and progress >= self.hp.queue_start:
            for q, zi in zip(self.queues, carry):
                q.push(zi.float())
            self.queued += len(carry[0])
