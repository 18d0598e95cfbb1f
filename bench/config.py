"""Typed, validated configuration: a suite file plus ``params.yaml`` selections.

A suite fixes data, resolution, backbone, batch size, precision and the budget
shared by every method; ``params.yaml`` picks the suite, the methods, the seeds and
per-method hyper-parameter overrides.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path

import yaml

from bench.backbones import BackboneCfg
from bench.data import DatasetCfg
from bench.errors import SSLBenchError, choices
from bench.protocols import FAMILIES, FAMILY_KNN, FAMILY_LINEAR
from bench.schema import build

SUITES_DIR = Path(__file__).parent / "suites"
SWEEPS_DIR = Path(__file__).parent / "sweeps"  # Ray Tune sweep specs (pipeline/sweep.py)
BUDGET_UNITS = ("images_seen", "epochs", "flops", "seconds")


@dataclass(frozen=True)
class BudgetCfg:
    unit: str = field(default="images_seen", metadata={"choices": BUDGET_UNITS})
    value: float = field(default=1.0, metadata={"positive": True})


@dataclass(frozen=True)
class TrainCfg:
    batch_size: int = field(default=256, metadata={"positive": True})
    warmup_fraction: float = field(default=0.1, metadata={"nonnegative": True})
    precision: str = field(default="auto", metadata={
        "choices": ("auto", "fp32", "bf16"),
        "doc": "auto: bf16 only where the device computes it natively and faster (bench/precision.py)"})
    checkpoint_every: int = field(default=100, metadata={"positive": True, "doc": "steps between checkpoints"})
    log_every: int = field(default=10, metadata={"positive": True})
    ema_horizon_cap: float = field(default=1.0, metadata={
        "positive": True, "doc": "an EMA target (BYOL, MoCo, DINO) averages over at most this fraction of the run's "
                                 "steps; 1 = the paper's horizon in epochs, uncapped"})
    threads: int = field(default=0, metadata={"nonnegative": True,
                                              "doc": "torch CPU threads (0 = the cores not already busy)"})


@dataclass(frozen=True)
class OptimizerChoice:
    """``paper``: each method's own optimizer; otherwise one family and lr for every method."""

    name: str = field(default="paper", metadata={"choices": ("paper", "sgd", "lars", "adamw")})
    lr: float = field(default=0.1, metadata={"positive": True, "doc": "base lr at batch 256"})
    weight_decay: float = field(default=5e-4, metadata={"nonnegative": True})
    momentum: float = field(default=0.9, metadata={"nonnegative": True})

    def as_override(self) -> dict:
        if self.name == "paper":
            return {}
        return {"name": self.name, "lr": self.lr, "weight_decay": self.weight_decay, "momentum": self.momentum}


@dataclass(frozen=True)
class KnnCfg:
    k: list[int] = field(default_factory=lambda: [20, 200], metadata={"positive": True})
    temperature: float = field(default=0.07, metadata={"positive": True})


@dataclass(frozen=True)
class LinearCfg:
    epochs: int = field(default=100, metadata={"positive": True})
    lr: float = field(default=0.1, metadata={"positive": True, "doc": "base lr, scaled by batch/256"})
    batch_size: int = field(default=256, metadata={"positive": True})
    momentum: float = field(default=0.9, metadata={"nonnegative": True})
    weight_decay: float = field(default=0.0, metadata={"nonnegative": True})


@dataclass(frozen=True)
class SemiCfg:
    """Semi-supervised fine-tuning recipe (``evaluations/semi_supervised.py``)."""

    epochs_1pct: int = field(default=20, metadata={"positive": True})
    epochs_10pct: int = field(default=20, metadata={"positive": True})
    lr_backbone: float = field(default=0.01, metadata={"positive": True, "doc": "scaled by batch/256"})
    lr_head: float = field(default=0.1, metadata={"positive": True, "doc": "scaled by batch/256"})
    batch_size: int = field(default=256, metadata={"positive": True})
    momentum: float = field(default=0.9, metadata={"nonnegative": True})


@dataclass(frozen=True)
class TransferCfg:
    """Detection / instance-segmentation transfer (``evaluations/detection``) on generated scenes."""

    canvas: int = field(default=64, metadata={"positive": True, "doc": "scene side in pixels"})
    max_items: int = field(default=3, metadata={"positive": True, "doc": "1..max_items objects per scene"})
    train_scenes: int = field(default=2000, metadata={"positive": True})
    val_scenes: int = field(default=500, metadata={"positive": True})
    data_root: str | None = field(default=None, metadata={"doc": "COCO-format train.json / val.json and images "
                                                           "(VOC, COCO) instead of generated scenes"})
    backend: str = field(default="torchvision", metadata={"choices": ("torchvision", "detectron2")})
    iterations: int = field(default=200, metadata={"positive": True})
    batch_size: int = field(default=8, metadata={"positive": True})
    lr: float = field(default=0.02, metadata={"positive": True, "doc": "SGD, momentum 0.9, x batch/16"})
    weight_decay: float = field(default=1.0e-4, metadata={"nonnegative": True})


@dataclass(frozen=True)
class EvalCfg:
    knn: KnnCfg = field(default_factory=KnnCfg)
    linear: LinearCfg = field(default_factory=LinearCfg)
    semi: SemiCfg = field(default_factory=SemiCfg)
    transfer: TransferCfg = field(default_factory=TransferCfg)
    protocols: list[str] = field(default_factory=lambda: [FAMILY_KNN, FAMILY_LINEAR],
                                 metadata={"choices_each": FAMILIES})
    batch_size: int = field(default=1024, metadata={"positive": True, "doc": "feature extraction batch"})


