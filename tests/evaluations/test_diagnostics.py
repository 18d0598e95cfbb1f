"""The collapse measures the engine logs: a healthy embedding and a collapsed one are told apart."""

import torch

from evaluations.diagnostics import collapse_metrics


def test_collapse_metrics_detect_collapse():
    healthy = collapse_metrics(torch.randn(512, 64))
    collapsed = collapse_metrics(torch.ones(512, 64) + 1e-4 * torch.randn(512, 64))
    assert healthy["embed_std"] > 0.8 * healthy["embed_std_ideal"]
    assert collapsed["embed_std"] < 0.01
    assert healthy["eff_rank"] > 40
