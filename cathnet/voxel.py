"""Gaussian atom densities on voxel grids.

Axis convention (the package's)
-------------------------------
A grid is a tensor (channels, X, Y, Z) per structure and (batch, channels, X, Y, Z) for a
batch. Voxel (i, j, k) is centred at ``centre + ((i, j, k) - (N - 1)/2) * voxel_size``, so
index triples shifted by (N - 1)/2 are voxel offsets from the grid centre and a 3×3 rotation
matrix acts on them directly: rotating the atoms about the centre, x ↦ centre + R (x − centre),
permutes and flips the grid axes for the 24 rotations of the cube
(:func:`cathnet.grid.rotate_grid`).

Density
-------
Each atom adds exp(−|p − x|² / 2σ²) at the voxel centres p of its stencil, normalised to sum to
1 over the stencil. The stencil is truncated at ``truncate`` σ (3 by default) along each axis:
it holds the voxels with |p_a − x_a| ≤ truncate·σ for a = x, y, z, a box containing the sphere
of that radius. The Gaussian factorises into three 1-D stencils, which is how :func:`voxelize`
(numpy) and :func:`voxelize_batch` (torch, any device) compute it; :func:`voxelize_dense`
evaluates every atom at every voxel and is the reference. torch is imported by the functions
that use it, so that numpy-only callers (``cathnet voxelize``) never load it.

An atom is *outside* when its centre is not strictly inside the grid's extent, i.e.
|x_a − centre_a| ≥ N·voxel_size/2 along some axis (the centre is not in any voxel's cell). It
adds nothing and is counted in ``n_outside``. An inside atom near a face loses the part of its
stencil beyond the grid, so a grid sums to the number of inside atoms less that clipped mass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "GRID_SIZE", "SIGMA", "TRUNCATE", "VOXEL_SIZE", "VoxelGrid", "Voxels", "voxelize", "voxelize_batch",
    "voxelize_dense",
]

GRID_SIZE = 50
VOXEL_SIZE = 2.0
SIGMA = 1.0
TRUNCATE = 3.0


@dataclass(frozen=True)
class Voxels:
    """A grid: ``grid_size``³ voxels of ``voxel_size`` Å, each atom a Gaussian of width ``sigma`` Å."""

    grid_size: int = GRID_SIZE
    voxel_size: float = VOXEL_SIZE
    sigma: float = SIGMA


class VoxelGrid(NamedTuple):
    grid: np.ndarray  # (C, N, N, N) float32
    n_outside: int    # atoms whose centre lies outside the grid


def _check(grid_size: int, voxel_size: float, sigma: float, truncate: float) -> None:
    if grid_size < 1 or not voxel_size > 0 or not sigma > 0 or not truncate > 0:
        raise ValueError("grid_size, voxel_size, sigma and truncate must be positive")


def _half_width(voxel_size: float, sigma: float, truncate: float) -> float:
    """Stencil half-width in voxels: truncate·σ, at least half a voxel (the nearest voxel)."""
    return max(truncate * sigma / voxel_size, 0.5)


def _channels(channels, n_atoms: int, n_channels: int) -> np.ndarray:
    if channels is None:
        return np.zeros(n_atoms, np.int64)
    channels = np.asarray(channels, np.int64).reshape(-1)
    if len(channels) != n_atoms or (n_atoms and (channels.min() < 0 or channels.max() >= n_channels)):
        raise ValueError(f"channels must be {n_atoms} values in 0..{n_channels - 1}")
    return channels


def _offsets(coords, center, rotation, voxel_size: float) -> np.ndarray:
    """(A, 3) float64 atom positions relative to the grid centre, in voxels, after rotating about it."""
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    if center is None:
        if len(coords) == 0:
            raise ValueError("no atoms: give an explicit center")
        center = coords.mean(axis=0)
    rel = coords - np.asarray(center, dtype=np.float64)
    if rotation is not None:
        rel = rel @ np.asarray(rotation, dtype=np.float64).T
    return rel / voxel_size


def _stencils(t: np.ndarray | torch.Tensor, grid_size: int, voxel_size: float, sigma: float, truncate: float):
    """1-D stencils of atoms at voxel offsets ``t`` (..., 3): voxel indices (..., 3, W) clipped
    to the grid and weights (..., 3, W), zero off the stencil and outside the grid. Works on
    numpy arrays and torch tensors."""
    xp: Any = np
    device: dict[str, Any] = {}
    if not isinstance(t, np.ndarray):
        import torch

        xp, device = torch, {"device": t.device}
    r = _half_width(voxel_size, sigma, truncate)
    h = math.ceil(r + 0.5)                                  # window half-width covering it
    m = (grid_size - 1) / 2
    steps = xp.arange(-h, h + 1, dtype=t.dtype, **device)
    index = xp.round(t + m)[..., None] + steps              # window around the nearest voxel
    d = (index - m) - t[..., None]                          # exact in centred coordinates: d(−t) = −d(t)
    w = xp.exp(-0.5 * (d * (voxel_size / sigma)) ** 2) * (xp.abs(d) <= r)
    w = w / w.sum(-1, keepdims=True)
    inside = (index >= 0) & (index <= grid_size - 1)
    return xp.clip(index, 0, grid_size - 1), w * inside


def voxelize(
    coords,
    channels=None,
    n_channels: int = 1,
    *,
    grid_size: int = GRID_SIZE,
    voxel_size: float = VOXEL_SIZE,
    sigma: float = SIGMA,
    truncate: float = TRUNCATE,
    center=None,
    rotation=None,
) -> VoxelGrid:
    """Density grid (n_channels, N, N, N) float32 of atoms ``coords`` (A, 3) in Å.

    ``channels`` (A,) gives each atom's channel (default 0); ``center`` defaults to the mean
    atom position; ``rotation`` (3, 3) rotates the atoms about the centre first.
    """
    _check(grid_size, voxel_size, sigma, truncate)
    t = _offsets(coords, center, rotation, voxel_size)
    channels = _channels(channels, len(t), n_channels)
    inside = (np.abs(t) < grid_size / 2).all(axis=1)
    index, w = _stencils(t[inside], grid_size, voxel_size, sigma, truncate)
    index = index.astype(np.int64)
    n = grid_size
    flat = (((channels[inside, None, None, None] * n + index[:, 0, :, None, None]) * n
             + index[:, 1, None, :, None]) * n + index[:, 2, None, None, :])
    weight = w[:, 0, :, None, None] * w[:, 1, None, :, None] * w[:, 2, None, None, :]
    grid = np.bincount(flat.ravel(), weight.ravel(), minlength=n_channels * n**3)
    return VoxelGrid(grid.astype(np.float32).reshape(n_channels, n, n, n), int((~inside).sum()))


def voxelize_dense(
    coords,
    channels=None,
    n_channels: int = 1,
    *,
    grid_size: int = GRID_SIZE,
    voxel_size: float = VOXEL_SIZE,
    sigma: float = SIGMA,
    truncate: float = TRUNCATE,
    center=None,
    rotation=None,
) -> VoxelGrid:
    """Reference for :func:`voxelize`: every atom evaluated at every voxel (slow)."""
    _check(grid_size, voxel_size, sigma, truncate)
    t = _offsets(coords, center, rotation, voxel_size)
    channels = _channels(channels, len(t), n_channels)
    n, m, r = grid_size, (grid_size - 1) / 2, _half_width(voxel_size, sigma, truncate)
    q = np.arange(n) - m                                    # voxel offsets from the grid centre
    grid = np.zeros((n_channels, n, n, n))
    n_outside = 0
    for ti, c in zip(t, channels):
        if (np.abs(ti) >= n / 2).any():
            n_outside += 1
            continue
        d = q[:, None, None, None] * np.eye(3)[0] + q[None, :, None, None] * np.eye(3)[1] \
            + q[None, None, :, None] * np.eye(3)[2] - ti   # (N, N, N, 3) voxel − atom
        g = np.exp(-0.5 * (d**2).sum(-1) * (voxel_size / sigma) ** 2) * (np.abs(d) <= r).all(-1)
        # normaliser: the same Gaussian summed over the whole (unclipped) stencil lattice
        k = np.round(ti + m) + np.arange(math.floor(-r - 1), math.ceil(r + 2))[:, None] - m
        z = np.prod(np.sum(np.exp(-0.5 * ((k - ti) * voxel_size / sigma) ** 2) * (np.abs(k - ti) <= r), axis=0))
        grid[c] += g / z
    return VoxelGrid(grid.astype(np.float32), n_outside)


def _scatter(index: torch.Tensor, w: torch.Tensor, ch: torch.Tensor, n_channels: int, n: int) -> torch.Tensor:
    """Grids (B, C, n, n, n): every atom's W³ stencil voxels added one by one."""
    import torch

    B = index.shape[0]
    base = (torch.arange(B, device=index.device)[:, None] * n_channels + ch) * n**3          # (B, A)
    flat = (base[..., None, None, None] + index[:, :, 0, :, None, None] * n * n
            + index[:, :, 1, None, :, None] * n + index[:, :, 2, None, None, :])
    weight = w[:, :, 0, :, None, None] * w[:, :, 1, None, :, None] * w[:, :, 2, None, None, :]
    grid = torch.zeros(B * n_channels * n**3, dtype=torch.float32, device=index.device)
    grid.index_add_(0, flat.reshape(-1), weight.reshape(-1))
    return grid.view(B, n_channels, n, n, n)