@dataclass(frozen=True)
class Suite:
    name: str
    description: str = ""
    dataset: DatasetCfg = field(default_factory=DatasetCfg)
    resolution: int = field(default=32, metadata={"positive": True})
    backbone: BackboneCfg = field(default_factory=BackboneCfg)
    budget: BudgetCfg = field(default_factory=BudgetCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    optimizer: OptimizerChoice = field(default_factory=OptimizerChoice)
    eval: EvalCfg = field(default_factory=EvalCfg)
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"nonnegative": True})
    device: str = field(default="auto", metadata={"choices": ("auto", "cpu", "cuda")})
    needs_gpu: bool = False


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def _read_yaml(path: Path, what: str) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SSLBenchError(f"{what} '{path}' is not valid YAML{where}.") from None
    except OSError:
        raise SSLBenchError(f"{what} '{path}' cannot be read.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SSLBenchError(f"{what} '{path}' must be a mapping of keys to values.")
    return data


def load_suite(name_or_path: str) -> Suite:
    """Load a suite by name (``bench/suites/<name>.yaml``) or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        if name_or_path not in suite_names():
            raise SSLBenchError(f"unknown suite '{name_or_path}'; valid choices are: {choices(suite_names())}.")
        path = SUITES_DIR / f"{name_or_path}.yaml"
    data = _read_yaml(path, "suite file")
    named = "name" in data
    _check_name(data.setdefault("name", path.stem), path, named)
    suite = build(Suite, data, f"suite '{data['name']}'")
    _check_finite(suite, f"suite '{suite.name}'")
    valid = EvalCfg.__dataclass_fields__["protocols"].metadata["choices_each"]
    bad = [p for p in suite.eval.protocols if p not in valid]
    if bad:
        raise SSLBenchError(f"suite '{suite.name}' eval.protocols has unknown protocol '{bad[0]}'; "
                            f"valid choices are: {choices(valid)}.")
    return suite


SUITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _check_name(name, path: Path, named: bool = True) -> None:
    """The suite name becomes a directory (data/, runs/, results/<name>): no separators, no '..'."""
    if not isinstance(name, str) or not SUITE_NAME.fullmatch(name) or len(name) > 100:
        source = "" if named else " (taken from the file name; set `name:` in the file)"
        raise SSLBenchError(
            f"suite name {name!r} in '{path}'{source} is not allowed: use at most 100 letters, digits, '_', '.' "
            "and '-', starting with a letter or digit, because it names the data/, runs/ and results/ folders.")


def _check_finite(obj, where: str) -> None:
    """Refuse inf and nan anywhere in a built config (a budget of .inf would never end)."""
    for f in fields(obj):
        value, sub = getattr(obj, f.name), f"{where}.{f.name}"
        if is_dataclass(value):
            _check_finite(value, sub)
        for number in value if isinstance(value, list) else [value]:
            if isinstance(number, float) and not math.isfinite(number):
                raise SSLBenchError(f"{sub} must be a finite number, got {value!r}.")


@dataclass(frozen=True)
class Params:
    """The selections in ``params.yaml``."""

    suite: str = "tiny"
    seeds: list[int] | None = field(default=None, metadata={"nonnegative": True})
    methods: dict[str, dict] = field(default_factory=dict)
    sweeps: list[str] = field(default_factory=list, metadata={"doc": "bench/sweeps/*.yaml names run by dvc repro"})
    transfer: list[str] = field(default_factory=list, metadata={"doc": "methods whose runs dvc repro transfers"})


def load_params(path: Path = Path("params.yaml"), method_names: Iterable[str] | None = None) -> Params:
    """The params file; an absent file named ``params.yaml`` (the default; a project without one) means the
    defaults, any other absent file is an error naming it (a mistyped ``--params`` must not run the defaults).

    ``method_names``: the registered methods its ``methods:`` keys must be among (the core knows no
    methods; ``pipeline.plan.load_params`` passes the registry's names)."""
    if not Path(path).is_file():
        if Path(path).name != "params.yaml":
            raise SSLBenchError(f"params file '{path}' does not exist.")
        return Params()
    data = _read_yaml(path, "params file")
    params = build(Params, data, f"params file '{path}'")
    known = None if method_names is None else list(method_names)
    for method, overrides in params.methods.items():
        if known is not None and method not in known:
            raise SSLBenchError(f"unknown method '{method}' in '{path}'; valid choices are: {choices(known)}.")
        if not isinstance(overrides, dict):
            raise SSLBenchError(f"methods.{method} in '{path}' must be a mapping of overrides (use {{}} for none).")
    for method in params.transfer:
        if method not in params.methods:
            raise SSLBenchError(f"transfer lists '{method}' in '{path}', which is not under methods; valid choices "
                                f"are: {choices(params.methods)}.")
    specs = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))
    for name in params.sweeps:
        if name not in specs:
            raise SSLBenchError(f"unknown sweep '{name}' in '{path}'; valid choices are: {choices(specs)}.")
    return params


def with_precision(suite: Suite, device) -> Suite:
    """``suite`` with its precision resolved for ``device`` (``auto`` becomes fp32 or bf16)."""
    from bench.precision import resolve

    resolved = resolve(suite.train.precision, device)
    if resolved == suite.train.precision:
        return suite
    return replace(suite, train=replace(suite.train, precision=resolved))


def config_hash(*parts) -> str:
    """Short stable hash of resolved configuration (recorded with every result row)."""
    blob = json.dumps([asdict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
