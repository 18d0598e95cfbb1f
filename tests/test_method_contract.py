"""The method contract (methods/base.py): state a step hands to ``after_step`` travels as a value,
one registration mechanism, and what ``Context`` tells a method about the dataset."""

import inspect

import pytest

from methods.registry import get_method
from tests.test_fidelity_b import _batch, _build, _step

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
