"""A run's ResNet trunk as Detectron2 weights: ``sslbench convert --to detectron2 RUN``.

The key mapping is the one of MoCo's ``detection/convert-pretrain-to-detectron2.py``
(He et al. 2019, arXiv 1911.05722): torchvision's names become Detectron2's ResNet names,

    conv1 / bn1                    -> stem.conv1 / stem.conv1.norm
    layerN.M.convK / layerN.M.bnK  -> res{N+1}.M.convK / res{N+1}.M.convK.norm
    layerN.M.downsample.0 / .1     -> res{N+1}.M.shortcut / res{N+1}.M.shortcut.norm

and the arrays are pickled as ``{"model": ..., "__author__": ..., "matching_heuristics": True}``
so that Detectron2's checkpointer matches names by suffix (C4 models keep ``res5`` in the
ROI head, FPN models under ``backbone.bottom_up``). The classifier (``fc``) and the
``num_batches_tracked`` counters are dropped.

The stem is the one thing that may not fit. Detectron2's ``BasicStem`` is a 7x7 stride-2
convolution followed by a 3x3 stride-2 max-pool; our small-image stem (``small_stem``) is a
3x3 stride-1 convolution with no max-pool. The pickle records the stem's shape under
``"sslbench"``. The embedded-scene config (``configs/scenes_R_18_FPN.yaml``) builds a
matching small stem (a backbone that ``detectron2_backend`` registers, since upstream
Detectron2 offers no such stem and requires 64 ``res2`` channels for R18/R34). The VOC and
COCO configs use Detectron2's own 7x7 stem: a 3x3 (or single-channel) stem has another
shape there, so Detectron2 skips it with a shape-mismatch warning and the stem is
re-initialised; only the residual stages transfer.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import torch

from bench.errors import SSLBenchError

AUTHOR = "sslbench"
ANCHOR = "layer1.0.conv1.weight"  # every torchvision ResNet has it; what comes before it is the prefix
_BLOCK = re.compile(r"layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.[01])\.(.+)")


def _prefix(state: dict[str, torch.Tensor], prefix: str | None) -> str:
    """The prefix of the trunk's keys ('' for a bare trunk, e.g. 'backbone.' in a method's state)."""
    if prefix is not None:
        if prefix + ANCHOR not in state:
            raise SSLBenchError(f"no ResNet trunk under the prefix '{prefix}' (expected '{prefix}{ANCHOR}').")
        return prefix
    found = sorted((k[: -len(ANCHOR)] for k in state if k.endswith(ANCHOR) and k[: -len(ANCHOR)] + "conv1.weight"
                    in state), key=lambda p: (len(p), p))
    if not found:
        example = next(iter(state), "nothing")
        raise SSLBenchError(f"only ResNet backbones convert to Detectron2, and this state dict holds no ResNet "
                            f"trunk (its first key is '{example}').")
    if len(found) > 1 and len(found[0]) == len(found[1]):
        raise SSLBenchError(f"the state dict holds several ResNet trunks ({', '.join(repr(p) for p in found)}); "
                            "pass the prefix of the one to convert.")
    return found[0]


def _rename(key: str) -> str | None:
    """Detectron2's name of a trunk key (without prefix); None for keys Detectron2 has no use for."""
    if key.startswith("fc.") or key.endswith("num_batches_tracked"):
        return None
    if key == "conv1.weight":
        return "stem.conv1.weight"
    if key.startswith("bn1."):
        return "stem.conv1.norm." + key[len("bn1."):]
    match = _BLOCK.fullmatch(key)
    if not match:
        raise SSLBenchError(f"key '{key}' is not part of a torchvision ResNet; only ResNet backbones convert.")
    stage, block, layer, rest = match.groups()
    layer = {"downsample.0": "shortcut", "downsample.1": "shortcut.norm"}.get(layer) or (
        f"conv{layer[2:]}.norm" if layer.startswith("bn") else layer)
    return f"res{int(stage) + 1}.{block}.{layer}.{rest}"


