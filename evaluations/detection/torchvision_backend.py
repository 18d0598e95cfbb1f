"""Mask R-CNN (FPN) transfer with ``torchvision.models.detection``: runs everywhere, on CPU.

The pretrained trunk (``layer1..layer4``) feeds a feature pyramid; RPN, box and mask heads
are new. Following MoCo's transfer recipe (He et al. 2019, arXiv 1911.05722, and
``results/reference/protocols.md``) the whole network is fine-tuned with batch norm
trained (SyncBN in the paper; one process here, so plain BN over the batch), SGD with
momentum 0.9, weight decay 1e-4, lr 0.02 x batch/16, linear warm-up, and the lr divided
by 10 at 75 % and 92 % of the iterations (18k / 22k of MoCo's 24k). Horizontal flip is the
only augmentation, as in Detectron2's default.

Deviations, for the embedded 64-px scenes on a CPU: the heads are narrow (FPN and mask
head 64 channels, box head 256) and the RPN keeps fewer proposals; anchors are 8-128 px
(objects are 16-32 px); images are not resized (``min_size = max_size =`` the canvas).
"""

from __future__ import annotations

import contextlib
import io
import math
import time

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

from bench.progress import progress

FPN_CHANNELS = 64
ANCHOR_SIZES = ((16,), (32,), (64,), (128,))  # layer2, layer3, layer4 and the pooled level


def build_detector(trunk: nn.Module, num_classes: int, canvas: int, mean, std) -> MaskRCNN:
    """Mask R-CNN on ``trunk``'s ``layer2..layer4`` (a ``ResNetTrunk``); ``num_classes`` excludes background.

    With the small-image stem ``layer1`` is at full (stride 1) or half (stride 2) resolution:
    the pyramid starts at ``layer2``, as RetinaNet's starts at C3."""
    widths = [trunk.feature_dim // 8 * 2 ** i for i in range(1, 4)]  # layer2..4
    # channels_last features crashed torchvision's CPU RoIAlign here (double free): contiguous
    trunk = trunk.to(memory_format=torch.contiguous_format)
    body = BackboneWithFPN(trunk, {f"layer{i}": str(i - 2) for i in range(2, 5)}, widths, FPN_CHANNELS)
    anchors = AnchorGenerator(ANCHOR_SIZES, ((0.5, 1.0, 2.0),) * len(ANCHOR_SIZES))
    classes = num_classes + 1
    return MaskRCNN(
        body, num_classes=None, min_size=canvas, max_size=canvas, image_mean=list(mean), image_std=list(std),
        rpn_anchor_generator=anchors, rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=150, box_batch_size_per_image=64,
        box_detections_per_img=20,
        box_head=TwoMLPHead(FPN_CHANNELS * 7 * 7, 256), box_predictor=FastRCNNPredictor(256, classes),
        mask_head=MaskRCNNHeads(FPN_CHANNELS, [FPN_CHANNELS] * 2, 1),
        mask_predictor=MaskRCNNPredictor(FPN_CHANNELS, FPN_CHANNELS, classes))


def coco_targets(coco: dict, count: int) -> list[dict[str, torch.Tensor]]:
    """Per image: xyxy boxes, labels and binary masks decoded from the COCO annotations."""
    by_image: dict[int, list[dict]] = {image["id"]: [] for image in coco["images"]}
    for ann in coco["annotations"]:
        by_image[ann["image_id"]].append(ann)
    targets = []
    for image in coco["images"][:count]:
        anns = by_image[image["id"]]
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns], dtype=torch.float32).reshape(-1, 4)
        masks = [mask_utils.decode(_rle(a["segmentation"], image["height"], image["width"])) for a in anns]
        targets.append({
            "boxes": boxes, "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "masks": torch.from_numpy(np.stack(masks)) if masks else
            torch.zeros(0, image["height"], image["width"], dtype=torch.uint8)})
    return targets


def _rle(segmentation, height: int, width: int) -> dict:
    if isinstance(segmentation, list):  # polygons (COCO)
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):  # uncompressed RLE
        return mask_utils.frPyObjects(segmentation, height, width)
    return {"size": segmentation["size"], "counts": segmentation["counts"].encode()}


