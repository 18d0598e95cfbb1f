"""Numeric precision of training and evaluation: ``auto``, ``fp32`` or ``bf16``.

``auto`` (every suite's default) gives bf16 autocast only where the device computes bf16
natively, a sub-second probe finds it faster than fp32, and a self-test finds it correct:
a CUDA device with bf16 support, or a CPU whose oneDNN reports bf16 (AVX512-BF16 / AMX).
Everywhere else it gives fp32. On an AVX2-only CPU bf16 is emulated: the tiny bare step
ran 53-55 images/s in bf16 against 371-399 in fp32 (7x slower), so ``auto`` never picks it
there. The self-test exists because torch 2.14.1's CPU bf16 path returned non-finite values
for a 3x3 stride-2 convolution on a 1 x 1 input in 2-17 of 20 trials (batch 576 or 64) on an AVX512-BF16 host
(fp32: never), which is where PIRL's jigsaw tiles and CPC's patches reach layer4 of the
stride-2 ``tiny`` network: PIRL diverged in 3 of 4 bf16 smoke runs there.

The resolved value, never ``auto``, is what a run records (``run.json``, every result
row, the leaderboard's ``precision`` column) and what its identity hashes: a bf16 run and
an fp32 run of the same method and seed are different runs with different numbers, and
no row is ever reused or compared as if it were the other.

``SSLBENCH_NATIVE_BF16=0`` (or ``1``) overrides the hardware answer: tests use it to take
the no-native-bf16 branch on any host. The CPU decision is cached per host and torch
version under ``~/.cache/sslbench`` so that every stage of a pipeline resolves alike.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
FORCE_ENV = "SSLBENCH_NATIVE_BF16"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sslbench"
CACHE_VERSION = 2  # bump when the decision rule changes: old cached answers are then ignored
MIN_SPEEDUP = 1.05  # bf16 must beat fp32 by this much on the probe to be chosen on a CPU
_warned: set[str] = set()


def native_bf16(device_type: str) -> bool:
    """Whether the device computes bf16 in hardware (``SSLBENCH_NATIVE_BF16`` overrides)."""
    forced = os.environ.get(FORCE_ENV)
    if forced in ("0", "1"):
        return forced == "1"
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _probe_step(dtype: torch.dtype | None):
    """A small conv-BN-ReLU forward and backward shaped like the tiny suite's first stage."""
    gen = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(*[m for _ in range(3) for m in (
        torch.nn.Conv2d(8, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU())])
    net = net.to(memory_format=torch.channels_last)
    x = torch.randn(32, 8, 28, 28, generator=gen).contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cpu", dtype=dtype) if dtype else nullcontext()

    def step():
        with autocast:
            out = net(x)
        out.float().square().mean().backward()

    return step


def median_seconds(fn, warmup: int = 2, repeats: int = 5) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@functools.cache
def cpu_bf16_is_finite(trials: int = 60) -> bool:
    """bf16 autocast of a 3x3 stride-2 convolution on 1 x 1 inputs, forward and backward, stays finite."""
    gen = torch.Generator().manual_seed(0)
    for _ in range(trials):
        conv = torch.nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False)
        x = torch.randn(64, 32, 1, 1, generator=gen, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        y.float().square().mean().backward()
        if not (torch.isfinite(y).all() and torch.isfinite(x.grad).all() and torch.isfinite(conv.weight.grad).all()):
            return False
    return True


@functools.cache
def cpu_bf16_speedup() -> float:
    """fp32 seconds / bf16 seconds of the probe step on this CPU, one thread (< 1 s on a native host)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fp32 = median_seconds(_probe_step(None))
        bf16 = median_seconds(_probe_step(torch.bfloat16))
    finally:
        torch.set_num_threads(threads)
    return fp32 / bf16


def _host_key() -> str:
    flags = ""
    try:
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        pass
    blob = f"{CACHE_VERSION}|{platform.processor()}|{platform.machine()}|{flags}|{torch.__version__}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cpu_auto() -> str:
    """bf16 on a CPU with native bf16 that the probe finds faster; cached per host and torch version."""
    if not native_bf16("cpu"):
        return "fp32"
    if os.environ.get(FORCE_ENV) == "1":
        return "bf16"
    path = CACHE_DIR / f"precision-{_host_key()}.json"
    try:
        return json.loads(path.read_text())["auto"]
    except (OSError, ValueError, KeyError):
        pass
    speedup, finite = cpu_bf16_speedup(), cpu_bf16_is_finite()
    choice = "bf16" if speedup >= MIN_SPEEDUP and finite else "fp32"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"auto": choice, "bf16_speedup": round(speedup, 3), "bf16_finite": finite}))
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs the probe again
    return choice


def resolve(requested: str, device: torch.device | str) -> str:
    """The concrete precision (``fp32`` or ``bf16``) that ``requested`` means on ``device``."""
    kind = torch.device(device).type
    if requested == "fp32":
        return "fp32"
    if requested == "bf16":
        if not native_bf16(kind):
            _warn_emulated(kind)
        elif kind == "cpu" and not cpu_bf16_is_finite():
            _warn_once("cpu-nonfinite", "precision bf16 was requested, but this CPU's bf16 convolutions gave "
                       "non-finite values in sslbench's self-test (a torch/oneDNN defect on 1 x 1 inputs); "
                       "use precision: auto or fp32.")
        return "bf16"
    if kind == "cuda":
        return "bf16" if native_bf16("cuda") else "fp32"
    return _cpu_auto()


def _warn_emulated(kind: str) -> None:
    detail = ""
    if kind == "cpu" and kind not in _warned:
        detail = f" (measured here: {1 / cpu_bf16_speedup():.1f}x the time of fp32 on a small conv step)"
    _warn_once(kind, f"precision bf16 was requested, but this {kind} has no native bf16, so it is "
                     f"emulated and slower{detail}; use precision: auto or fp32.")


def _warn_once(key: str, message: str) -> None:
    if key in _warned:
        return
    _warned.add(key)
    print(f"sslbench: warning: {message}", file=sys.stderr)


def autocast_for(device: torch.device | str, precision: str):
    """The autocast context of a resolved precision (a no-op for fp32)."""
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return nullcontext()
