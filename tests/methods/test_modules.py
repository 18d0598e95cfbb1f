"""Invariants of the shared building blocks: queue FIFO, EMA, scaling rules, per-view BN."""

import math

import torch
from torch import nn

from methods.base import Context
from methods.modules import (
    FeatureQueue,
    MemoryBank,
    PartitionEstimate,
    cosine_increase,
    ema_update,
    frozen_copy,
    patch_grid,
    scale_length,
    scale_momentum,
)


def test_queue_is_fifo_and_wraps_around():
    q = FeatureQueue(length=5, dim=2)
    batches = [torch.full((2, 2), float(i)) for i in range(1, 5)]  # 8 keys into 5 slots
    for b in batches:
        q.push(b)
    # slots in order of insertion: 1,1,2,2,3,3,4,4 -> the 5 newest are 2,3,3,4,4 at ring positions
    assert q.ptr.item() == 8 % 5
    assert sorted(q.keys[:, 0].tolist()) == [2.0, 3.0, 3.0, 4.0, 4.0]
    assert q.keys[2, 0].item() == 4.0  # slot 2 was written last (key 8 -> position 7 % 5)


def test_ema_update_averages_parameters_and_leaves_buffers():
    """The authors' EMA (DINO, MoCo, BYOL) covers parameters only: p_t = m p_t + (1 - m) p_s;
    the target's BN statistics come from its own forward passes."""
    online = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    target = frozen_copy(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
        online[1].running_mean.fill_(7.0)
        target[1].running_var.fill_(3.0)
    before = [p.clone() for p in target.parameters()]
    buffers = {k: v.clone() for k, v in target.named_buffers()}
    m = 0.9
    ema_update(target, online, m)
    for b, t, o in zip(before, target.parameters(), online.parameters()):
        assert torch.allclose(t, m * b + (1 - m) * o, rtol=1e-6, atol=0)
    for k, v in target.named_buffers():
        assert torch.equal(v, buffers[k]), k
    assert all(not p.requires_grad for p in target.parameters())


def test_cosine_increase_endpoints():
    assert math.isclose(cosine_increase(0.99, 0.0), 0.99)
    assert math.isclose(cosine_increase(0.99, 1.0), 1.0)
    assert math.isclose(cosine_increase(0.99, 0.5), 0.995)


def _ctx(batch, dataset, steps=0, cap=1.0):
    return Context(dataset, 10, batch, steps, 28, 1, cap)


def test_scaling_keeps_fractions_of_the_dataset():
    # MoCo: m=0.999 at batch 256 averages 256k images = 0.1998 ImageNet epochs
    m = scale_momentum(0.999, 256, _ctx(256, 60000))
    assert math.isclose(256 / (1 - m), 256 / 0.001 * 60000 / 1_281_167, rel_tol=1e-9)
    assert math.isclose(scale_momentum(0.999, 256, _ctx(256, 1_281_167)), 0.999)
    assert scale_length(65536, 60000, 256) == 3072
    assert scale_momentum(0.0, 256, _ctx(256, 60000)) == 0.0


def test_ema_horizon_cap_bounds_the_horizon_by_a_share_of_the_run():
    """BYOL's 0.996 at batch 4096 is ~0.8 ImageNet epochs: 125 steps of 64 on 10k images; capped at 5 %
    of a 320-step run it spans 16 steps (m = 1 - 1/16); a cap above the horizon changes nothing."""
    uncapped = scale_momentum(0.996, 4096, _ctx(64, 10000, 320))
    assert math.isclose(1 / (1 - uncapped), 4096 / 0.004 * 10000 / 1_281_167 / 64, rel_tol=1e-9)
    assert math.isclose(scale_momentum(0.996, 4096, _ctx(64, 10000, 320, cap=0.05)), 1 - 1 / 16)
    assert scale_momentum(0.996, 4096, _ctx(64, 10000, 320, cap=0.9)) == uncapped


def test_per_view_equals_separate_calls():
    """One batched pass with per-view BN = one call per view: outputs, gradients and BN running
    statistics (the authors' BYOL / SimSiam / Barlow Twins / VICReg run the views separately)."""
    import copy

    from methods.modules import per_view

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 16), torch.nn.BatchNorm1d(16))
    v1, v2 = torch.randn(6, 3, 10, 10), torch.randn(6, 3, 10, 10)
    separate, batched = copy.deepcopy(net), copy.deepcopy(net)
    a1, a2 = separate(v1), separate(v2)
    b1, b2 = per_view(batched, v1, v2)
    torch.testing.assert_close((b1, b2), (a1, a2), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(copy.deepcopy(net)(torch.cat([v1, v2]))[:6], a1, atol=1e-3)  # not one BN batch
    ((a1 * a2).sum()).backward()
    ((b1 * b2).sum()).backward()
    for pa, pb in zip(separate.parameters(), batched.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, atol=1e-4, rtol=1e-4)
    for ba, bb in zip(separate.buffers(), batched.buffers()):
        torch.testing.assert_close(bb.float(), ba.float(), atol=1e-6, rtol=1e-5)
    assert "forward" not in vars(batched[1])  # the BN layers are restored
    c1, c2 = per_view(batched, v1, torch.randn(4, 3, 10, 10))  # unequal shapes: one call each
    assert (len(c1), len(c2)) == (6, 4)


def test_memory_bank_update_is_momentum_then_renormalised():
    bank = MemoryBank(size=4, dim=2, momentum=0.5)
    bank.features.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
    bank.update(torch.tensor([0, 3]), torch.tensor([[0.0, 1.0], [0.6, 0.8]]))
    h = 1 / math.sqrt(2)
    expected_3 = [0.3, 0.9]
    norm = math.hypot(*expected_3)
    assert torch.allclose(bank.features[0], torch.tensor([h, h]), atol=1e-6)
    assert torch.allclose(bank.features[3], torch.tensor([0.3 / norm, 0.9 / norm]), atol=1e-6)
    assert torch.equal(bank.features[1], torch.tensor([0.0, 1.0]))  # untouched entries stay
    assert torch.allclose(bank.features.norm(dim=1), torch.ones(4))


def test_memory_bank_scores_put_the_positive_first():
    bank = MemoryBank(size=3, dim=2)
    bank.features.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    q = torch.tensor([[0.6, 0.8]])
    s = bank.scores(q, torch.tensor([1]), torch.tensor([[0, 2]]))
    assert torch.allclose(s, torch.tensor([[0.8, 0.6, -0.6]]))


def test_partition_estimate_is_taken_once_from_the_first_batch():
    z = PartitionEstimate(dataset_size=100)
    first = torch.tensor([[1.0, 3.0], [2.0, 2.0]])
    out = z(first)
    assert math.isclose(z.z.item(), 100 * 2.0)  # n * mean(exp scores)
    assert torch.allclose(out, first / 200)
    z(torch.full((2, 2), 50.0))
    assert math.isclose(z.z.item(), 200.0)  # fixed afterwards
    state = z.state_dict()
    assert "z" in state  # restored with a checkpoint


def test_patch_grid_shapes_and_positions():
    x = torch.arange(28 * 28, dtype=torch.float).view(1, 1, 28, 28).expand(2, 1, 28, 28)
    grid = patch_grid(x, patch=8, stride=4)
    assert grid.shape == (2, 6, 6, 1, 8, 8)
    assert torch.equal(grid[0, 2, 3, 0], x[0, 0, 8:16, 12:20])
    assert torch.equal(grid[1, 5, 5, 0], x[1, 0, 20:28, 20:28])


def test_multicrop_forward_runs_the_head_once_on_all_crops():
    from methods.modules import multicrop_forward

    backbone = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    head = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6))
    calls = {"backbone": [], "head": []}
    backbone.register_forward_hook(lambda m, i, o: calls["backbone"].append(tuple(i[0].shape)))
    head.register_forward_hook(lambda m, i, o: calls["head"].append(tuple(i[0].shape)))
    crops = [torch.randn(5, 1, 8, 8) for _ in range(2)] + [torch.randn(5, 1, 4, 4) for _ in range(3)]
    out = multicrop_forward(backbone, head, crops)
    assert calls["backbone"] == [(10, 1, 8, 8), (15, 1, 4, 4)]
    assert calls["head"] == [(25, 4)]
    assert len(out) == 5 and all(o.shape == (5, 6) for o in out)
    with torch.no_grad():
        expected = head(torch.cat([backbone(torch.cat(crops[:2])), backbone(torch.cat(crops[2:]))]))
    assert torch.allclose(torch.cat(out), expected)
