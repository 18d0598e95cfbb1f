"""Detection / segmentation transfer: AP against hand computations, the detector, the stage."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from bench.backbones import BackboneCfg, build_backbone
from evaluations.detection import torchvision_backend as tv
from tests.conftest import needs_fmnist


def _scenes(count: int, seed: int) -> tuple[torch.Tensor, dict]:
    """Two squares per 64-px image (class 1 dim, class 2 bright), COCO-format with RLE masks."""
    g = torch.Generator().manual_seed(seed)
    images, annotations = torch.zeros(count, 1, 64, 64, dtype=torch.uint8), []
    for i in range(count):
        for j in range(2):
            x = int(torch.randint(0, 12, (1,), generator=g)) + 32 * j
            y, s = int(torch.randint(0, 40, (1,), generator=g)), 20
            images[i, 0, y:y + s, x:x + s] = 120 + 80 * j
            mask = np.zeros((64, 64), np.uint8)
            mask[y:y + s, x:x + s] = 1
            rle = mask_utils.encode(np.asfortranarray(mask))
            rle["counts"] = rle["counts"].decode()
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": j + 1,
                                "bbox": [x, y, s, s], "area": s * s, "iscrowd": 0, "segmentation": rle})
    coco = {"images": [{"id": i + 1, "file_name": f"{i:06d}.png", "height": 64, "width": 64} for i in range(count)],
            "annotations": annotations, "categories": [{"id": 1, "name": "dim"}, {"id": 2, "name": "bright"}]}
    return images, coco


def _perfect(coco: dict) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0, "bbox": a["bbox"],
             "segmentation": a["segmentation"]} for a in coco["annotations"]]


def test_ap_of_perfect_and_half_found_detections():
    _, coco = _scenes(1, 0)
    for iou_type in ("bbox", "segm"):
        assert tv.coco_ap(coco, _perfect(coco), iou_type) == pytest.approx({"ap": 100.0, "ap50": 100.0, "ap75": 100.0})
    # One class with one object, found; the other missed: (100 + 0) / 2 categories.
    found = [d for d in _perfect(coco) if d["category_id"] == 1]
    assert tv.coco_ap(coco, found, "bbox")["ap"] == pytest.approx(50.0)
    # Two objects of one class, one found at score 1: precision 1 up to recall 0.5 ->
    # 51 of COCO's 101 recall points -> AP = 51 / 101.
    for a in coco["annotations"]:
        a["category_id"] = 1
    coco["categories"] = coco["categories"][:1]
    assert tv.coco_ap(coco, _perfect(coco)[:1], "bbox")["ap"] == pytest.approx(100 * 51 / 101)
    assert tv.coco_ap(coco, [], "segm") == {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}


def test_box_shifted_below_iou_half_counts_for_nothing():
    _, coco = _scenes(1, 1)
    moved = _perfect(coco)
    for d in moved:
        d["bbox"] = [d["bbox"][0] + 12, *d["bbox"][1:]]  # 20-px boxes 12 px apart: IoU 8/32 = 0.25
    assert tv.coco_ap(coco, moved, "bbox")["ap50"] == 0.0


def test_flip_keeps_boxes_on_their_masks():
    images, coco = _scenes(3, 2)
    for image, target in zip(images, tv.coco_targets(coco, 3)):
        _, flipped = tv._flip(image.float(), target)
        for box, mask in zip(flipped["boxes"], flipped["masks"]):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert box.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def test_lr_schedule_warms_up_then_steps_down_at_moco_fractions():
    lrs = [tv.lr_at(s, 100, 1.0, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == 1.0
    assert lrs[74] == 1.0 and lrs[75] == pytest.approx(0.1) and lrs[92] == pytest.approx(0.01)


def test_detector_learns_the_squares():
    """A few dozen steps on a ResNet-18 (width 8) lift box AP50 well above an untrained detector."""
    from types import SimpleNamespace

    torch.manual_seed(0)
    train, val = _scenes(48, 0), _scenes(16, 1)
    trunk = build_backbone(BackboneCfg(name="resnet18", width=8, small_stem=True, in_channels=1))
    cfg = SimpleNamespace(iterations=40, batch_size=4, lr=0.02, weight_decay=1e-4)
    metrics = tv.transfer(trunk, train, val, cfg, [0.1], [0.3], seed=0, device=torch.device("cpu"))
    assert set(metrics) >= {"det_box_ap", "det_box_ap50", "det_box_ap75", "seg_mask_ap"}
    assert metrics["det_box_ap50"] > 20 and metrics["seg_mask_ap"] > 5


@needs_fmnist
def test_transfer_stage_writes_rows_the_leaderboard_reads(smoke_results, workdir):
    from bench.config import Params, load_suite
    from pipeline.stages import build_leaderboard, evaluate
    from pipeline.transfer import TRANSFER_PROTOCOLS, transfer

    source, _ = smoke_results
    shutil.copytree(source / "data", workdir / "data")
    shutil.copytree(source / "runs" / "smoke" / "random", workdir / "runs" / "smoke" / "random")
    suite = load_suite("smoke")
    params = Params(suite="smoke", methods={"random": {}})
    rows = transfer(suite, params, "random")
    assert {r["protocol"] for r in rows} == set(TRANSFER_PROTOCOLS)
    assert all(0.0 <= r["value"] <= 100.0 for r in rows)
    evaluate(suite, params, "random")
    board = build_leaderboard(suite, ["random"])
    assert {"det_box_ap", "seg_mask_ap", "linear"} <= set(board.columns)
    assert (workdir / "results" / "smoke" / "rows" / "random-transfer.csv").is_file()
