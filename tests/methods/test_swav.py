"""SwAV: Sinkhorn marginals and one iteration by hand, the frozen prototypes, the prototype count."""

import math
from dataclasses import replace

import torch

from methods.base import Context
from methods.registry import get_method, resolve_hparams
from methods.swav import sinkhorn
from pipeline.engine import RunSpec, build_method, train
from tests.methods.helpers import _backbone
from tests.pipeline.test_engine import _suite, _toy_dataset


def test_sinkhorn_marginals():
    g = torch.Generator().manual_seed(0)
    scores = torch.nn.functional.normalize(torch.randn(16, 5, generator=g), dim=1)
    b, k = scores.shape
    q = sinkhorn(scores, epsilon=0.05, iterations=3)
    assert q.shape == (b, k) and torch.all(q >= 0)
    assert torch.allclose(q.sum(dim=1), torch.ones(b), atol=1e-5)  # each sample: a distribution
    assert torch.allclose(q.sum(dim=0), torch.full((k,), b / k), rtol=0.5)  # about equal partition
    exact = sinkhorn(scores, epsilon=0.5, iterations=200)
    assert torch.allclose(exact.sum(dim=0), torch.full((k,), b / k), rtol=1e-3)  # converged: exact
    assert torch.allclose(exact.sum(dim=1), torch.ones(b), atol=1e-5)


def test_sinkhorn_one_iteration_matches_hand_computation():
    scores = [[0.2, -0.1], [0.0, 0.3], [0.5, 0.4]]
    eps = 0.5
    q = [[math.exp(scores[b][k] / eps) for b in range(3)] for k in range(2)]  # [K, B]
    total = sum(map(sum, q))
    q = [[v / total for v in row] for row in q]
    q = [[v / sum(row) / 2 for v in row] for row in q]  # prototypes -> 1/K
    cols = [sum(q[k][b] for k in range(2)) for b in range(3)]
    q = [[q[k][b] / cols[b] / 3 for b in range(3)] for k in range(2)]  # samples -> 1/B
    expected = [[q[k][b] * 3 for k in range(2)] for b in range(3)]
    got = sinkhorn(torch.tensor(scores), eps, 1)
    assert torch.allclose(got, torch.tensor(expected), atol=1e-6)


def test_swav_prototypes_frozen_at_the_start(tmp_path):
    suite, ds = _suite(precision="fp32"), _toy_dataset()
    suite = replace(suite, budget=replace(suite.budget, value=32 * 2))
    hp = resolve_hparams("swav", {"freeze_prototypes": 1.0})
    spec = RunSpec(suite, "swav", 0, hp, tmp_path)
    init = build_method(spec, ds, 2).state_dict()
    train(spec, ds, progress_bar=False)
    final = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    assert torch.allclose(final["prototypes.weight"], init["prototypes.weight"], atol=1e-6)
    assert not torch.equal(final["projector.0.weight"], init["projector.0.weight"])
    norms = final["prototypes.weight"].norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_swav_prototypes_keep_the_papers_ratio_to_the_sinkhorn_batch():
    """The paper: batch 256 + queue 3840 = 4096 features share K = 3000 prototypes; the suite keeps
    K / (batch + queue) = 3000 / 4096."""
    tiny = get_method("swav")(_backbone(), resolve_hparams("swav", {}), Context(10000, 10, 64, 320, 28, 1))
    assert len(tiny.queues[0].keys) == 64
    assert tiny.prototypes.weight.shape[0] == round(3000 * (64 + 64) / 4096)
    paper = get_method("swav")(_backbone(), resolve_hparams("swav", {}), Context(1_281_167, 1000, 256, 10, 28, 1))
    assert len(paper.queues[0].keys) == 3840 and paper.prototypes.weight.shape[0] == 3000
    fixed = get_method("swav")(_backbone(), resolve_hparams("swav", {"scale_to_dataset": False}),
                               Context(10000, 10, 64, 320, 28, 1))
    assert fixed.prototypes.weight.shape[0] == 3000
