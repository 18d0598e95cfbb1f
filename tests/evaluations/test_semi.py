"""Semi-supervised fine-tuning: split files, the fine-tuning loop, SimCLR v2's starting point."""

from dataclasses import replace

import pytest
import torch

from bench.config import SemiCfg, load_suite
from bench.data import Dataset, Split, label_fraction_split
from evaluations.semi_supervised import finetune
from methods.registry import resolve_hparams
from pipeline.engine import RunSpec, train
from pipeline.stages import finetune_start, semi_supervised


def _separable(n=400, size=16):
    """Class c is an image of brightness 40 + 50 c plus noise: easy to learn."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 4
    images = (40 + 50 * labels.view(-1, 1, 1, 1) + torch.randint(0, 20, (n, 1, size, size), generator=g))
    split = Split(images.to(torch.uint8), labels)
    return Dataset("toy", split, split, 4, (0.5,), (0.25,), "generated")


def test_splits_are_class_balanced_deterministic_and_inside_the_train_set():
    labels = torch.arange(1000) % 10
    one = label_fraction_split(labels, 0.01, seed=0)
    assert torch.equal(one, label_fraction_split(labels, 0.01, seed=0))
    assert len(one) == 10 and torch.bincount(labels[one], minlength=10).tolist() == [1] * 10
    ten = label_fraction_split(labels, 0.10, seed=0)
    assert torch.bincount(labels[ten], minlength=10).tolist() == [10] * 10
    assert len(set(ten.tolist())) == len(ten) and int(ten.max()) < len(labels)


def test_finetuning_learns_and_reports_the_final_epoch():
    data = _separable()
    encoder = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                  torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    before = [p.clone() for p in encoder.parameters()]
    cfg = SemiCfg(epochs_1pct=8, epochs_10pct=8, lr_backbone=0.05, lr_head=1.0, batch_size=32)
    acc = finetune(encoder, 8, data.train.images, data.train.labels, data.test.images, data.test.labels, 4,
                   data.mean, data.std, 16, 8, cfg, torch.device("cpu"))
    assert acc["top1"] > 90 and "top5" not in acc
    assert all(torch.equal(a, b) for a, b in zip(before, encoder.parameters()))  # fine-tunes a copy


def test_simclr_v2_finetunes_from_its_first_projection_layer(tmp_path):
    data = _separable()
    suite = load_suite("smoke")
    suite = replace(suite, resolution=16, budget=replace(suite.budget, value=64),
                    train=replace(suite.train, batch_size=32),
                    eval=replace(suite.eval, protocols=["semi"],
                                 semi=SemiCfg(epochs_1pct=1, epochs_10pct=1, batch_size=32)))
    record = train(RunSpec(suite, "simclr_v2", 0, resolve_hparams("simclr_v2", {}), tmp_path), data,
                   progress_bar=False)
    start, dim = finetune_start(suite, tmp_path, record, data)
    layer = start[1][0]  # backbone, then the first projection layer with the pretrained weights
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    assert isinstance(layer, torch.nn.Linear) and torch.equal(layer.weight, saved["projector.0.weight"])
    x = torch.randn(2, 1, 16, 16)
    assert start.eval()(x).shape == (2, dim)


def test_semi_rows_come_from_the_prepared_split_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _separable()
    splits = tmp_path / "data" / "smoke" / "splits"
    splits.mkdir(parents=True)
    for name, fraction in (("semi_1pct", 0.05), ("semi_10pct", 0.2)):
        idx = label_fraction_split(data.train.labels, fraction, seed=0)
        (splits / f"{name}.txt").write_text("".join(f"{i}\n" for i in idx.tolist()))
    suite = load_suite("smoke")
    suite = replace(suite, resolution=16, budget=replace(suite.budget, value=64),
                    train=replace(suite.train, batch_size=32),
                    eval=replace(suite.eval, semi=SemiCfg(epochs_1pct=2, epochs_10pct=2, batch_size=32)))
    run = tmp_path / "run"
    record = train(RunSpec(suite, "supervised", 0, resolve_hparams("supervised", {}), run), data,
                   progress_bar=False)
    out = semi_supervised(suite, run, record, data, torch.device("cpu"))
    assert set(out) == {"semi_1pct", "semi_10pct"} and all(0 <= v <= 100 for v in out.values())


def test_simclr_lists_pick_the_listed_files_and_say_so(tmp_path):
    from bench.data import OWN_SPLIT, Split, semi_split
    from bench.errors import SSLBenchError

    names = [f"n0144{c}_{i}.JPEG" for c in range(2) for i in range(50)]
    train = Split(torch.zeros(100, 3, 4, 4, dtype=torch.uint8), torch.arange(100) // 50, names)
    (tmp_path / "1percent.txt").write_text("n01441_7.JPEG\nn01440_3.JPEG\nn09999_1.JPEG\n")  # one not in this subset
    idx, source = semi_split(train, "semi_1pct", 0.01, str(tmp_path))
    assert idx.tolist() == [3, 57] and source == "SimCLR list 1percent.txt (2 of 3 files)"
    with pytest.raises(SSLBenchError, match="10percent.txt"):
        semi_split(train, "semi_10pct", 0.1, str(tmp_path))
    with pytest.raises(SSLBenchError, match="imagefolder"):
        semi_split(Split(train.images, train.labels), "semi_1pct", 0.01, str(tmp_path))
    own, source = semi_split(train, "semi_10pct", 0.1, None)  # no lists: the own split, labelled
    assert source == OWN_SPLIT and len(own) == 10 and (train.labels[own] == 0).sum() == 5
