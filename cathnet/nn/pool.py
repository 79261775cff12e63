"""Equivariant downsampling and pooling to invariants."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cathnet.nn.conv import check_centred
from cathnet.nn.field import FieldType

__all__ = ["EquivariantAvgPool", "GlobalPool", "centre_pool", "centre_weights"]


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


def centre_weights(shape: tuple[int, ...], radii: tuple[float, ...], device: torch.device | None = None) -> torch.Tensor:
    """(1 + len(radii), *shape) averaging weights: the whole grid, then each ball of radius
    r (in voxels) about the grid centre. A voxel's distance from the centre is kept by every
    rotation about it, so these means are invariants of the 24 cube rotations."""
    axes = [torch.arange(n, dtype=torch.float64, device=device) - (n - 1) / 2 for n in shape]
    r = torch.stack(torch.meshgrid(*axes, indexing="ij")).square().sum(0).sqrt()
    masks = torch.stack([torch.ones_like(r), *[(r <= radius + 1e-9).double() for radius in radii]])
    if (masks.flatten(1).sum(1) == 0).any():
        raise ValueError(f"a ball of radius {min(radii)} voxels about the centre of a {shape} grid holds no voxel")
    return masks / masks.flatten(1).sum(1).view(-1, *[1] * len(shape))


def centre_pool(x: torch.Tensor, radii: tuple[float, ...]) -> torch.Tensor:
    """(B, C × (1 + len(radii))) means of (B, C, *grid) over the grid, then over each ball
    of :func:`centre_weights`; without ``radii``, the plain spatial mean."""
    if not radii:
        return x.mean(tuple(range(2, x.dim())))
    w = centre_weights(tuple(x.shape[2:]), radii, x.device).to(x.dtype)
    return torch.einsum("bc...,k...->bkc", x, w).flatten(1)


class GlobalPool(nn.Module):
    """Global average pooling to rotation invariants: the spatial mean of every scalar and
    the spatial mean of the norm of every l > 0 field; (B, n_fields), computed in fp32
    whatever the input's dtype (autocast). With ``radii`` (voxels), also the same means over
    balls about the grid centre: (B, n_fields × (1 + len(radii))), invariant under rotations
    about the centre — for inputs centred on a point that matters (a residue's Cα), where
    the whole grid's mean forgets what lies at the centre."""

    def __init__(self, field_type: FieldType, eps: float = 1e-8, radii: tuple[float, ...] = ()):
        super().__init__()
        self.field_type, self.in_type, self.eps = field_type, field_type, eps
        self.radii = tuple(float(r) for r in radii)
        self.out_type = FieldType([field_type.n_fields * (1 + len(self.radii))])  # invariants
        self.high = field_type.higher()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scalars, high = x.to(torch.promote_types(x.dtype, torch.float32)).split([self.field_type.mult(0), self.high.dim], dim=1)
        norms = [f.square().sum(2).add(self.eps).sqrt() for f in self.high.split(high).values()]
        return centre_pool(torch.cat([scalars, *norms], dim=1), self.radii)

    @property
    def out_features(self) -> int:
        return self.out_type.dim

    def extra_repr(self) -> str:
        return f"radii={self.radii}" if self.radii else ""
