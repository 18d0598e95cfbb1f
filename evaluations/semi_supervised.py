"""Semi-supervised evaluation: fine-tune the whole network on 1 % / 10 % of the labels.

Protocol (the SwAV / Barlow Twins / VICReg recipe family, ``results/reference/protocols.md``):
the pretrained encoder (for SimCLR v2 the backbone plus its first projection layer,
``finetune_encoder()``) and a new linear head are trained together on the fixed,
class-balanced split written by ``sslbench prepare`` (``data/<suite>/splits``), with
crop + flip augmentation, SGD with Nesterov momentum 0.9, no weight decay, separate
learning rates for encoder and head (scaled by batch/256), cosine schedule. Batch norm
runs in training mode while fine-tuning. The FINAL epoch's test top-1 (top-5 above 10
classes) is reported, never the max. The recipe is the suite's (``eval.semi``) and the
same for every method and for the ``random`` and ``supervised`` baselines.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from bench.precision import autocast_for
from bench.views import ViewGenerator, ViewSpec, recipe
from evaluations.linear import topk_accuracy


def finetune(encoder: torch.nn.Module, feature_dim: int, train_images: torch.Tensor, train_labels: torch.Tensor,
             test_images: torch.Tensor, test_labels: torch.Tensor, num_classes: int, mean, std, resolution: int,
             epochs: int, cfg, device: torch.device, seed: int = 0, autocast=None) -> dict[str, float]:
    """Fine-tune a copy of ``encoder`` + a linear head; final-epoch test accuracy in %."""
    gen = torch.Generator().manual_seed(seed)
    net = copy.deepcopy(encoder).to(device).train()
    head = torch.nn.Linear(feature_dim, num_classes).to(device)
    torch.nn.init.normal_(head.weight, std=0.01, generator=gen)
    torch.nn.init.zeros_(head.bias)
    scale = cfg.batch_size / 256
    groups = [{"params": list(net.parameters()), "base_lr": cfg.lr_backbone * scale},
              {"params": list(head.parameters()), "base_lr": cfg.lr_head * scale}]
    opt = torch.optim.SGD(groups, lr=0.0, momentum=cfg.momentum, nesterov=True, weight_decay=0.0)
    views = ViewGenerator(ViewSpec((recipe("supervised", resolution).crops[0],)), mean, std, device)
    view_gen = torch.Generator(device=device).manual_seed(seed)
    steps_per_epoch = math.ceil(len(train_images) / cfg.batch_size)
    total, step = epochs * steps_per_epoch, 0
    for _ in range(epochs):
        perm = torch.randperm(len(train_images), generator=gen)
        for start in range(0, len(train_images), cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            factor = 0.5 * (1 + math.cos(math.pi * step / total))
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * factor
            x = views(train_images[idx], view_gen)[0]
            with autocast or autocast_for(device, "fp32"):
                logits = head(net(x))
            loss = F.cross_entropy(logits.float(), train_labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    net.eval()
    logits = []
    with torch.inference_mode():
        for start in range(0, len(test_images), 1024):
            x = views.plain(test_images[start : start + 1024].to(device), resolution)
            logits.append(head(net(x)).float().cpu())
    logits = torch.cat(logits)
    out = {"top1": topk_accuracy(logits, test_labels, 1)}
    if num_classes > 10:
        out["top5"] = topk_accuracy(logits, test_labels, 5)
    return out