def _flip(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    width = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    return image.flip(-1), {**target, "boxes": boxes, "masks": target["masks"].flip(-1)}


def warmup_iterations(iterations: int) -> int:
    """Linear warm-up length shared by both backends: a tenth of the run, at most 100 iterations."""
    return min(100, iterations // 10)


def lr_at(step: int, iterations: int, base: float, warmup: int) -> float:
    """Linear warm-up, then /10 at 75 % and 92 % of the iterations (MoCo's 18k / 22k of 24k)."""
    scale = min(1.0, (step + 1) / warmup) if warmup else 1.0
    decays = (step >= int(0.75 * iterations)) + (step >= int(0.92 * iterations))
    return base * scale * 0.1 ** decays


def train_detector(model: MaskRCNN, images: torch.Tensor, targets: list[dict], cfg, seed: int,
                   device: torch.device, desc: str = "transfer") -> list[float]:
    """``cfg.iterations`` SGD steps on random batches with flips; returns the logged losses."""
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    base_lr = cfg.lr * cfg.batch_size / 16
    opt = torch.optim.SGD(params, lr=base_lr, momentum=0.9, weight_decay=cfg.weight_decay)
    warmup = warmup_iterations(cfg.iterations)
    model.to(device).train()
    losses = []
    for step in progress(range(cfg.iterations), desc=desc, unit="it"):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.iterations, base_lr, warmup)
        idx = torch.randint(len(images), (cfg.batch_size,), generator=gen).tolist()
        flips = torch.rand(cfg.batch_size, generator=gen) < 0.5
        batch = [_flip(images[i].float() / 255, targets[i]) if f else (images[i].float() / 255, targets[i])
                 for i, f in zip(idx, flips.tolist())]
        loss_parts = model([b[0].to(device) for b in batch],
                           [{k: v.to(device) for k, v in b[1].items()} for b in batch])
        loss = sum(loss_parts.values())
        if not torch.isfinite(loss):
            return losses + [math.nan]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == cfg.iterations - 1:
            losses.append(float(loss.detach()))
    return losses


@torch.inference_mode()
def detect(model: MaskRCNN, images: torch.Tensor, coco: dict, device: torch.device, batch_size: int = 32) -> list[dict]:
    """COCO-format detections (boxes and RLE masks at 0.5) for the images of ``coco``."""
    model.to(device).eval()
    results = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        outputs = model([im.float().to(device) / 255 for im in chunk])
        for image, out in zip(coco["images"][start:start + batch_size], outputs):
            masks = (out["masks"][:, 0] > 0.5).cpu().numpy().astype(np.uint8)
            for box, label, score, mask in zip(out["boxes"].cpu().tolist(), out["labels"].cpu().tolist(),
                                               out["scores"].cpu().tolist(), masks):
                rle = mask_utils.encode(np.asfortranarray(mask))
                rle["counts"] = rle["counts"].decode()
                results.append({"image_id": image["id"], "category_id": label, "score": score,
                                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "segmentation": rle})
    return results


def coco_ap(coco: dict, detections: list[dict], iou_type: str) -> dict[str, float]:
    """pycocotools' AP, AP50 and AP75 (in %) of ``detections`` against the ground truth ``coco``."""
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {**coco, "annotations": [{**a, "id": a.get("id", i + 1)}
                                                  for i, a in enumerate(coco["annotations"])]}
        truth.createIndex()
        if not detections:
            return {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}
        found = truth.loadRes([{k: v for k, v in d.items() if iou_type == "segm" or k != "segmentation"}
                               for d in detections])
        evaluation = COCOeval(truth, found, iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    ap, ap50, ap75 = (max(0.0, float(v)) * 100 for v in evaluation.stats[:3])
    return {"ap": ap, "ap50": ap50, "ap75": ap75}


def transfer(trunk: nn.Module, train: tuple[torch.Tensor, dict], val: tuple[torch.Tensor, dict], cfg,
             mean, std, seed: int, device: torch.device, desc: str = "transfer") -> dict[str, float]:
    """Fine-tune Mask R-CNN on ``train`` scenes, evaluate on ``val``: the protocol ids' values."""
    torch.manual_seed(seed)
    num_classes = max(c["id"] for c in train[1]["categories"])
    model = build_detector(trunk, num_classes, train[0].shape[-1], mean, std)
    started = time.perf_counter()
    losses = train_detector(model, train[0], coco_targets(train[1], len(train[0])), cfg, seed, device, desc)
    if not losses or not math.isfinite(losses[-1]):
        return dict.fromkeys(("det_box_ap", "det_box_ap50", "det_box_ap75", "seg_mask_ap"), math.nan)
    detections = detect(model, val[0], val[1], device)
    box, segm = coco_ap(val[1], detections, "bbox"), coco_ap(val[1], detections, "segm")
    return {"det_box_ap": box["ap"], "det_box_ap50": box["ap50"], "det_box_ap75": box["ap75"],
            "seg_mask_ap": segm["ap"], "transfer_seconds": time.perf_counter() - started}
