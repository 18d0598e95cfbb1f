"""Detection transfer with Detectron2 (the reference backend, where it is installed).

``run_detectron2`` trains one of ``configs/*.yaml`` from a converted run (``convert.py``) in
this process and returns the COCO box AP / AP50 / AP75 and mask AP (Pascal VOC's own metric
for the builtin ``voc_*`` test sets, as MoCo reports). Detectron2 is imported lazily: the rest
of sslbench runs without it. Paper-scale runs (8 GPUs, SyncBN across them) use the same
configs and pickle with Detectron2's own launcher instead; importing this module's
``register_modules`` there makes the names below available.

Two pieces the configs name are not part of Detectron2 and are registered here:
``Res5ROIHeadsExtraNorm`` (MoCo's C4 head: one more norm after res5) and
``build_sslbench_resnet_backbone`` / ``build_sslbench_resnet_fpn_backbone``, Detectron2's
ResNet blocks behind our small-image stem (3x3 stride 1 or 2, no max-pool) at any width, which
upstream's builder refuses for R18/R34 (it requires 64 ``res2`` channels and has only the
7x7 stride-2 stem). With them the narrow trunks of the embedded suites load completely.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
from pathlib import Path

from bench.errors import SSLBenchError

CONFIGS = Path(__file__).parent / "configs"
MISSING = ("Detectron2 is not installed; install it from source (pip install "
           "'git+https://github.com/facebookresearch/detectron2.git') or use the torchvision backend "
           "(eval.transfer.backend: torchvision).")
SMALL_STEM = ("build_sslbench_resnet_backbone", "build_sslbench_resnet_fpn_backbone")
BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}


def register_modules() -> None:
    """Register the extra-norm C4 head and the small-stem ResNet (+ FPN) backbones (idempotent)."""
    from detectron2.layers import CNNBlockBase, Conv2d, get_norm
    from detectron2.modeling import BACKBONE_REGISTRY, ROI_HEADS_REGISTRY
    from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
    from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock, ResNet
    from detectron2.modeling.roi_heads import Res5ROIHeads
    from torch.nn import functional as F

    if "Res5ROIHeadsExtraNorm" not in ROI_HEADS_REGISTRY:
        class Res5ROIHeadsExtraNorm(Res5ROIHeads):
            """The C4 head of MoCo's transfer: a norm layer after the res5 blocks."""

            @classmethod
            def _build_res5_block(cls, cfg):
                blocks, channels = super()._build_res5_block(cfg)
                blocks.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, channels))
                return blocks, channels

        ROI_HEADS_REGISTRY.register(Res5ROIHeadsExtraNorm)
    if SMALL_STEM[0] in BACKBONE_REGISTRY:
        return

    class SmallStem(CNNBlockBase):
        """3x3 convolution (stride ``BackboneCfg.stem_stride``), norm and ReLU, no max-pool (``small_stem``)."""

        def __init__(self, in_channels: int, out_channels: int, norm: str, stride: int = 1):
            super().__init__(in_channels, out_channels, stride)
            self.conv1 = Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False,
                                norm=get_norm(norm, out_channels))

        def forward(self, x):
            return F.relu_(self.conv1(x))

    def build_sslbench_resnet_backbone(cfg, input_shape):
        r = cfg.MODEL.RESNETS
        basic = r.DEPTH in (18, 34)
        last = max(int(name[3:]) for name in r.OUT_FEATURES)
        in_ch, out_ch, mid = r.STEM_OUT_CHANNELS, r.RES2_OUT_CHANNELS, r.NUM_GROUPS * r.WIDTH_PER_GROUP
        stages = []
        for i, n in enumerate(BLOCKS[r.DEPTH][: last - 1]):
            extra = {} if basic else {"bottleneck_channels": mid, "num_groups": r.NUM_GROUPS,
                                      "stride_in_1x1": r.STRIDE_IN_1X1}
            stages.append(ResNet.make_stage(BasicBlock if basic else BottleneckBlock, n,
                                            stride_per_block=[1 if i == 0 else 2] + [1] * (n - 1),
                                            in_channels=in_ch, out_channels=out_ch, norm=r.NORM, **extra))
            in_ch, out_ch, mid = out_ch, out_ch * 2, mid * 2
        stem = SmallStem(input_shape.channels, r.STEM_OUT_CHANNELS, r.NORM, r.get("STEM_STRIDE", 1))
        return ResNet(stem, stages, out_features=r.OUT_FEATURES).freeze(cfg.MODEL.BACKBONE.FREEZE_AT)

    def build_sslbench_resnet_fpn_backbone(cfg, input_shape):
        bottom_up = build_sslbench_resnet_backbone(cfg, input_shape)
        top = LastLevelMaxPool()  # pools the coarsest level, whatever its stride
        top.in_feature = f"p{int(math.log2(bottom_up.output_shape()[cfg.MODEL.FPN.IN_FEATURES[-1]].stride))}"
        return FPN(bottom_up=bottom_up, in_features=cfg.MODEL.FPN.IN_FEATURES, out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
                   norm=cfg.MODEL.FPN.NORM, top_block=top, fuse_type=cfg.MODEL.FPN.FUSE_TYPE)

    BACKBONE_REGISTRY.register(build_sslbench_resnet_backbone)
    BACKBONE_REGISTRY.register(build_sslbench_resnet_fpn_backbone)


