"""MoCo v1: MoCo v2's mechanism with the v1 recipe."""

from methods.registry import get_method, resolve_hparams


def test_mocov1_is_mocov2_with_the_v1_recipe():
    from methods.mocov2 import MomentumContrast

    cls = get_method("mocov1")
    hp = resolve_hparams("mocov1", {})
    assert issubclass(cls, MomentumContrast) and cls.view_recipe == "mocov1"
    assert (hp.temperature, hp.mlp_head, hp.momentum, hp.queue_length) == (0.07, False, 0.999, 65536)
