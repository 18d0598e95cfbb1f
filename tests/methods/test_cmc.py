"""CMC: the Lab conversion, the channel-split views and each loss on RGB data."""

import pytest
import torch

from methods.cmc import lab_to_rgb, rgb_to_lab
from methods.registry import method_names, resolve_hparams
from pipeline.engine import RunSpec, train
from tests.methods.helpers import _toy_dataset28, _toy_suite


def test_lab_round_trip_and_reference_values():
    rgb = torch.rand(2, 3, 5, 5)
    assert torch.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-4)
    lab = rgb_to_lab(torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]).view(3, 3, 1, 1))
    assert torch.allclose(lab[0].flatten(), torch.tensor([100.0, 0.0, 0.0]), atol=0.05)  # white
    assert torch.allclose(lab[1].flatten(), torch.tensor([0.0, 0.0, 0.0]), atol=0.05)  # black
    assert torch.allclose(lab[2].flatten(), torch.tensor([53.24, 80.09, 67.20]), atol=0.1)  # sRGB red


@pytest.mark.parametrize("loss", ["nce", "softmax", "batch"])
def test_cmc_runs_on_rgb_with_each_loss(tmp_path, loss):
    if "cmc" not in method_names():
        pytest.skip("cmc not registered")
    hp = resolve_hparams("cmc", {"loss": loss})
    record = train(RunSpec(_toy_suite(steps=2), "cmc", 0, hp, tmp_path), _toy_dataset28(channels=3),
                   progress_bar=False)
    assert record["status"] == "complete"


def test_cmc_views_split_channels():
    cmc = pytest.importorskip("methods.cmc", reason="cmc is not part of this checkout")
    IMAGENET_MEAN, IMAGENET_STD, split_views = cmc.IMAGENET_MEAN, cmc.IMAGENET_STD, cmc.split_views

    gray = torch.randn(2, 1, 8, 8)
    a, b = split_views(gray)
    assert torch.equal(a, gray) and b.shape == (2, 1, 8, 8) and (b > 0).all()
    rgb = torch.rand(2, 3, 8, 8)
    normed = (rgb - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    light, ab = split_views(normed)
    lab = rgb_to_lab(rgb)
    assert light.shape == (2, 3, 8, 8) and ab.shape == (2, 2, 8, 8)
    assert torch.allclose(light[:, 0], (lab[:, 0] - 50) / 50, atol=1e-4)
    assert torch.allclose(ab * 110, lab[:, 1:], atol=1e-3)
