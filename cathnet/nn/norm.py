"""Equivariant batch normalisation and capsule-wide (field) dropout."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn as nn

from cathnet.nn.field import FieldType

__all__ = ["EquivariantBatchNorm", "FieldDropout", "convert_sync_batchnorm"]


class EquivariantBatchNorm(nn.Module):
    """Batch norm that commutes with rotations.

    Scalars: the usual ``BatchNorm3d``. Fields of order l > 0: no mean shift; each field is
    divided by the square root of its running mean squared norm per component
    (``E|f|² / (2l+1)``), then scaled by a learned per-field weight. After
    :func:`convert_sync_batchnorm` the statistics are averaged over all processes.
    """

    def __init__(self, field_type: FieldType, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True):
        super().__init__()
        self.field_type, self.eps, self.momentum = field_type, eps, momentum
        n0 = field_type.mult(0)
        self.scalar_bn = nn.BatchNorm3d(n0, eps=eps, momentum=momentum, affine=affine) if n0 else None
        n_high = field_type.n_fields - n0
        self.register_buffer("running_sq", torch.ones(n_high))
        self.weight = nn.Parameter(torch.ones(n_high)) if affine and n_high else None
        self.synchronised = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.field_type
        n0 = t.mult(0)
        parts = [self.scalar_bn(x[:, :n0])] if n0 else []
        if n0 == t.n_fields:
            return parts[0]
        high = []  # (B, m_l, 2l+1, ...) views of each order
        for l in range(1, t.lmax + 1):
            if t.mult(l):
                block = x[:, t.slices()[l]]
                high.append(block.reshape(x.shape[0], t.mult(l), 2 * l + 1, *x.shape[2:]))
        if self.training:
            sq = torch.cat([f.pow(2).mean(dim=(0, 2, 3, 4, 5)) for f in high])
            if self.synchronised and dist.is_initialized():  # equal local batches: mean of means
                sq = dist_nn.all_reduce(sq) / dist.get_world_size()
            with torch.no_grad():
                self.running_sq.lerp_(sq.detach(), self.momentum)
        else:
            sq = self.running_sq
        scale = torch.rsqrt(sq + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        k = 0
        for f in high:
            m = f.shape[1]
            parts.append((f * scale[k : k + m].view(1, m, 1, 1, 1, 1)).flatten(1, 2))
            k += m
        return torch.cat(parts, dim=1)


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
        self.field_type, self.p = field_type, p
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
