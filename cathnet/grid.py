"""Rotating voxel grids and the fields on them.

Grids are (..., X, Y, Z) with voxel (i, j, k) at offset ``(i, j, k) - (N-1)/2`` from the
grid centre (see :mod:`cathnet.voxel`). A 3×3 rotation matrix ``R`` maps the voxel at
``p`` to ``R p``: the rotated grid is ``g(p) = f(R⁻¹ p)``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["is_cube_rotation", "rotate_grid", "resample_grid"]


def is_cube_rotation(R) -> bool:
    """Whether ``R`` is one of the 24 rotations that map the voxel lattice onto itself."""
    R = np.asarray(R, dtype=np.float64)
    perm = np.abs(R).argmax(axis=1)
    return sorted(perm.tolist()) == [0, 1, 2] and np.allclose(np.abs(R), np.eye(3)[perm], atol=1e-6)


def _signed_permutation(R) -> tuple[list[int], list[bool]]:
    if not is_cube_rotation(R):
        raise ValueError("rotate_grid needs one of the 24 cube rotations; use resample_grid")
    R = np.asarray(R, dtype=np.float64)
    perm = np.abs(R).argmax(axis=1)
    return perm.tolist(), (R[range(3), perm] < 0).tolist()


def rotate_grid(x: torch.Tensor, R) -> torch.Tensor:
    """Exactly rotate the last three (spatial) axes of ``x`` by a cube rotation ``R``.

    Output axis ``a`` takes input axis ``perm[a]``, reversed where ``R[a, perm[a]] = -1``.
    Field components are not touched: multiply by ``FieldType.representation(R)`` for that.
    """
    perm, flips = _signed_permutation(R)
    lead = x.dim() - 3
    y = x.permute(*range(lead), *(lead + p for p in perm))
    dims = [lead + a for a in range(3) if flips[a]]
    return y.flip(dims) if dims else y


def resample_grid(x: torch.Tensor, R) -> torch.Tensor:
    """Rotate (B, C, X, Y, Z) grids by an arbitrary rotation with trilinear resampling
    (zeros outside). Exact only for cube rotations; use for smooth inputs."""
    R = torch.as_tensor(np.array(R, dtype=np.float64), dtype=x.dtype, device=x.device)
    n = torch.tensor(x.shape[-3:], dtype=x.dtype, device=x.device)
    axes = [torch.arange(int(s), dtype=x.dtype, device=x.device) - (s - 1) / 2 for s in n.tolist()]
    p = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # output voxel offsets
    src = p @ R  # R⁻¹ p = Rᵀ p, row-vector form
    # grid_sample wants (x_W, y_H, z_D) normalised to [-1, 1] for input (D, H, W) = (X, Y, Z)
    norm = src / ((n - 1) / 2)
    grid = norm.flip(-1).unsqueeze(0).expand(x.shape[0], *norm.shape)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
