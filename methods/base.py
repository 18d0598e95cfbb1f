"""The method contract every method implements (DEVELOPERS.md, "Adding a method", has a worked example).

A method receives the backbone built by the harness and owns everything else
(heads, momentum encoder, queue, memory bank, prototypes). Hyper-parameters are a
frozen dataclass of the paper's defaults, overridable from ``params.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from bench.views import ViewSpec, recipe


@dataclass(frozen=True)
class OptimizerCfg:
    """The paper's optimizer; ``lr`` is the base rate at batch 256 (scaled linearly)."""

    name: str = field(default="sgd", metadata={"choices": ("sgd", "lars", "adamw")})
    lr: float = field(default=0.05, metadata={"positive": True})
    weight_decay: float = field(default=1e-4, metadata={"nonnegative": True})
    momentum: float = field(default=0.9, metadata={"nonnegative": True})
    exclude_bias_bn: bool = False  # no weight decay / LARS adaptation on biases and BN


@dataclass
class Batch:
    views: list[torch.Tensor]  # normalised float views, in the order of ``Method.views``
    indices: torch.Tensor  # dataset indices of the source images (memory banks)
    labels: torch.Tensor  # used only by the supervised baseline
    generator: torch.Generator | None = None  # the step's RNG (keeps resumed runs identical)


@dataclass
class StepOutput:
    loss: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)  # scalars; read at log intervals only
    embedding: torch.Tensor | None = None  # for collapse metrics (detached by the engine)
    carry: object = None  # handed to ``after_step`` (keys to enqueue, features for the memory bank)


@dataclass(frozen=True)
class Context:
    """What a method may know about the run it is part of."""

    dataset_size: int
    num_classes: int
    batch_size: int
    total_steps: int
    resolution: int
    in_channels: int
    ema_horizon_cap: float = 1.0  # the suite's train.ema_horizon_cap (methods.modules.scale_momentum)
    mean: tuple[float, ...] | None = None  # the dataset's per-channel statistics, as the views are
    std: tuple[float, ...] | None = None  # normalised with (None: not known, e.g. a unit test's context)


class Method(nn.Module):
    name: ClassVar[str]
    paper: ClassVar[str]  # "Title — authors year, arXiv id"
    family: ClassVar[str]  # leaderboard filter: baseline, memory-bank, end-to-end, momentum, ...
    view_recipe: ClassVar[str] = "simclr"
    Hparams: ClassVar[type]
    trains: ClassVar[bool] = True
    deviation: ClassVar[str] = ""  # non-empty: results rows are flagged ``deviation``
    # True once the method's cross-batch pieces (negatives, queues, banks, centers) are
    # gathered over workers, so that ``--workers N`` trains what one process would.
    distributed: ClassVar[bool] = False

    def __init__(self, backbone: nn.Module, hp, ctx: Context):
        super().__init__()
        self.backbone = backbone
        self.hp = hp
        self.ctx = ctx

    @property
    def encoder(self) -> nn.Module:
        """What downstream evaluations use."""
        return self.backbone

    def finetune_encoder(self) -> nn.Module:
        """What semi-supervised fine-tuning starts from (it needs a ``feature_dim``): the
        encoder, unless the paper fine-tunes more (SimCLR v2: backbone + projection layers)."""
        return self.encoder

    def views(self, resolution: int) -> ViewSpec:
        return recipe(self.view_recipe, resolution)

    def optimizer_cfg(self) -> OptimizerCfg:
        return self.hp.optimizer

    def param_groups(self) -> list[dict]:
        """Trainable parameters; subclasses may give groups their own lr (``lr_scale``)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def training_step(self, batch: Batch) -> StepOutput:
        raise NotImplementedError

    def initialise(self, batches) -> None:
        """Before the first step of a fresh run: ``batches`` yields (dataset indices,
        un-augmented images) over the whole training set (memory banks fill from it)."""

    def before_optimizer_step(self, progress: float) -> None:
        """After backward, before the optimizer step (e.g. SwAV's frozen prototypes)."""

    def after_step(self, progress: float, carry: object = None) -> None:
        """EMA, queue and schedule updates; ``progress`` in [0, 1]; ``carry`` is the step's
        ``StepOutput.carry`` (what ``training_step`` hands over, e.g. keys to enqueue)."""
