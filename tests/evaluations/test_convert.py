"""Detectron2 weight conversion: MoCo's key mapping, exact key sets, values, CLI, errors."""

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from bench.backbones import BackboneCfg, build_backbone
from bench.errors import SSLBenchError
from evaluations.detection.convert import to_detectron2, write_detectron2
from pipeline.cli import main
from tests.conftest import REPO

NORM = ("weight", "bias", "running_mean", "running_var")


def detectron2_layout(blocks: list[int], convs: int, shortcut_stages: set[int]) -> set[str]:
    """Detectron2's ResNet key names, written out independently of the converter."""
    keys = {"stem.conv1.weight"} | {f"stem.conv1.norm.{n}" for n in NORM}
    for stage, count in zip(range(2, 6), blocks):
        for block in range(count):
            for conv in [f"conv{j}" for j in range(1, convs + 1)] + (
                    ["shortcut"] if block == 0 and stage in shortcut_stages else []):
                keys.add(f"res{stage}.{block}.{conv}.weight")
                keys |= {f"res{stage}.{block}.{conv}.norm.{n}" for n in NORM}
    return keys


def torchvision_name(d2: str) -> str:
    """The inverse mapping, for comparing values."""
    if d2.startswith("stem.conv1.norm."):
        return "bn1." + d2.rsplit(".", 1)[1]
    if d2 == "stem.conv1.weight":
        return "conv1.weight"
    stage, block, layer, *rest = d2.split(".")
    if layer == "shortcut":
        layer = "downsample.1" if rest[0] == "norm" else "downsample.0"
    elif rest[0] == "norm":
        layer = "bn" + layer[4:]
    return ".".join([f"layer{int(stage[3:]) - 1}", block, layer, rest[-1]])


@pytest.mark.parametrize("cfg, blocks, convs, shortcuts", [
    (BackboneCfg(name="resnet18", width=8, small_stem=True, in_channels=1), [2, 2, 2, 2], 2, {3, 4, 5}),
    (BackboneCfg(name="resnet50", width=64), [3, 4, 6, 3], 3, {2, 3, 4, 5}),
])
def test_key_layout_and_values(cfg, blocks, convs, shortcuts):
    torch.manual_seed(0)
    state = build_backbone(cfg).state_dict()
    for value in state.values():  # non-trivial BN statistics, so a swapped key would show
        if value.is_floating_point():
            value.copy_(torch.randn_like(value))
    mapping = to_detectron2(state)
    assert set(mapping) == detectron2_layout(blocks, convs, shortcuts)
    for name, array in mapping.items():
        assert isinstance(array, np.ndarray)
        np.testing.assert_array_equal(array, state[torchvision_name(name)].numpy())
    assert mapping["stem.conv1.weight"].shape[1:] == ((1, 3, 3) if cfg.small_stem else (3, 7, 7))


def test_prefix_is_stripped_and_other_modules_ignored():
    trunk = build_backbone(BackboneCfg(name="resnet18", width=8, small_stem=True)).state_dict()
    state = {f"backbone.{k}": v for k, v in trunk.items()}
    state |= {"projector.0.weight": torch.zeros(4, 4), "backbone.fc.weight": torch.zeros(2, 64)}
    state |= {f"target_backbone.{k}": v + 1 for k, v in trunk.items() if v.is_floating_point()}
    mapping = to_detectron2(state)
    assert set(mapping) == set(to_detectron2(trunk))
    np.testing.assert_array_equal(mapping["res3.0.shortcut.weight"], trunk["layer2.0.downsample.0.weight"].numpy())
    shifted = to_detectron2(state, prefix="target_backbone.")
    np.testing.assert_array_equal(shifted["stem.conv1.weight"], trunk["conv1.weight"].numpy() + 1)


def test_vit_state_is_refused():
    vit = build_backbone(BackboneCfg(name="vit_tiny", patch_size=4, image_size=28, in_channels=1))
    with pytest.raises(SSLBenchError, match="only ResNet backbones convert"):
        to_detectron2(vit.state_dict())


def fake_run(directory, cfg: BackboneCfg, status: str = "complete"):
    """A run directory as ``pipeline.engine`` leaves it: ``encoder.pt`` and ``run.json``."""
    from bench.io import atomic_torch_save
    from bench.runs import ENCODER, RUN_JSON

    directory.mkdir(parents=True)
    encoder = build_backbone(cfg)
    atomic_torch_save(encoder.state_dict(), directory / ENCODER)
    record = {"suite": "tiny", "method": "simclr", "seed": 0, "backbone": cfg.name,
              "backbone_cfg": {"name": cfg.name, "width": cfg.width, "small_stem": cfg.small_stem,
                               "in_channels": cfg.in_channels, "patch_size": 4, "image_size": 32},
              "status": status}
    (directory / RUN_JSON).write_text(json.dumps(record))
    return encoder


