"""Each loss against a value computed by hand (plain Python math on tiny tensors)."""

import math

import torch

from methods.losses import byol_regression, every_other_crop, info_nce, negative_cosine, nt_xent, tanh_clip


def _lse(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def test_info_nce_matches_hand_computation():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    negs = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, -1.0]])
    t = 0.5
    expected = []
    for qi, ki in zip(q.tolist(), k.tolist()):
        pos = sum(a * b for a, b in zip(qi, ki)) / t
        neg = [sum(a * b for a, b in zip(qi, n)) / t for n in negs.tolist()]
        expected.append(-pos + _lse([pos, *neg]))
    assert math.isclose(info_nce(q, k, negs, t).item(), sum(expected) / 2, rel_tol=1e-6)


def test_nt_xent_matches_hand_computation():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    t = 0.2
    views = [(a / math.hypot(a, b), b / math.hypot(a, b)) for a, b in torch.cat([z1, z2]).tolist()]
    n = 2
    total = 0.0
    for i in range(2 * n):
        pair = (i + n) % (2 * n)
        sims = {j: (views[i][0] * views[j][0] + views[i][1] * views[j][1]) / t for j in range(2 * n) if j != i}
        total += -sims[pair] + _lse(list(sims.values()))
    assert math.isclose(nt_xent(z1, z2, t).item(), total / (2 * n), rel_tol=1e-6)


def test_nt_xent_is_low_for_matching_views_and_high_for_swapped():
    z = torch.eye(4)
    assert nt_xent(z, z, 0.1) < nt_xent(z, z.roll(1, 0), 0.1)


def test_byol_regression_is_two_minus_two_cosine():
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    z = torch.tensor([[0.0, 3.0], [2.0, 2.0]])
    # cosines: 0 and 1 -> losses 2 and 0 -> mean 1
    assert math.isclose(byol_regression(p, z).item(), 1.0, abs_tol=1e-6)


def test_negative_cosine_stops_gradient_on_target():
    p = torch.randn(4, 3, requires_grad=True)
    z = torch.randn(4, 3, requires_grad=True)
    negative_cosine(p, z).backward()
    assert p.grad is not None and z.grad is None


def test_every_other_crop_averages_each_target_over_the_other_crops():
    # crop 0's target is predicted by crops 1 and 2, crop 1's by crops 0 and 2: 4 pairs
    targets = {0: torch.tensor([[1.0, 0.0]]), 1: torch.tensor([[0.25, 0.75]])}
    logits = [torch.tensor([[0.0, 1.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 1.0]])]
    t = 0.5

    def ce(q, s):
        lse = _lse([v / t for v in s])
        return -sum(qi * (si / t - lse) for qi, si in zip(q, s))

    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]
    expected = sum(ce(targets[i][0].tolist(), logits[v][0].tolist()) for i, v in pairs) / len(pairs)
    assert math.isclose(every_other_crop(targets, logits, t).item(), expected, rel_tol=1e-6)


def test_tanh_clip_is_clip_times_tanh_and_off_at_zero():
    s = torch.tensor([-30.0, 0.5, 12.0])
    expected = [10 * math.tanh(v / 10) for v in s.tolist()]
    assert torch.allclose(tanh_clip(s, 10.0), torch.tensor(expected))
    assert torch.equal(tanh_clip(s, 0.0), s)
