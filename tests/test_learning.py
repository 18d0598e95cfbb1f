"""Learning, not just running: losses fall on real data; SSL beats the random-init backbone (slow)."""

import json
from dataclasses import replace

import pytest

from bench.config import Params, load_suite
from pipeline.stages import evaluate, prepare, pretrain
from tests.conftest import needs_fmnist


def _short_suite(steps: int):
    """The smoke suite, longer, with the tiny suite's shared optimizer (SGD lr 0.3)."""
    suite = load_suite("smoke")
    return replace(suite, budget=replace(suite.budget, value=64 * steps), optimizer=load_suite("tiny").optimizer,
                   train=replace(suite.train, log_every=5, checkpoint_every=1000))


# MoCo's loss rises while its queue fills with real (harder) keys: use a queue that is full
# (4 batches) before the first logged loss, so the comparison measures learning.
OVERRIDES = {"mocov2": {"queue_length": 256, "scale_to_dataset": False, "momentum": 0.99}}


@needs_fmnist
@pytest.mark.parametrize("method", ["simclr", "mocov2", "byol", "supervised"])
def test_loss_falls_on_fashion_mnist(workdir, method):
    suite = _short_suite(40)
    params = Params(suite="smoke", methods={method: OVERRIDES.get(method, {})})
    record = pretrain(suite, params, method, progress_bar=False)[0]
    assert record["status"] == "complete"
    lines = [json.loads(ln) for ln in (workdir / "runs/smoke" / method / "seed0/metrics.jsonl").open()]
    first, last = lines[0]["loss"], sum(ln["loss"] for ln in lines[-2:]) / 2
    assert last < first, f"{method}: loss {first:.3f} -> {last:.3f}"


@pytest.mark.slow
@needs_fmnist
def test_ssl_beats_random_init_on_tiny(workdir):
    suite = load_suite("tiny")
    methods = ["random", "simclr", "mocov2", "byol"]
    params = Params(suite="tiny", seeds=[0], methods={m: {} for m in methods})
    prepare(suite)  # the label splits the semi-supervised protocol reads
    scores = {}
    for m in methods:
        pretrain(suite, params, m, progress_bar=False)
        scores[m] = {r["protocol"]: r["value"] for r in evaluate(suite, params, m)}
    for m in methods[1:]:
        for protocol in ("knn_k20", "linear"):
            assert scores[m][protocol] > scores["random"][protocol], (m, protocol, scores)
