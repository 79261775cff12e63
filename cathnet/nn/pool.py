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

    def __init__(self, kernel_size: int = 2, stride: int | None = None, padding: int = 0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for n in x.shape[-3:]:
            check_centred(n, self.kernel_size, self.stride, self.padding, "EquivariantAvgPool")
        return F.avg_pool3d(x, self.kernel_size, self.stride, self.padding, count_include_pad=False)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class GlobalPool(nn.Module):
    """Global average pooling to rotation invariants: the spatial mean of every scalar and
    the spatial mean of the norm of every l > 0 field; (B, n_fields)."""

    def __init__(self, field_type: FieldType, eps: float = 1e-8):
        super().__init__()
        self.field_type, self.eps = field_type, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.field_type
        parts = [x[:, : t.mult(0)].mean(dim=(2, 3, 4))]
        for l in range(1, t.lmax + 1):
            if t.mult(l):
                f = x[:, t.slices()[l]].reshape(x.shape[0], t.mult(l), 2 * l + 1, *x.shape[2:])
                parts.append(f.pow(2).sum(2).add(self.eps).sqrt().mean(dim=(2, 3, 4)))
        return torch.cat(parts, dim=1)

    @property
    def out_features(self) -> int:
        return self.field_type.n_fields
