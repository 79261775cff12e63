"""Equivariant batch normalisation and capsule-wide (field) dropout."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn as nn

from cathnet.nn.field import FieldType

__all__ = ["EquivariantBatchNorm", "FieldDropout", "convert_sync_batchnorm"]


class EquivariantBatchNorm(nn.Module):
    """Batch norm that commutes with rotations; ``in_type = out_type = field_type``.

    Scalars: the usual batch norm (parameters and running statistics in a
    ``BatchNorm3d``, ``scalar_bn``). Fields of order l > 0: no mean shift; each field is
    divided by the square root of its running mean squared norm per component
    (``E|f|² / (2l+1)``), then scaled by a learned per-field weight. Both reduce to one
    per-channel affine map ``x · a + b`` over the whole tensor, computed from fp32
    statistics whatever the input's dtype (autocast). After :func:`convert_sync_batchnorm`
    the statistics are averaged over all processes.
    """

    def __init__(self, field_type: FieldType, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True):
        super().__init__()
        self.field_type, self.in_type, self.out_type = field_type, field_type, field_type
        self.eps, self.momentum = eps, momentum
        n0 = field_type.mult(0)
        self.scalar_bn = nn.BatchNorm3d(n0, eps=eps, momentum=momentum, affine=affine) if n0 else None
        self.high = FieldType([0, *field_type.multiplicities[1:]])
        self.register_buffer("running_sq", torch.ones(self.high.n_fields))
        self.weight = nn.Parameter(torch.ones(self.high.n_fields)) if affine and self.high.n_fields else None
        sizes = torch.tensor([2 * l + 1 for l in self.high.orders], dtype=torch.long)
        self.register_buffer("field_of_channel", torch.repeat_interleave(torch.arange(len(sizes)), sizes), persistent=False)
        self.register_buffer("field_size", sizes.float(), persistent=False)
        self.synchronised = False

    def _statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch mean of the scalars and mean square of every channel, at least fp32."""
        dims, dtype = (0, *range(2, x.dim())), torch.promote_types(x.dtype, torch.float32)
        n0 = self.field_type.mult(0)
        mean = x.mean(dims, dtype=dtype)[:n0]  # all channels: no sliced backward
        sq = x.square().mean(dims, dtype=dtype)
        if self.synchronised and dist.is_initialized():  # equal local batches: mean of means
            both = dist_nn.all_reduce(torch.cat([mean, sq])) / dist.get_world_size()
            mean, sq = both.split([n0, len(sq)])
        return mean, sq

    def _affine(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (a, b) of ``x · a + b``; updates the running statistics in training."""
        n0, bn = self.field_type.mult(0), self.scalar_bn
        if self.training:
            mean, sq = self._statistics(x)
            var = (sq[:n0] - mean.square()).clamp(min=0)
            field_sq = sq.new_zeros(len(self.running_sq)).index_add(0, self.field_of_channel, sq[n0:]) / self.field_size
            with torch.no_grad():
                self.running_sq.lerp_(field_sq.to(self.running_sq), self.momentum)
                if bn is not None and bn.track_running_stats:
                    n = x.numel() / x.shape[1]
                    bn.running_mean.lerp_(mean.to(bn.running_mean), self.momentum)
                    bn.running_var.lerp_((var * n / max(n - 1, 1)).to(bn.running_var), self.momentum)
                    bn.num_batches_tracked += 1
        else:
            field_sq = self.running_sq
            if bn is not None:
                mean, var = bn.running_mean, bn.running_var
        scale = torch.rsqrt(field_sq + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        a, b = [scale[self.field_of_channel]], [scale.new_zeros(self.high.dim)]
        if bn is not None:
            a0 = torch.rsqrt(var + self.eps)
            b0 = -mean * a0
            if bn.affine:
                a0, b0 = a0 * bn.weight, b0 * bn.weight + bn.bias
            a, b = [a0, *a], [b0, *b]
        return torch.cat(a), torch.cat(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.field_type.dim:
            raise ValueError(f"EquivariantBatchNorm expects {self.field_type.dim} channels ({self.field_type}), got {x.shape[1]}")
        a, b = self._affine(x)
        shape = (1, -1, *([1] * (x.dim() - 2)))
        return torch.addcmul(b.to(x.dtype).view(shape), x, a.to(x.dtype).view(shape))


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
