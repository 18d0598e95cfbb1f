"""Each loss against a value computed by hand (plain Python math on tiny tensors)."""

import math

import torch

from methods.losses import (
    barlow_twins_loss,
    byol_regression,
    cpc_info_nce,
    dino_loss,
    every_other_crop,
    global_local_info_nce,
    in_batch_info_nce,
    info_nce,
    jsd_mi_loss,
    nce_loss,
    negative_cosine,
    nt_xent,
    soft_cross_entropy,
    softmax_embedding_loss,
    swapped_prediction,
    symmetric_negative_cosine,
    tanh_clip,
    vicreg_loss,
    vicreg_terms,
)
from tests.methods.helpers import _cos, _dot, _lse, _softmax


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


def test_nce_loss_matches_hand_computation():
    probs = [[0.5, 0.01, 0.2], [0.05, 0.3, 0.001]]  # column 0: positive; K = 2 noise samples
    n_data = 10
    noise = 2 / n_data
    total = 0.0
    for row in probs:
        total += -math.log(row[0] / (row[0] + noise))
        total += -sum(math.log(noise / (p + noise)) for p in row[1:])
    assert math.isclose(nce_loss(torch.tensor(probs), n_data).item(), total / 2, rel_tol=1e-6)


def test_softmax_embedding_loss_matches_hand_computation():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[0.8, 0.6], [0.6, 0.8]])
    t = 0.5
    views = torch.cat([z1, z2]).tolist()  # already unit length
    n = 2
    total = 0.0
    for a in range(2 * n):
        others = [k for k in range(2 * n) if k != a]
        denom = sum(math.exp(_dot(views[k], views[a]) / t) for k in others)
        prob = {k: math.exp(_dot(views[k], views[a]) / t) / denom for k in others}
        pair = (a + n) % (2 * n)
        total += -math.log(prob[pair]) - sum(math.log(1 - prob[k]) for k in others if k != pair)
    assert math.isclose(softmax_embedding_loss(z1, z2, t).item(), total / (2 * n), rel_tol=1e-5)


def test_softmax_embedding_loss_prefers_matching_pairs():
    z = torch.eye(4)
    assert softmax_embedding_loss(z, z, 0.1) < softmax_embedding_loss(z, z.roll(1, 0), 0.1)


def test_jsd_mi_loss_matches_hand_computation():
    pos = [2.0, -0.5]
    neg = [0.3, -1.0, 1.5]
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    e_pos = sum(math.log(2) - sp(-p) for p in pos) / 2
    e_neg = sum(sp(q) - math.log(2) for q in neg) / 3
    got = jsd_mi_loss(torch.tensor(pos), torch.tensor(neg)).item()
    assert math.isclose(got, e_neg - e_pos, rel_tol=1e-6)
    assert jsd_mi_loss(torch.zeros(3), torch.zeros(5)).abs().item() < 1e-7


def test_global_local_info_nce_matches_hand_computation():
    s = torch.tensor([[[1.0, 0.5], [0.2, -0.3]],
                      [[0.0, 0.7], [2.0, -1.0]]])  # [i, j, p]
    n, p = 2, 2
    total = 0.0
    for i in range(n):
        negs = [s[i, j, q].item() for j in range(n) if j != i for q in range(p)]
        for pos_p in range(p):
            pos = s[i, i, pos_p].item()
            total += -pos + _lse([pos, *negs])
    assert math.isclose(global_local_info_nce(s).item(), total / (n * p), rel_tol=1e-6)


def test_cpc_info_nce_matches_hand_computation():
    pred = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    cand = torch.tensor([[1.0, 1.0], [0.0, 2.0], [-1.0, 0.0]])
    targets = torch.tensor([2, 1])
    total = 0.0
    for row, t in zip(pred.tolist(), targets.tolist()):
        logits = [_dot(row, c) for c in cand.tolist()]
        total += -logits[t] + _lse(logits)
    assert math.isclose(cpc_info_nce(pred, cand, targets).item(), total / 2, rel_tol=1e-6)


def test_symmetric_negative_cosine_matches_hand_computation():
    p1, p2 = [[1.0, 0.0], [1.0, 1.0]], [[0.0, 2.0], [3.0, 4.0]]
    z1, z2 = [[1.0, 1.0], [0.0, 1.0]], [[2.0, 0.0], [-1.0, 0.0]]
    d12 = -sum(_cos(a, b) for a, b in zip(p1, z2)) / 2
    d21 = -sum(_cos(a, b) for a, b in zip(p2, z1)) / 2
    got = symmetric_negative_cosine(*(torch.tensor(t) for t in (p1, p2, z1, z2)))
    assert math.isclose(got.item(), (d12 + d21) / 2, rel_tol=1e-6)


def test_in_batch_info_nce_matches_hand_computation_and_detaches_keys():
    q = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]
    k = [[0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]]
    t = 0.2
    total = 0.0
    for i, qi in enumerate(q):
        logits = [_dot(qi, kj) / t for kj in k]
        total += -logits[i] + _lse(logits)
    expected = total / 3 * 2 * t
    qt, kt = torch.tensor(q, requires_grad=True), torch.tensor(k, requires_grad=True)
    got = in_batch_info_nce(qt, kt, t)
    assert math.isclose(got.item(), expected, rel_tol=1e-6)
    got.backward()
    assert qt.grad is not None and kt.grad is None


