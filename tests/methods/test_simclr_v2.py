"""SimCLR v2: fine-tuning starts from the backbone plus the first projection layer."""

import torch

from bench.backbones import BackboneCfg, build_backbone
from methods.base import Context
from methods.registry import get_method, resolve_hparams


def test_simclr_v2_exposes_backbone_plus_first_projection_layer():
    ctx = Context(256, 4, 8, 10, 16, 1)
    backbone = build_backbone(BackboneCfg(width=8, small_stem=True, in_channels=1))
    method = get_method("simclr_v2")(backbone, resolve_hparams("simclr_v2", {}), ctx)
    linears = [m for m in method.projector if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3
    enc = method.finetune_encoder()
    assert enc[0] is backbone and enc[1][0] is linears[0] and len(enc[1]) == 3
    enc.eval()
    assert enc(torch.randn(2, 1, 16, 16)).shape == (2, enc.feature_dim)