def voxelize_batch(
    coords: torch.Tensor,
    mask: torch.Tensor,
    channels: torch.Tensor | None = None,
    n_channels: int = 1,
    *,
    grid_size: int = GRID_SIZE,
    voxel_size: float = VOXEL_SIZE,
    sigma: float = SIGMA,
    truncate: float = TRUNCATE,
    center: torch.Tensor | None = None,
    rotations: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    return_outside: bool = False,
):
    """Density grids (B, n_channels, N, N, N) float32 of padded atom batches, on ``coords``' device.

    ``coords`` (B, A, 3) Å, ``mask`` (B, A) bool marks real atoms, ``channels`` (B, A) long;
    ``center`` (B, 3) defaults to each structure's mean atom position; ``rotations`` (B, 3, 3)
    rotate each structure about its centre (augmentation, e.g. from
    :func:`cathnet.so3.random_rotation`); ``weights`` (B, A) scale each atom's density (the
    components of an oriented field, :mod:`cathnet.fields`). Same densities as :func:`voxelize` (positions in
    float64 where the device has it, sums in float32). With ``return_outside`` also returns
    the (B,) counts of atoms outside the grid. On CUDA the scatter uses atomics: equal to
    float32 rounding, not bit-reproducible.
    """
    import torch

    _check(grid_size, voxel_size, sigma, truncate)
    mask = mask.to(torch.bool)
    dtype = torch.float32 if coords.device.type == "mps" else torch.float64
    x = torch.where(mask[..., None], coords.to(dtype), 0.0)  # padding may hold anything
    if center is None:
        center = x.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    rel = x - center.to(x)[:, None, :]
    if rotations is not None:
        rel = torch.einsum("bij,baj->bai", rotations.to(x), rel)
    t = rel / voxel_size
    inside = (t.abs() < grid_size / 2).all(-1) & mask
    t = torch.where(inside[..., None], t, 0.0)                          # far atoms: keep indices small
    index, w = _stencils(t, grid_size, voxel_size, sigma, truncate)     # (B, A, 3, W)
    index, w = index.long(), w.to(torch.float32) * inside[..., None, None]
    n = grid_size
    ch = torch.zeros_like(mask, dtype=torch.long) if channels is None else channels.long()
    if ((ch < 0) | (ch >= n_channels))[mask].any():
        raise ValueError(f"channels of real atoms must be in 0..{n_channels - 1}")
    ch = torch.where(inside, ch, 0)
    if weights is not None:
        one = torch.ones_like(w[..., 0, 0])
        w = w * torch.stack([weights.to(w), one, one], -1)[..., None]
    grid = _scatter(index, w, ch, n_channels, n)
    if return_outside:
        return grid, (mask & ~inside).sum(1)
    return grid