def _standardize(col):
    n = len(col)
    mu = sum(col) / n
    var = sum((c - mu) ** 2 for c in col) / n
    return [(c - mu) / math.sqrt(var + 1e-5) for c in col]


def test_barlow_twins_loss_matches_hand_computation():
    z1 = [[1.0, 2.0], [3.0, -1.0], [0.0, 0.5]]
    z2 = [[2.0, 1.0], [1.0, 0.0], [-1.0, 3.0]]
    lambd = 0.3
    a = [_standardize([r[j] for r in z1]) for j in range(2)]  # per-dimension columns
    b = [_standardize([r[j] for r in z2]) for j in range(2)]
    c = [[_dot(a[i], b[j]) / 3 for j in range(2)] for i in range(2)]
    expected = (1 - c[0][0]) ** 2 + (1 - c[1][1]) ** 2 + lambd * (c[0][1] ** 2 + c[1][0] ** 2)
    got = barlow_twins_loss(torch.tensor(z1), torch.tensor(z2), lambd)
    assert math.isclose(got.item(), expected, rel_tol=1e-5)


def test_barlow_twins_loss_is_zero_for_identical_decorrelated_views():
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert barlow_twins_loss(z, z, 5e-3).item() < 1e-4


def test_vicreg_terms_match_hand_computation():
    z1 = [[1.0, 2.0], [3.0, -1.0], [0.0, 0.5]]
    z2 = [[2.0, 1.0], [1.0, 0.0], [-1.0, 3.0]]
    n, d = 3, 2
    inv = sum((x - y) ** 2 for r1, r2 in zip(z1, z2) for x, y in zip(r1, r2)) / (n * d)
    var = cov = 0.0
    for z in (z1, z2):
        cols = [[r[j] for r in z] for j in range(d)]
        means = [sum(c) / n for c in cols]
        centred = [[x - m for x in c] for c, m in zip(cols, means)]
        variances = [sum(x * x for x in c) / (n - 1) for c in centred]
        var += sum(max(0.0, 1 - math.sqrt(v + 1e-4)) for v in variances) / d / 2
        c01 = _dot(centred[0], centred[1]) / (n - 1)
        cov += 2 * c01**2 / d
    terms = vicreg_terms(torch.tensor(z1), torch.tensor(z2))
    assert math.isclose(terms["invariance"].item(), inv, rel_tol=1e-6)
    assert math.isclose(terms["variance"].item(), var, rel_tol=1e-5, abs_tol=1e-7)
    assert math.isclose(terms["covariance"].item(), cov, rel_tol=1e-5)
    total, _ = vicreg_loss(torch.tensor(z1), torch.tensor(z2))
    assert math.isclose(total.item(), 25 * inv + 25 * var + cov, rel_tol=1e-5)


def test_vicreg_variance_hinge_is_zero_for_spread_and_one_for_constant_embeddings():
    spread = torch.tensor([[3.0, -3.0], [-3.0, 3.0], [3.0, 3.0], [-3.0, -3.0]])
    const = torch.ones(4, 2)
    assert vicreg_terms(spread, spread)["variance"].item() == 0.0
    assert math.isclose(vicreg_terms(const, const)["variance"].item(), 1 - math.sqrt(1e-4), rel_tol=1e-5)


def test_soft_cross_entropy_and_swapped_prediction_match_hand_computation():
    q0, q1 = [[0.7, 0.3]], [[0.2, 0.8]]
    s = [[[1.0, 0.0]], [[0.5, 1.5]], [[2.0, -1.0]]]  # 2 global crops + 1 small, batch 1, K = 2
    t = 0.5

    def ce(q, logits):
        p = _softmax([v / t for v in logits])
        return -sum(a * math.log(b) for a, b in zip(q, p))

    assert math.isclose(soft_cross_entropy(torch.tensor(q0), torch.tensor(s[0]), t).item(),
                        ce(q0[0], s[0][0]), rel_tol=1e-6)
    # codes of crop 0 predicted by crops 1, 2; codes of crop 1 by crops 0, 2
    expected = (ce(q0[0], s[1][0]) + ce(q0[0], s[2][0]) + ce(q1[0], s[0][0]) + ce(q1[0], s[2][0])) / 4
    got = swapped_prediction([torch.tensor(x) for x in s], {0: torch.tensor(q0), 1: torch.tensor(q1)}, t)
    assert math.isclose(got.item(), expected, rel_tol=1e-6)


def test_dino_loss_matches_hand_computation():
    teacher = [[[1.0, 0.0, -1.0]], [[0.0, 2.0, 0.0]]]
    student = [[[0.5, 0.5, 0.0]], [[1.0, -1.0, 2.0]], [[0.0, 0.0, 3.0]]]
    center = [0.1, -0.2, 0.3]
    ts, tt = 0.1, 0.04
    targets = [_softmax([(v - c) / tt for v, c in zip(t[0], center)]) for t in teacher]
    total, terms = 0.0, 0
    for i, q in enumerate(targets):
        for v, s in enumerate(student):
            if v == i:
                continue
            p = _softmax([x / ts for x in s[0]])
            total += -sum(a * math.log(b) for a, b in zip(q, p))
            terms += 1
    got = dino_loss([torch.tensor(s) for s in student], [torch.tensor(t) for t in teacher],
                    torch.tensor([center]), ts, tt)
    assert terms == 4
    assert math.isclose(got.item(), total / terms, rel_tol=1e-5)
