"""The method contract (methods/base.py): state a step hands to ``after_step`` travels as a value,
one registration mechanism, and what ``Context`` tells a method about the dataset."""

import inspect
import sys
from pathlib import Path

import pytest
import torch

from methods.registry import get_method
from tests.methods.helpers import _batch, _build, _step

# methods whose ``after_step`` consumes what ``training_step`` computed (queues, memory banks)
CARRYING = [
    ("simclr_v2", {"queue_length": 16}),
    ("mocov2", {"queue_length": 16}),
    ("instdisc", {}),
    ("pirl", {}),
    ("swav", {"queue_length": 16, "queue_start": 0.0}),
    ("cmc", {}),
]


@pytest.mark.parametrize("name,overrides", CARRYING)
def test_after_step_state_is_handed_over_as_a_value(name, overrides):
    """No ``self._pending*`` attribute: ``StepOutput.carry`` reaches ``after_step(progress, carry)``."""
    assert "_pending" not in inspect.getsource(inspect.getmodule(get_method(name)))
    method = _build(name, **overrides)
    out = _step(method, _batch(method))
    assert out.carry is not None
    assert not [k for k in vars(method) if k.startswith("_pending")]


def test_a_method_module_registers_itself_with_register_alone(tmp_path, monkeypatch):
    """Adding a method touches one place: a module in the ``methods`` package with ``@register``."""
    import methods
    from methods import registry

    registry.method_names()  # loaded before the patches, so that undoing them leaves a full registry
    (tmp_path / "zz_mymethod.py").write_text(
        "from methods.registry import register\n"
        "from methods.simclr import SimCLR\n\n\n"
        "@register\nclass MyMethod(SimCLR):\n    name = 'zz_mymethod'\n")
    monkeypatch.setattr(methods, "__path__", [*methods.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_LOADED", False)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.delitem(sys.modules, "methods.zz_mymethod", raising=False)
    assert "zz_mymethod" in registry.method_names()
    assert get_method("zz_mymethod").name == "zz_mymethod"
    assert not hasattr(registry, "MODULES")


def test_every_method_module_is_registered():
    from methods import registry

    files = {p.stem for p in Path(registry.__file__).parent.glob("*.py")}
    assert set(registry.method_names()) <= files
    assert files - set(registry.method_names()) == {"__init__", "base", "losses", "modules", "registry"}


def test_cmc_splits_rgb_views_with_the_datasets_statistics():
    """CMC un-normalises with ``Context.mean`` / ``std`` (not ImageNet's) before the Lab split."""
    from bench.backbones import BackboneCfg, build_backbone
    from methods.base import Context
    from methods.cmc import split_views
    from methods.registry import resolve_hparams

    mean, std = (0.2, 0.3, 0.4), (0.5, 0.25, 0.1)
    ctx = Context(64, 4, 8, 10, 16, 3, 1.0, mean, std)
    backbone = build_backbone(BackboneCfg("resnet18", 8, True, in_channels=3))
    method = get_method("cmc")(backbone, resolve_hparams("cmc", {}), ctx)
    assert (method.mean, method.std) == (mean, std)
    seen = []
    method.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    method.embed(x)
    assert torch.allclose(seen[0], split_views(x, mean, std)[0])
    assert not torch.allclose(seen[0], split_views(x)[0])  # ImageNet's statistics split another image


@pytest.mark.parametrize("bank_init", ["network", "random"])
def test_memory_bank_helpers_build_and_fill_one_bank_per_view(bank_init):
    from types import SimpleNamespace

    from methods.base import Context
    from methods.modules import initialise_banks, memory_banks

    hp = SimpleNamespace(proj_dim=4, memory_momentum=0.5, bank_init=bank_init)
    banks, partitions = memory_banks(hp, Context(6, 2, 2, 10, 8, 1), 2)
    assert [b.features.shape for b in banks] == [(6, 4)] * 2 and len(partitions) == 2
    before = [b.features.clone() for b in banks]
    z = torch.eye(4)[:2]
    initialise_banks(hp, [(torch.tensor([1, 3]), None)], lambda x: (z, -z), *banks)
    if bank_init == "random":
        assert all(torch.equal(b.features, f) for b, f in zip(banks, before))
    else:
        assert torch.equal(banks[0].features[[1, 3]], z) and torch.equal(banks[1].features[[1, 3]], -z)
        assert torch.equal(banks[0].features[0], before[0][0])


def test_every_method_has_a_finetune_encoder_defaulting_to_its_encoder():
    from methods.base import Method
    from methods.registry import get_method

    assert get_method("simclr").finetune_encoder is Method.finetune_encoder
    assert get_method("simclr_v2").finetune_encoder is not Method.finetune_encoder
