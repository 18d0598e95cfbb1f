"""Ray: connect or start loopback-only, and data-parallel pretraining as a Ray Train ``TorchTrainer``."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def ray_init(num_cpus: int | None = None) -> None:
    """``RAY_ADDRESS`` set: join that cluster; else a local Ray bound to 127.0.0.1, no dashboard."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward returns this rank's slice of the summed incoming gradients."""

    @staticmethod
    def forward(ctx, x):
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        grad = torch.stack(grads)
        dist.all_reduce(grad)
        return grad[dist.get_rank()]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0, gradients flowing back to each rank (identity if 1 rank)."""
    if world_size() == 1:
        return x
    return torch.cat(_GatherWithGrad.apply(x), dim=0)


def rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the backward sums the incoming gradients over ranks as well."""

    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """Batch norm over the batch of every worker, differentiable (SyncBN that also runs on CPU/gloo).

    One worker, or eval mode: plain batch norm.
    """

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x):
        if not (self.training and world_size() > 1):
            return super().forward(x)
        channels, dims = x.shape[1], [0, *range(2, x.dim())]
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # half / bf16 statistics in float32
        count = torch.tensor([x.numel() / channels], device=x.device, dtype=xf.dtype)
        stats = _AllReduceSum.apply(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count]))
        n = stats[-1]
        mean = stats[:channels] / n
        var = stats[channels : 2 * channels] / n - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(var.detach() * n / (n - 1), factor)
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_global_bn(module: torch.nn.Module) -> torch.nn.Module:
    """Every BatchNorm1d/2d in ``module`` normalised over all workers' batches
    (torch's SyncBatchNorm on CUDA, ``GlobalBatchNorm`` elsewhere)."""
    if any(p.is_cuda for p in module.parameters()):
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            bn = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                 child.track_running_stats)
            bn.load_state_dict(child.state_dict())
            bn.train(child.training)
            if child.affine:
                bn.weight.requires_grad_(child.weight.requires_grad)
                bn.bias.requires_grad_(child.bias.requires_grad)
            setattr(module, name, bn)
        else:
            convert_global_bn(child)
    return module


def broadcast_state(module: torch.nn.Module) -> None:
    """Every rank starts from rank 0's parameters and buffers (queues, banks, EMA targets)."""
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, 0)


def average_gradients(module: torch.nn.Module) -> None:
    """Mean of each gradient over ranks, in one flat all-reduce (what DDP's buckets do)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world_size()
    for grad, avg in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
        grad.copy_(avg)


def all_finite(loss: torch.Tensor) -> bool:
    """Whether the loss is finite on every rank (all ranks stop together on divergence)."""
    ok = torch.isfinite(loss.detach()).float().reshape(1)
    if world_size() > 1:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())
