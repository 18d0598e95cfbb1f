"""BYOL: the loss sums its two directions, as the authors' code."""

import pytest
import torch

from tests.methods.helpers import _batch, _build


def test_byol_sums_its_two_directions():
    """BYOL's eq. 2-3: L = L(p1, sg(t2)) + L(p2, sg(t1)), a sum, not a mean."""
    from methods.losses import byol_regression

    method = _build("byol")
    batch = _batch(method)
    loss = method.training_step(batch).loss
    v1, v2 = batch.views
    with torch.no_grad():  # train-mode BN: the same batch gives the same outputs
        p1, p2 = method.predictor(method.online(v1)), method.predictor(method.online(v2))
        t1, t2 = method.target(v1), method.target(v2)
        expected = byol_regression(p1, t2) + byol_regression(p2, t1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
