"""Equivariant downsampling and pooling to invariants."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cathnet.nn.conv import check_centred
from cathnet.nn.field import FieldType

__all__ = ["EquivariantAvgPool", "GlobalPool"]


class EquivariantAvgPool(nn.Module):
    """Average pooling over cube windows, channel by channel (equivariant for any field
    type, since it acts on every component alike). Refuses window layouts that do not map
    windows onto windows under the 24 cube rotations: 50 → 25 with ``kernel_size=2,
    stride=2``; 25 → 13 with ``kernel_size=3, stride=2, padding=1``."""

    def __init__(self, kernel_size: int = 2, stride: int | None = None, padding: int = 0, field_type: FieldType | None = None):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding
        self.in_type = self.out_type = field_type  # any type: None unless told

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for n in x.shape[-3:]:
            check_centred(n, self.kernel_size, self.stride, self.padding, "EquivariantAvgPool")
        return F.avg_pool3d(x, self.kernel_size, self.stride, self.padding, count_include_pad=False)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class GlobalPool(nn.Module):
    """Global average pooling to rotation invariants: the spatial mean of every scalar and
    the spatial mean of the norm of every l > 0 field; (B, n_fields), computed in fp32
    whatever the input's dtype (autocast)."""

    def __init__(self, field_type: FieldType, eps: float = 1e-8):
        super().__init__()
        self.field_type, self.in_type, self.eps = field_type, field_type, eps
        self.out_type = FieldType([field_type.n_fields])  # invariants
        self.high = field_type.higher()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scalars, high = x.to(torch.promote_types(x.dtype, torch.float32)).split([self.field_type.mult(0), self.high.dim], dim=1)
        dims = tuple(range(2, x.dim()))
        norms = [f.square().sum(2).add(self.eps).sqrt().mean(dims) for f in self.high.split(high).values()]
        return torch.cat([scalars.mean(dims), *norms], dim=1)

    @property
    def out_features(self) -> int:
        return self.field_type.n_fields
