"""Equivariant batch normalisation and capsule-wide (field) dropout."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn

from cathnet.nn.field import FieldType

__all__ = ["EquivariantBatchNorm", "FieldDropout", "convert_sync_batchnorm"]


class _FieldScale(torch.autograd.Function):
    """``x · s`` per channel with ``s = w / sqrt(E_field[x²] + eps)`` from the batch, where
    ``E_field`` averages the squares over batch, space and the components of each field.
    Written out (one reduction and one elementwise pass each way) because autograd's
    generic graph for it costs several full passes and dtype round trips."""

    @staticmethod
    def forward(ctx, x, weight, field_of_channel, field_size, eps, sync):
        dims = (0, *range(2, x.dim()))
        sq = torch.sum(x * x, dims, dtype=torch.float32)
        count = x.numel() / x.shape[1]
        if sync:
            sq = _all_mean(sq)
        q = sq.new_zeros(len(weight)).index_add_(0, field_of_channel, sq) / (field_size * count)
        s = weight.float() * torch.rsqrt(q + eps)
        ctx.save_for_backward(x, weight, field_of_channel, field_size, q, s)
        ctx.eps, ctx.count, ctx.sync = eps, count, sync
        return x * s[field_of_channel].to(x.dtype).view(1, -1, *([1] * (x.dim() - 2))), q

    @staticmethod
    def backward(ctx, grad, _):
        x, weight, field_of_channel, field_size, q, s = ctx.saved_tensors
        dims, shape = (0, *range(2, x.dim())), (1, -1, *([1] * (x.dim() - 2)))
        dot = torch.sum(grad * x, dims, dtype=torch.float32)
        local = dot.new_zeros(len(weight)).index_add_(0, field_of_channel, dot)
        world = dist.get_world_size() if ctx.sync else 1
        d = _all_mean(local) * world if ctx.sync else local  # the statistics saw every process's batch
        k = s / (q + ctx.eps) * d / (ctx.count * world * field_size)
        dx = torch.addcmul(grad * s[field_of_channel].to(grad.dtype).view(shape), x,
                           -k[field_of_channel].to(x.dtype).view(shape))
        dw = (local / torch.sqrt(q + ctx.eps)).to(weight.dtype)  # local: DDP averages parameter gradients
        return dx, dw, None, None, None, None


def _all_mean(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    dist.all_reduce(t)
    return t / dist.get_world_size()


class EquivariantBatchNorm(nn.Module):
    """Batch norm that commutes with rotations; ``in_type = out_type = field_type``.

    Scalars: the usual batch norm (``scalar_bn``, a ``BatchNorm3d``). Fields of order
    l > 0: no mean shift; each field is divided by the square root of its mean squared
    norm per component (``E|f|² / (2l+1)``, batch statistics in training, running ones in
    eval), then scaled by a learned per-field weight. Statistics are fp32 whatever the
    input's dtype (autocast). After :func:`convert_sync_batchnorm` the statistics are
    averaged over all processes.
    """

    def __init__(self, field_type: FieldType, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True):
        super().__init__()
        self.field_type, self.in_type, self.out_type = field_type, field_type, field_type
        self.eps, self.momentum = eps, momentum
        n0 = field_type.mult(0)
        self.scalar_bn = nn.BatchNorm3d(n0, eps=eps, momentum=momentum, affine=affine) if n0 else None
        self.high = field_type.higher()
        self.register_buffer("running_sq", torch.ones(self.high.n_fields))
        self.weight = nn.Parameter(torch.ones(self.high.n_fields)) if affine and self.high.n_fields else None
        sizes = torch.tensor([2 * l + 1 for l in self.high.orders], dtype=torch.long)
        self.register_buffer("field_of_channel", torch.repeat_interleave(torch.arange(len(sizes)), sizes), persistent=False)
        self.register_buffer("field_size", sizes.float(), persistent=False)
        self.synchronised = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.field_type.dim:
            raise ValueError(f"EquivariantBatchNorm expects {self.field_type.dim} channels ({self.field_type}), got {x.shape[1]}")
        n0 = self.field_type.mult(0)
        scalars, high = x.split([n0, self.high.dim], dim=1)
        parts = [self.scalar_bn(scalars)] if self.scalar_bn is not None else []
        if self.high.dim:
            parts.append(self._scale_fields(high))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def _scale_fields(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.weight is not None else torch.ones_like(self.running_sq)
        if self.training:
            sync = self.synchronised and dist.is_initialized()
            out, q = _FieldScale.apply(x, weight, self.field_of_channel, self.field_size, self.eps, sync)
            with torch.no_grad():
                self.running_sq.lerp_(q.to(self.running_sq), self.momentum)
            return out
        s = weight * torch.rsqrt(self.running_sq + self.eps)
        return x * s[self.field_of_channel].to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """For DistributedDataParallel: plain batch norms become ``nn.SyncBatchNorm`` and every
    :class:`EquivariantBatchNorm` averages its l > 0 statistics over the processes."""
    module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for m in module.modules():
        if isinstance(m, EquivariantBatchNorm):
            m.synchronised = True
    return module


class FieldDropout(nn.Module):
    """Capsule-wide dropout: during training zero whole fields (all components, all voxels)
    of each sample with probability ``p`` and rescale the rest by 1/(1-p)."""

    def __init__(self, field_type: FieldType, p: float = 0.1):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.field_type, self.in_type, self.out_type, self.p = field_type, field_type, field_type, p
        sizes = torch.tensor([2 * l + 1 for l in field_type.orders])
        self.register_buffer("field_of_channel", torch.repeat_interleave(torch.arange(len(sizes)), sizes), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape[0], self.field_type.n_fields, device=x.device) >= self.p
        mask = keep[:, self.field_of_channel].to(x.dtype) / (1 - self.p)
        return x * mask.view(*mask.shape, *([1] * (x.dim() - 2)))

    def extra_repr(self) -> str:
        return f"{self.field_type}, p={self.p}"
