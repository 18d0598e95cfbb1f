"""Detection scenes: deterministic, masks match boxes, no overlaps, COCO round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from bench.data import Split
from bench.errors import SSLBenchError
from evaluations.detection.scenes import generate_scenes, load_scenes, write_scenes


@pytest.fixture(scope="module")
def items() -> Split:
    """Blobs of varied shapes on black, as Fashion-MNIST items are."""
    g = torch.Generator().manual_seed(0)
    images = torch.zeros(20, 1, 28, 28, dtype=torch.uint8)
    for i in range(20):
        top, left = (int(v) for v in torch.randint(1, 10, (2,), generator=g))
        images[i, 0, top:top + 14, left:left + 8 + i % 10] = 100 + 7 * i
    return Split(images, torch.arange(20) % 10)


def _mask(ann: dict) -> np.ndarray:
    return mask_utils.decode({"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()})


def test_same_seed_same_scenes_other_seed_others(items):
    a, coco_a = generate_scenes(items, 12, 64, 3, seed=5)
    b, coco_b = generate_scenes(items, 12, 64, 3, seed=5)
    c, _ = generate_scenes(items, 12, 64, 3, seed=6)
    assert torch.equal(a, b) and coco_a == coco_b and not torch.equal(a, c)
    assert a.shape == (12, 1, 64, 64) and a.dtype == torch.uint8


def test_boxes_are_the_tight_boxes_of_their_masks_and_never_overlap(items):
    images, coco = generate_scenes(items, 30, 64, 3, seed=1)
    per_image: dict[int, list] = {}
    for ann in coco["annotations"]:
        mask = _mask(ann)
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["area"] == mask.sum() and 1 <= ann["category_id"] <= 10
        assert (images[ann["image_id"] - 1, 0].numpy()[mask == 1] > 0).all()  # the mask is the item's pixels
        per_image.setdefault(ann["image_id"], []).append(ann["bbox"])
    assert all(1 <= len(boxes) <= 3 for boxes in per_image.values()) and len(per_image) == 30
    for boxes in per_image.values():
        for i, (x, y, w, h) in enumerate(boxes):
            for bx, by, bw, bh in boxes[i + 1:]:
                assert x + w <= bx or bx + bw <= x or y + h <= by or by + bh <= y


def test_written_scenes_load_back_exactly_and_read_with_pycocotools(items, tmp_path):
    images, coco = generate_scenes(items, 5, 48, 2, seed=2)
    write_scenes(tmp_path, "val", images, coco)
    loaded, coco_again = load_scenes(tmp_path, "val")
    assert torch.equal(loaded, images) and coco_again == coco
    api = COCO(str(tmp_path / "val.json"))
    for ann in coco["annotations"]:
        np.testing.assert_array_equal(api.annToMask(api.loadAnns(ann["id"])[0]), _mask(ann))


def test_missing_scenes_say_to_prepare(tmp_path):
    with pytest.raises(SSLBenchError, match="sslbench prepare"):
        load_scenes(tmp_path, "train")
