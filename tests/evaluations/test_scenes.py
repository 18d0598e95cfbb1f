"""Detection scenes: deterministic, masks match boxes, no overlaps, COCO round trip, user layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from bench.config import TransferCfg
from bench.data import Dataset, Split
from bench.errors import SSLBenchError
from evaluations.detection.scenes import MASK_THRESHOLD, generate_scenes, load_scenes, prepare_scenes, write_scenes


@pytest.fixture(scope="module")
def items() -> Split:
    """Blobs of varied shapes and brightness on black, as Fashion-MNIST items are."""
    g = torch.Generator().manual_seed(0)
    images = torch.zeros(20, 1, 28, 28, dtype=torch.uint8)
    for i in range(20):
        top, left = (int(v) for v in torch.randint(1, 10, (2,), generator=g))
        images[i, 0, top:top + 14, left:left + 8 + i % 10] = 100 + 7 * i
        images[i, 0, top + 3, left:left + 4] = 0  # a hole: masks are not boxes
    return Split(images, torch.arange(20) % 10)


def _mask(ann: dict) -> np.ndarray:
    return mask_utils.decode({"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()})


def _by_image(coco: dict) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {image["id"]: [] for image in coco["images"]}
    for ann in coco["annotations"]:
        out[ann["image_id"]].append(ann)
    return out


def _files(directory) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_scenes(items, tmp_path):
    a, coco_a = generate_scenes(items, 12, 64, 3, seed=5)
    b, coco_b = generate_scenes(items, 12, 64, 3, seed=5)
    c, coco_c = generate_scenes(items, 12, 64, 3, seed=6)
    assert a.shape == (12, 1, 64, 64) and a.dtype == torch.uint8
    assert torch.equal(a, b) and coco_a == coco_b
    assert not torch.equal(a, c) and coco_a["annotations"] != coco_c["annotations"]
    write_scenes(tmp_path / "a", "train", a, coco_a)
    write_scenes(tmp_path / "b", "train", b, coco_b)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")  # PNGs and JSON, byte for byte
    assert len(_files(tmp_path / "a")) == 13


def test_boxes_are_the_tight_boxes_of_their_masks_and_never_overlap(items):
    images, coco = generate_scenes(items, 40, 64, 3, seed=1)
    assert [c["name"] for c in coco["categories"]][:2] == ["T-shirt/top", "Trouser"] and len(coco["categories"]) == 10
    counts = set()
    for image_id, anns in _by_image(coco).items():
        counts.add(len(anns))
        assert 1 <= len(anns) <= 3
        scene = images[image_id - 1, 0].numpy()
        union = np.zeros_like(scene, dtype=bool)
        for ann in anns:
            mask = _mask(ann)
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert ann["area"] == mask.sum() > 0 and 1 <= ann["category_id"] <= 10 and ann["iscrowd"] == 0
            assert (scene[mask == 1] > MASK_THRESHOLD).all()  # the mask is the item's own bright pixels
            assert not (union & (mask == 1)).any()
            union |= mask == 1
        assert (scene[~union] <= MASK_THRESHOLD).all()  # every bright pixel belongs to an instance
        boxes = [ann["bbox"] for ann in anns]
        for i, (x, y, w, h) in enumerate(boxes):
            for bx, by, bw, bh in boxes[i + 1:]:
                assert x + w <= bx or bx + bw <= x or y + h <= by or by + bh <= y
    assert counts == {1, 2, 3}
    assert [a["id"] for a in coco["annotations"]] == list(range(1, len(coco["annotations"]) + 1))


def test_blank_items_are_dropped_and_every_scene_keeps_one(items):
    blank = Split(torch.cat([torch.zeros(60, 1, 28, 28, dtype=torch.uint8), items.images]),
                  torch.cat([torch.zeros(60, dtype=torch.int64), items.labels]))
    _, coco = generate_scenes(blank, 30, 64, 1, seed=3)
    assert all(len(anns) == 1 for anns in _by_image(coco).values())
    with pytest.raises(SSLBenchError, match="black background"):
        generate_scenes(Split(torch.zeros(3, 1, 28, 28, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64)),
                        2, 64, 2, seed=0)
    with pytest.raises(SSLBenchError, match="canvas"):
        generate_scenes(items, 2, 12, 2, seed=0)


def test_written_scenes_load_back_exactly_and_read_with_pycocotools(items, tmp_path):
    images, coco = generate_scenes(items, 5, 48, 2, seed=2)
    write_scenes(tmp_path, "val", images, coco)
    loaded, coco_again = load_scenes(tmp_path, "val")
    assert torch.equal(loaded, images) and coco_again == coco
    api = COCO(str(tmp_path / "val.json"))
    assert sorted(api.getImgIds()) == [1, 2, 3, 4, 5] and len(api.getCatIds()) == 10
    for ann in coco["annotations"]:
        np.testing.assert_array_equal(api.annToMask(api.loadAnns(ann["id"])[0]), _mask(ann))
        assert api.loadAnns(ann["id"])[0]["area"] == ann["area"]


def test_rewriting_a_smaller_set_leaves_no_stale_images(items, tmp_path):
    write_scenes(tmp_path, "train", *generate_scenes(items, 6, 48, 2, seed=0))
    images, coco = generate_scenes(items, 3, 48, 2, seed=1)
    write_scenes(tmp_path, "train", images, coco)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert torch.equal(load_scenes(tmp_path, "train")[0], images)


def test_user_coco_layout_with_colour_and_mixed_sizes(tmp_path):
    """A converted VOC / COCO split: RGB and grayscale images of different sizes -> C = 3, padded."""
    (tmp_path / "val").mkdir()
    rgb = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    gray = np.full((25, 10), 77, np.uint8)
    Image.fromarray(rgb).save(tmp_path / "val" / "a.png")
    Image.fromarray(gray).save(tmp_path / "val" / "b.jpg", quality=100)
    coco = {"images": [{"id": 7, "file_name": "a.png", "height": 20, "width": 30},
                       {"id": 3, "file_name": "b.jpg", "height": 25, "width": 10}],
            "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "val.json").write_text(json.dumps(coco))
    images, again = load_scenes(tmp_path, "val")
    assert images.shape == (2, 3, 25, 30) and images.dtype == torch.uint8 and again == coco
    assert torch.equal(images[0, :, :20, :30], torch.from_numpy(rgb).permute(2, 0, 1))
    assert (images[0, :, 20:] == 0).all() and (images[1, :, :, 10:] == 0).all()
    assert (images[1, :, :25, :10] == 77).all()  # grayscale repeated into the three channels
    coco["images"][1]["height"] = 24
    (tmp_path / "val.json").write_text(json.dumps(coco))
    with pytest.raises(SSLBenchError, match="b.jpg"):
        load_scenes(tmp_path, "val")


def test_missing_or_broken_scenes_say_what_to_do(items, tmp_path):
    with pytest.raises(SSLBenchError, match="sslbench prepare") as err:
        load_scenes(tmp_path / "nowhere", "train")
    assert str(tmp_path / "nowhere" / "train.json") in str(err.value)
    (tmp_path / "train.json").write_text("{not json")
    with pytest.raises(SSLBenchError, match="train.json"):
        load_scenes(tmp_path, "train")
    write_scenes(tmp_path, "val", *generate_scenes(items, 2, 32, 1, seed=0))
    (tmp_path / "val" / "000001.png").unlink()
    with pytest.raises(SSLBenchError, match="000001.png"):
        load_scenes(tmp_path, "val")


def test_prepare_writes_train_from_train_and_val_from_test_unless_user_data(items, tmp_path):
    test_items = Split(255 - items.images, items.labels)  # different pixels: the val scenes must come from these
    ds = Dataset("fashion_mnist", items, test_items, 10, (0.5,), (0.5,), "synthetic")
    cfg = TransferCfg(canvas=48, max_items=2, train_scenes=6, val_scenes=4)
    prepare_scenes(ds, tmp_path / "scenes", cfg)
    train, coco_train = load_scenes(tmp_path / "scenes", "train")
    val, coco_val = load_scenes(tmp_path / "scenes", "val")
    assert train.shape == (6, 1, 48, 48) and val.shape == (4, 1, 48, 48)
    assert coco_train == generate_scenes(items, 6, 48, 2, seed=0)[1]
    assert torch.equal(val, generate_scenes(test_items, 4, 48, 2, seed=1)[0]) and len(coco_val["images"]) == 4
    prepare_scenes(ds, tmp_path / "user", TransferCfg(data_root=str(tmp_path)))
    assert not (tmp_path / "user").exists()
