"""MoCo v2 (and v1): shuffle-BN's chunks at the authors' 8-GPU batch split."""

import pytest
import torch

from tests.methods.helpers import _batch, _build


@pytest.mark.parametrize("name", ["mocov2", "mocov1"])
def test_moco_shuffle_bn_chunks_at_batch_64(name):
    """Shuffle-BN keeps MoCo's 8 groups (GPUs): at batch 64 a key's BN statistics come from a
    random 8 of the batch, the query's from all 64; the docstring states the same. The one-pass
    grouped BN equals 8 passes of one chunk each, running statistics included."""
    import copy

    import methods.mocov2

    method = _build(name, batch=64, dataset=256)
    reference = copy.deepcopy(method.key)
    x = _batch(method, n=64).views[1]
    keys = method.encode_keys(x, torch.Generator().manual_seed(3))
    with torch.no_grad():
        perm = torch.randperm(64, generator=torch.Generator().manual_seed(3))
        chunked = torch.cat([reference(chunk) for chunk in x[perm].chunk(8)])
        expected = torch.nn.functional.normalize(chunked[torch.argsort(perm)], dim=1)
        whole = torch.nn.functional.normalize(copy.deepcopy(reference)(x), dim=1)
    assert torch.allclose(keys, expected, atol=1e-5)
    assert not torch.allclose(keys, whole, atol=1e-3)  # the groups' statistics, not the batch's
    for got, want in zip(method.key.buffers(), reference.buffers()):
        assert torch.allclose(got.float(), want.float(), atol=1e-5)
    assert "8 chunks of 8 at batch 64" in methods.mocov2.__doc__