def to_detectron2(state: dict[str, torch.Tensor], prefix: str | None = None) -> dict[str, np.ndarray]:
    """Detectron2 names and numpy arrays for the ResNet trunk in ``state``.

    ``prefix`` selects the trunk's keys (e.g. ``'backbone.'``); by default it is found: the
    bare trunk, else the shortest prefix of a complete trunk. Keys outside the trunk
    (projectors, predictors) are ignored. A state without a ResNet trunk (e.g. a ViT:
    ``patch_embed``, ``blocks.N``) raises ``SSLBenchError``.
    """
    prefix = _prefix(state, prefix)
    out = {}
    for key, value in state.items():
        if not key.startswith(prefix) or (name := _rename(key[len(prefix):])) is None:
            continue
        value = value.detach().cpu().contiguous()
        out[name] = (value.float() if value.dtype == torch.bfloat16 else value).numpy()
    return out


def stem_shape(mapping: dict[str, np.ndarray], small_stem: bool, stem_stride: int = 1) -> dict:
    """What Detectron2 needs to know to build a matching trunk (recorded in the pickle)."""
    out_ch, in_ch, kernel, _ = mapping["stem.conv1.weight"].shape
    bottleneck = "res2.0.conv3.weight" in mapping
    blocks = [len({k.split(".")[1] for k in mapping if k.startswith(f"res{s}.")}) for s in range(2, 6)]
    depth = {(False, (2, 2, 2, 2)): 18, (False, (3, 4, 6, 3)): 34, (True, (3, 4, 6, 3)): 50,
             (True, (3, 4, 23, 3)): 101}.get((bottleneck, tuple(blocks)))
    res2 = mapping["res2.0.conv3.weight" if bottleneck else "res2.0.conv2.weight"].shape[0]
    return {"depth": depth, "stem": {"kernel": int(kernel), "stride": stem_stride if small_stem else 2,
                                     "max_pool": not small_stem, "in_channels": int(in_ch),
                                     "out_channels": int(out_ch)},
            "res2_out_channels": int(res2)}


def write_detectron2(run_dir: Path, out: Path | None = None) -> Path:
    """Write the backbone of a finished run as a Detectron2 pickle (default ``<run_dir>/detectron2.pkl``)."""
    from bench.io import _atomic_path, safe_torch_load
    from bench.runs import CHECKPOINT, ENCODER, RUN_JSON, read_record

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SSLBenchError(f"run '{run_dir}' does not exist; pass a run directory such as runs/tiny/simclr/seed0.")
    if not (run_dir / RUN_JSON).is_file() and (run_dir / CHECKPOINT).is_file():
        raise SSLBenchError(f"run '{run_dir}' is unfinished (a checkpoint but no {RUN_JSON}); "
                            "finish it with `sslbench pretrain` first.")
    record = read_record(run_dir / RUN_JSON)
    if record.get("status") != "complete":
        raise SSLBenchError(f"run '{run_dir}' did not complete (status '{record.get('status')}'); "
                            "its weights are not converted.")
    mapping = to_detectron2(safe_torch_load(run_dir / ENCODER))
    cfg = record.get("backbone_cfg", {})
    small_stem, stem_stride = bool(cfg.get("small_stem", False)), int(cfg.get("stem_stride", 1))
    meta = {"run": str(run_dir), "method": record.get("method"), "seed": record.get("seed"),
            "backbone": record.get("backbone"), **stem_shape(mapping, small_stem, stem_stride)}
    out = Path(out) if out is not None else run_dir / "detectron2.pkl"
    with _atomic_path(out) as tmp, open(tmp, "wb") as fh:
        pickle.dump({"model": mapping, "__author__": AUTHOR, "matching_heuristics": True, "sslbench": meta}, fh,
                    protocol=pickle.HIGHEST_PROTOCOL)
    return out