def test_cli_writes_pickle(tmp_path, capsys):
    run = tmp_path / "runs" / "tiny" / "simclr" / "seed0"
    encoder = fake_run(run, BackboneCfg(name="resnet18", width=8, small_stem=True, in_channels=1))
    assert main(["convert", "--to", "detectron2", str(run)]) == 0
    assert "detectron2.pkl" in capsys.readouterr().out
    with open(run / "detectron2.pkl", "rb") as fh:
        data = pickle.load(fh)
    assert data["matching_heuristics"] is True and data["__author__"] == "sslbench"
    assert set(data["model"]) == detectron2_layout([2, 2, 2, 2], 2, {3, 4, 5})
    np.testing.assert_array_equal(data["model"]["res5.1.conv2.weight"], encoder.layer4[1].conv2.weight.detach())
    assert data["sslbench"]["depth"] == 18 and data["sslbench"]["res2_out_channels"] == 8
    assert data["sslbench"]["stem"] == {"kernel": 3, "stride": 1, "max_pool": False, "in_channels": 1,
                                        "out_channels": 8}
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    out = tmp_path / "elsewhere" / "w.pkl"
    assert main(["convert", "--to", "detectron2", str(run), "-o", str(out)]) == 0 and out.is_file()


def test_unusable_runs_are_refused(tmp_path):
    diverged = tmp_path / "diverged"
    fake_run(diverged, BackboneCfg(name="resnet18", width=8, small_stem=True), status="diverged")
    with pytest.raises(SSLBenchError, match="did not complete"):
        write_detectron2(diverged)
    vit = tmp_path / "vit"
    fake_run(vit, BackboneCfg(name="vit_tiny", in_channels=1))
    with pytest.raises(SSLBenchError, match="only ResNet backbones convert"):
        write_detectron2(vit)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(SSLBenchError, match="unfinished"):
        write_detectron2(unfinished)


def test_missing_run_is_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "convert", "--to", "detectron2",
                           str(tmp_path / "runs" / "nope" / "seed0")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("sslbench: error:") and "does not exist" in lines[0], proc.stderr


def test_detectron2_backend_without_detectron2(tmp_path, monkeypatch):
    from evaluations.detection import detectron2_backend

    monkeypatch.setitem(sys.modules, "detectron2", None)  # import fails as if not installed
    with pytest.raises(SSLBenchError, match="Detectron2 is not installed"):
        detectron2_backend.run_detectron2(detectron2_backend.CONFIGS / "scenes_R_18_FPN.yaml",
                                          tmp_path / "w.pkl", tmp_path / "out")


def test_detectron2_loads_converted_weights(tmp_path):
    """With Detectron2 installed: every converted tensor lands in the scenes model, stem included."""
    pytest.importorskip("detectron2")
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from evaluations.detection.detectron2_backend import CONFIGS, _match_trunk, register_modules

    run = tmp_path / "run"
    encoder = fake_run(run, BackboneCfg(name="resnet18", width=8, small_stem=True, in_channels=1))
    weights = write_detectron2(run)
    register_modules()
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "scenes_R_18_FPN.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    _match_trunk(cfg, weights)
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(weights))
    trunk = model.backbone.bottom_up
    torch.testing.assert_close(trunk.stem.conv1.weight, encoder.conv1.weight.detach())
    torch.testing.assert_close(trunk.res4[0].shortcut.norm.running_var, encoder.layer3[0].downsample[1].running_var)


def test_detectron2_trains_repeatably_and_reaches_its_learning_rate(tmp_path):
    """With Detectron2 installed: the transfer recipe trains from converted weights, warms up to
    the base lr within its iterations, repeats exactly with a seed and needs no TensorBoard."""
    pytest.importorskip("detectron2")
    from bench.config import TransferCfg
    from evaluations.detection.detectron2_backend import CONFIGS, run_detectron2
    from evaluations.detection.scenes import write_scenes
    from pipeline.transfer import _detectron2_recipe
    from tests.pipeline.test_transfer import _scenes

    run = tmp_path / "run"
    fake_run(run, BackboneCfg(name="resnet18", width=8, small_stem=True, in_channels=1))
    datasets = {}
    for split, (count, seed) in {"train": (16, 0), "val": (4, 1)}.items():
        write_scenes(tmp_path / "scenes", split, *_scenes(count, seed))
        datasets[split] = (tmp_path / "scenes" / f"{split}.json", tmp_path / "scenes" / split)
    cfg = TransferCfg(iterations=20, batch_size=2)
    outs = [run_detectron2(CONFIGS / "scenes_R_18_FPN.yaml", write_detectron2(run), tmp_path / f"out{i}", datasets,
                           _detectron2_recipe(cfg), seed=0) for i in range(2)]
    assert outs[0] == outs[1] and set(outs[0]) == {"det_box_ap", "det_box_ap50", "det_box_ap75", "seg_mask_ap"}
    logged = [json.loads(line) for line in (tmp_path / "out0" / "metrics.json").read_text().splitlines()]
    last = [entry["lr"] for entry in logged if "lr" in entry][-1]  # iteration 19: warmed up, decayed twice
    assert last == pytest.approx(cfg.lr * cfg.batch_size / 16 * 0.01, rel=0.01)
    log = (tmp_path / "out1" / "log.txt").read_text()
    assert "out0" not in log  # each run's log holds that run only
