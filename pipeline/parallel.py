"""Independent runs (seeds, backbones) side by side on a multi-core CPU.

Small convolutions keep two threads of one process waiting on each other; two processes
of one thread each do not. Measured on the 2-core machine, the ``tiny`` suite's two
seeds took 65.7 s one after the other (2 threads) and 39.9 s side by side (SimCLR),
178 s and 106 s (DINO). Each run is the same computation either way; the thread count
is not part of a run's identity.

Workers are forked where that is safe (CPU only, one thread each: a forked child that
starts an OpenMP team of its own can hang under GNU OpenMP) and spawned otherwise. Forking
saves each worker's import of torch: a pretraining stage of the ``pixels`` baseline took
2.9 s instead of 5.8 s, 3 s off each of the default run's 42 stages.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import torch

from bench.errors import SSLBenchError


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0))


def job_plan(requested: int, runs: int, device: str) -> tuple[int, int]:
    """(processes, torch threads per process) for ``runs`` independent runs.

    ``requested`` 0 means one process per core (at most one per run) on a CPU and a
    single process on a GPU; the cores are shared out evenly between processes.
    """
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda and not requested:
        return 1, 0
    cores = cpu_cores()
    jobs = max(1, min(requested or cores, runs, cores))
    return jobs, (max(1, cores // jobs) if jobs > 1 else 0)


def start_method(threads: int) -> str:
    """'fork' for one-thread CPU workers (no torch import in each child), else 'spawn'."""
    return "fork" if threads <= 1 and not torch.cuda.is_available() else "spawn"


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def run_each(fn: Callable, items: Sequence, jobs: int, threads: int) -> list:
    """``[fn(item) for item in items]``, in ``jobs`` processes when ``jobs`` > 1.

    ``fn`` must be a module-level function. Ctrl-C or SIGTERM here sends SIGTERM to every
    worker, which checkpoints its run and stops (a re-run resumes); a worker's error is
    raised here, and a worker that dies (killed, or unable to start) is an error, not a hang.
    """
    if jobs <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    context = multiprocessing.get_context(start_method(threads))
    try:
        with ProcessPoolExecutor(jobs, context, initializer=_init_worker, initargs=(threads,)) as pool:
            futures = [pool.submit(fn, item) for item in items]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for process in list(pool._processes.values()):  # no public terminate before 3.14
                    process.terminate()  # SIGTERM: each worker's run saves a checkpoint
                raise
    except BrokenProcessPool as error:
        raise SSLBenchError("a worker process died before its run finished; finished runs are "
                            "kept and a re-run resumes the others.") from error
    finally:
        signal.signal(signal.SIGTERM, previous)
