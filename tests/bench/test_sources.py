"""Streamed folders in the pipeline (bench/sources.py): lazy splits that select files, decode per batch,
and run prepare -> pretrain -> kNN / linear end to end on real Fashion-MNIST JPEGs."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bench import folders
from bench.config import Params, load_suite
from bench.data import DatasetCfg, at_resolution, load_raw, pretraining_view
from bench.sources import FolderImages
from bench.views import ViewGenerator, recipe
from tests.conftest import FMNIST, needs_fmnist


@pytest.fixture(scope="module")
def fmnist_folder(tmp_path_factory):
    if not FMNIST.is_file():
        pytest.skip("Fashion-MNIST not installed (make data)")
    return folders.export_fashion_mnist_folder(tmp_path_factory.mktemp("fmnist_folder"), FMNIST.parent, limit=300)


def _suite(root, steps=4):
    suite = load_suite("fmnist_folder")
    return replace(suite, name="fmnist_folder_test",
                   dataset=replace(suite.dataset, root=str(root), pretrain_subset=0),
                   budget=replace(suite.budget, value=32 * steps),
                   train=replace(suite.train, batch_size=32, checkpoint_every=100, log_every=1),
                   eval=replace(suite.eval, linear=replace(suite.eval.linear, epochs=2)), seeds=(0,))


def test_a_lazy_split_selects_files_and_decodes_only_what_a_batch_asks(fmnist_folder, monkeypatch):
    ds = at_resolution(load_raw(DatasetCfg(name="imagefolder", root=str(fmnist_folder))), 28)
    train = ds.train.images
    assert isinstance(train, FolderImages) and len(train) == 300 and train.shape == (300, 3, 28, 28)
    assert ds.channels == 3 and ds.num_classes == 10 and 0.2 < ds.mean[0] < 0.5  # measured on decoded files
    sub = pretraining_view(ds, 100).train
    assert isinstance(sub.images, FolderImages) and len(sub.images) == len(sub.labels) == len(sub.names) == 100
    asked = []
    real = folders.decode_crops
    monkeypatch.setattr("bench.sources.decode_crops", lambda path, *a, **k: asked.append(path) or real(path, *a, **k))
    idx = torch.tensor([5, 17, 42])
    views = ViewGenerator(recipe("simclr", 28), ds.mean, ds.std, torch.device("cpu"))
    out = views(train[idx], torch.Generator().manual_seed(0))
    assert [v.shape for v in out] == [(3, 3, 28, 28)] * 2
    assert asked == train[idx].paths()  # those three files, nothing else
    again = views(train[idx], torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(out, again))  # the step's generator fixes the crops
    plain = views.plain(ds.test.images[0:4], 28)
    assert plain.shape == (4, 3, 28, 28)


@needs_fmnist
def test_prepare_pretrain_evaluate_from_a_streamed_folder(fmnist_folder, workdir):
    from pipeline.stages import evaluate, prepare, pretrain

    suite = _suite(fmnist_folder)
    out = prepare(suite)
    assert (out / "train.index.json").is_file() and not (out / "train.pt").exists()  # an index, no pixels
    params = Params(suite=suite.name, methods={"simclr": {}})
    record = pretrain(suite, params, "simclr", progress_bar=False)[0]
    assert record["status"] == "complete" and record["images_seen"] == 128
    rows = {r["protocol"]: r["value"] for r in evaluate(suite, params, "simclr")}
    assert set(rows) == {"knn_k20", "knn_k200", "linear"}
    assert all(0 < v <= 100 for v in rows.values()), rows


def test_each_rank_decodes_a_disjoint_share_of_the_step(fmnist_folder, monkeypatch):
    """With N data-parallel workers, ``step_batch`` hands rank r the r-th chunk of the step's indices;
    on a streamed folder each rank opens only its chunk's files, and together they open the step's."""
    from pipeline.engine import Sampler, step_batch

    ds = at_resolution(load_raw(DatasetCfg(name="imagefolder", root=str(fmnist_folder))), 28)
    views = ViewGenerator(recipe("simclr", 28), ds.mean, ds.std, torch.device("cpu"))
    opened: list = []
    real = folders.decode_crops
    monkeypatch.setattr("bench.sources.decode_crops", lambda path, *a, **k: opened.append(path) or real(path, *a, **k))
    sampler = Sampler(len(ds.train), 32, seed=0)
    per_rank = []
    for rank in (0, 1):
        opened.clear()
        batch = step_batch(sampler, views, ds.train.images, ds.train.labels, 0, 3, torch.device("cpu"), 2, rank)
        assert batch.views[0].shape == (16, 3, 28, 28)
        per_rank.append(set(opened))
    assert len(per_rank[0]) == len(per_rank[1]) == 16 and not per_rank[0] & per_rank[1]
    assert per_rank[0] | per_rank[1] == set(ds.train.images[sampler.indices(3)].paths())


@pytest.mark.slow  # ~25 s: a Ray Train job; the shard split itself is tested above
@needs_fmnist
def test_ray_train_workers_pretrain_from_a_streamed_folder(fmnist_folder, workdir, ray_cluster):
    from pipeline.stages import prepare, pretrain

    suite = _suite(fmnist_folder)
    prepare(suite)
    [record] = pretrain(suite, Params(suite=suite.name, methods={"simclr": {}}), "simclr", workers=2)
    assert record["status"] == "complete" and record["workers"] == 2 and record["images_seen"] == 128


def test_imagenet100_and_simclr_lists_through_prepare_on_a_streamed_folder(tmp_path, workdir):
    """A folder in ImageNet's layout: ``classes_file`` keeps CMC's ImageNet-100 classes, ``semi_lists``
    picks SimCLR's listed train files by name, and prepare writes the index and the splits from them."""
    from pipeline.plan import dataset_for
    from pipeline.stages import prepare

    root = tmp_path / "imagenet"
    folders.synthetic_folder(root, 40, folders.IMAGENET100[:3] + ["n01440764", "n01443537"], sides=(40, 60))
    classes = tmp_path / "imagenet100.txt"
    classes.write_text("\n".join(folders.IMAGENET100) + "\n")
    kept = sorted(p for c in folders.IMAGENET100[:3] for p in (root / "train" / c).iterdir())
    lists = tmp_path / "imagenet_subsets"
    lists.mkdir()
    (lists / "1percent.txt").write_text("".join(p.name + "\n" for p in kept[:3]) + "n01440764_99.JPEG\n")
    (lists / "10percent.txt").write_text("".join(p.name + "\n" for p in kept[:9]))
    suite = _suite(root)
    suite = replace(suite, dataset=replace(suite.dataset, classes_file=str(classes), semi_lists=str(lists)))
    out = prepare(suite)
    ds = dataset_for(suite)
    assert ds.num_classes == 3 and len(ds.train) == len(kept)  # the two other classes are left out
    assert all(p.parent.name in folders.IMAGENET100 for p in ds.train.images.paths() + ds.test.images.paths())
    one = [int(i) for i in (out / "splits" / "semi_1pct.txt").read_text().split()]
    assert sorted(ds.train.names[i] for i in one) == [p.name for p in kept[:3]]  # the unlisted class's file: not kept
    assert len((out / "splits" / "semi_10pct.txt").read_text().split()) == 9
    assert "SimCLR list 1percent.txt (3 of 4 files)" in (out / "splits" / "sources.json").read_text()