def _match_trunk(cfg, weights: Path) -> None:
    """Depth and widths of the small-stem backbone from the converted pickle's record."""
    with open(weights, "rb") as fh:
        meta = pickle.load(fh).get("sslbench") or {}
    if meta.get("depth"):
        r = cfg.MODEL.RESNETS
        r.DEPTH, r.STEM_OUT_CHANNELS = meta["depth"], meta["stem"]["out_channels"]
        r.RES2_OUT_CHANNELS, r.WIDTH_PER_GROUP = meta["res2_out_channels"], meta["stem"]["out_channels"]
        r.set_new_allowed(True)  # our key: the small stem's stride (1 or 2)
        r.STEM_STRIDE = int(meta["stem"].get("stride", 1))


def run_detectron2(config: Path, weights: Path, output_dir: Path, datasets: dict | None = None,
                   overrides: list[str] | None = None, seed: int = 0) -> dict[str, float]:
    """Train ``config`` from ``weights`` (a converted pickle) and evaluate it; AP values in %.

    ``datasets`` maps a split to ``(COCO json, image directory)``: ``"train"`` is trained on,
    the other splits are tested (the first one is evaluated); without it the config's own
    (builtin) datasets are used. ``overrides`` are ``KEY VALUE`` pairs applied last. ``seed``
    seeds Detectron2's RNGs (``SEED``), so a run repeats. The log of this run alone goes to
    ``output_dir/log.txt`` (rewritten per run). Returns ``det_box_ap``, ``det_box_ap50``,
    ``det_box_ap75`` and, for Mask R-CNN, ``seg_mask_ap``.
    """
    try:
        import detectron2  # noqa: F401
    except ImportError:
        raise SSLBenchError(MISSING) from None
    import torch
    from detectron2.config import get_cfg
    from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
    from detectron2.data.datasets import register_coco_instances
    from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator, inference_on_dataset
    from detectron2.utils.env import seed_all_rng

    register_modules()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    cfg = get_cfg()
    cfg.merge_from_file(str(config))
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    if cfg.MODEL.BACKBONE.NAME in SMALL_STEM:
        _match_trunk(cfg, weights)
    if datasets:
        if "train" not in datasets:
            raise SSLBenchError(f"datasets for Detectron2 need a 'train' split; got {', '.join(map(str, datasets))}.")
        names = {}
        for split, (json_file, image_root) in datasets.items():
            names[split] = name = f"sslbench_{split}"
            if name in DatasetCatalog.list():  # an earlier run of this process registered it
                DatasetCatalog.remove(name)
                MetadataCatalog.remove(name)
            register_coco_instances(name, {}, str(json_file), str(image_root))
        cfg.DATASETS.TRAIN = (names.pop("train"),)
        cfg.DATASETS.TEST = tuple(names.values())
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = len(json.loads(Path(datasets["train"][0]).read_text())["categories"])
    cfg.merge_from_list(list(overrides or []))
    cfg.MODEL.WEIGHTS, cfg.OUTPUT_DIR, cfg.SEED = str(weights), str(output_dir), seed
    cfg.freeze()

    (output_dir / "metrics.json").unlink(missing_ok=True)  # Detectron2's JSONWriter appends
    with _run_log(output_dir / "log.txt"):
        seed_all_rng(seed)
        trainer = _trainer_class()(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
        test = cfg.DATASETS.TEST[0]
        evaluator = (PascalVOCDetectionEvaluator(test) if test.startswith("voc_")
                     else COCOEvaluator(test, output_dir=str(output_dir / "inference")))
        results = inference_on_dataset(trainer.model, build_detection_test_loader(cfg, test), evaluator)
    box = results["bbox"]
    metrics = {"det_box_ap": box["AP"], "det_box_ap50": box["AP50"], "det_box_ap75": box["AP75"]}
    if "segm" in results:
        metrics["seg_mask_ap"] = results["segm"]["AP"]
    return {k: float(v) for k, v in metrics.items()}


def _trainer_class():
    """Detectron2's ``DefaultTrainer`` writing console and ``metrics.json`` only (no TensorBoard,
    which Detectron2 imports lazily and does not install)."""
    from detectron2.engine import DefaultTrainer
    from detectron2.utils.events import CommonMetricPrinter, JSONWriter

    class Trainer(DefaultTrainer):
        def build_writers(self):
            return [CommonMetricPrinter(self.max_iter), JSONWriter(f"{self.cfg.OUTPUT_DIR}/metrics.json")]

    return Trainer


@contextlib.contextmanager
def _run_log(path: Path):
    """Detectron2's and fvcore's log records of one run to ``path``; the console handler once per process."""
    import logging

    from detectron2.utils.logger import setup_logger

    loggers = [logging.getLogger(name) for name in ("detectron2", "fvcore")]
    if not any(getattr(h, "sslbench_console", False) for h in loggers[0].handlers):
        setup_logger(name="detectron2")
        setup_logger(name="fvcore")
        for logger in loggers:
            for handler in logger.handlers:
                handler.sslbench_console = True
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(name)s %(levelname)s: %(message)s"))
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()
