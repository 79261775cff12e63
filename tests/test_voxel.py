"""Voxelization: numpy, torch and dense agree; normalisation, truncation, outside atoms and the
axis convention (cube rotations are exact axis permutations/flips)."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from cathnet.selection import select_atoms
from cathnet.structure import read_structure
from cathnet.voxel import voxelize, voxelize_batch, voxelize_dense

DATA = Path(__file__).parent / "data"


def cube_ops(n: int) -> list[tuple[np.ndarray, callable]]:
    """The 24 rotations of a (C, n, n, n) grid built from np.rot90, each with the 3×3 matrix
    it applies to voxel offsets (read off by moving single voxels)."""
    ops, m = {}, (n - 1) / 2

    def moved(op, index):
        g = np.zeros((1, n, n, n))
        g[(0, *index)] = 1
        return np.argwhere(op(g)[0])[0] - m

    for ks in itertools.product(range(4), repeat=3):
        def op(g, ks=ks):
            for k, axes in zip(ks, ((1, 2), (1, 3), (2, 3))):
                g = np.rot90(g, k, axes)
            return g
        origin = np.array([1, 2, 3])
        R = np.stack([moved(op, origin + e) - moved(op, origin) for e in np.eye(3, dtype=int)], axis=1)
        ops.setdefault(R.astype(int).tobytes(), (R, op))
    return list(ops.values())


def atoms(n: int = 60, spread: float = 7.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)) * spread + [10.0, -4.0, 3.0], rng.integers(0, 3, n)


@pytest.mark.parametrize("kw", [
    dict(grid_size=20),
    dict(grid_size=21, voxel_size=1.3, sigma=0.9),
    dict(grid_size=14, voxel_size=1.0, sigma=1.7, truncate=2.2),
    dict(grid_size=16, voxel_size=2.0, sigma=0.3),  # stencil narrower than a voxel: nearest voxel only
])
def test_separable_equals_dense(kw):
    x, ch = atoms()
    fast, dense = voxelize(x, ch, 3, **kw), voxelize_dense(x, ch, 3, **kw)
    assert fast.grid.shape == (3, kw["grid_size"], kw["grid_size"], kw["grid_size"]) and fast.grid.dtype == np.float32
    assert fast.n_outside == dense.n_outside
    np.testing.assert_allclose(fast.grid, dense.grid, atol=1e-6, rtol=0)


def test_torch_batch_equals_numpy():
    kw = dict(grid_size=18, voxel_size=1.5, sigma=1.2)
    structures = [atoms(60, 8.0, seed) for seed in range(3)]
    rotations = torch.tensor(np.stack([np.eye(3), *(np.linalg.qr(np.random.default_rng(s).normal(size=(3, 3)))[0] for s in (1, 2))]))
    rotations[1:] *= torch.det(rotations[1:]).sign()[:, None, None]
    A = 70
    coords = torch.full((3, A, 3), float("nan"), dtype=torch.float64)  # padding may hold anything
    channels = torch.full((3, A), 99)
    mask = torch.zeros(3, A, dtype=torch.bool)
    for b, (x, ch) in enumerate(structures):
        n = 60 - 10 * b
        coords[b, :n], channels[b, :n], mask[b, :n] = torch.tensor(x[:n]), torch.tensor(ch[:n]), True
    grids, outside = voxelize_batch(coords.float(), mask, channels, 3, rotations=rotations.float(), return_outside=True, **kw)
    assert grids.shape == (3, 3, 18, 18, 18) and grids.dtype == torch.float32
    for b, (x, ch) in enumerate(structures):
        n = 60 - 10 * b
        x32 = x[:n].astype(np.float32).astype(np.float64)
        ref = voxelize(x32, ch[:n], 3, center=x32.mean(0), rotation=rotations[b].float().double().numpy(), **kw)
        np.testing.assert_allclose(grids[b].numpy(), ref.grid, atol=1e-6, rtol=0)
        assert outside[b] == ref.n_outside > 0
    plain = voxelize_batch(coords.float(), mask, channels, 3, rotations=rotations.float(), **kw)
    assert torch.equal(plain, grids)


@pytest.mark.parametrize("n", [16, 15])
def test_cube_rotations_are_exact(n):
    """voxelize(R·x) == rotate(voxelize(x)) for the 24 cube rotations, about the grid centre."""
    x, ch = atoms(50, 5.0)
    center = x.mean(0) + [0.3, -0.7, 0.5]
    kw = dict(grid_size=n, voxel_size=1.5, sigma=1.1, center=center)
    ref = voxelize(x, ch, 3, **kw).grid
    ops = cube_ops(n)
    assert len(ops) == 24
    for R, op in ops:
        rotated = voxelize(center + (x - center) @ R.T, ch, 3, **kw).grid
        np.testing.assert_allclose(rotated, op(ref), atol=1e-6, rtol=0)
        np.testing.assert_allclose(voxelize(x, ch, 3, rotation=R, **kw).grid, op(ref), atol=1e-6, rtol=0)
    R, op = ops[7]
    batch = voxelize_batch(torch.tensor(x)[None], torch.ones(1, 50, dtype=torch.bool), torch.tensor(ch)[None], 3,
                           center=torch.tensor(center)[None], rotations=torch.tensor(R, dtype=torch.float64)[None],
                           grid_size=n, voxel_size=1.5, sigma=1.1)
    np.testing.assert_allclose(batch[0].numpy(), op(ref), atol=1e-6, rtol=0)


def test_axis_convention():
    """Voxel (i, j, k) sits at centre + ((i, j, k) − (N−1)/2)·voxel_size."""
    for n, offset, index in [(11, (2, 0, -3), (7, 5, 2)), (50, (0.5, -0.5, 24.5), (25, 24, 49))]:
        grid = voxelize(np.array([offset]) * 2.0 + 5.0, grid_size=n, center=[5.0, 5.0, 5.0]).grid[0]
        assert np.unravel_index(grid.argmax(), grid.shape) == index
        # the first sits 2 voxels from a face: the whole stencil fits; the second is on the last voxel
        assert grid.sum() == pytest.approx(1.0, abs=1e-6) if n == 11 else grid.sum() < 0.95


def test_normalisation_outside_and_clipping():
    n, v = 20, 2.0
    half = n * v / 2
    center = np.zeros(3)
    inside = np.array([[0.3, 1.1, -2.2], [5.0, -7.0, 3.3]])
    edge = np.array([[half - 0.1, 0.0, 0.0]])  # inside, stencil clipped by the face
    out = np.array([[half, 0.0, 0.0], [-half, 0.0, 0.0], [0.0, 0.0, -half - 5.0], [100.0, 100.0, 100.0]])
    g = voxelize(inside, grid_size=n, center=center)
    assert g.n_outside == 0 and g.grid.sum() == pytest.approx(2.0, abs=1e-5)
    for atom in inside:
        assert voxelize(atom[None], grid_size=n, center=center).grid.sum() == pytest.approx(1.0, abs=1e-6)
    clipped = voxelize(edge, grid_size=n, center=center)
    assert clipped.n_outside == 0 and 0.3 < clipped.grid.sum() < 0.9
    everything = voxelize(np.concatenate([inside, edge, out]), grid_size=n, center=center)
    assert everything.n_outside == len(out)  # a centre on the boundary is outside, on either side
    np.testing.assert_allclose(everything.grid, g.grid + clipped.grid, atol=1e-6)
    assert voxelize_dense(np.concatenate([inside, edge, out]), grid_size=n, center=center).n_outside == len(out)


def test_truncation_radius_and_error():
    """The stencil keeps voxels within 3σ along each axis; renormalising over it changes the
    density by < 2 % (L1) against the untruncated Gaussian, less for wider truncation."""
    n, v, s = 31, 0.5, 1.0
    atom = np.array([[0.2, -0.1, 0.05]])
    kw = dict(grid_size=n, voxel_size=v, sigma=s, center=np.zeros(3))
    grid = voxelize(atom, **kw).grid[0]
    q = (np.arange(n) - (n - 1) / 2) * v
    d = np.stack(np.meshgrid(q, q, q, indexing="ij"), -1) - atom[0]
    within = (np.abs(d) <= 3 * s).all(-1)
    assert (grid[within] > 0).all() and (grid[~within] == 0).all()
    full = np.exp(-0.5 * (d**2).sum(-1) / s**2)
    full /= full.sum()
    errors = [np.abs(voxelize(atom, truncate=t, **kw).grid[0] - full).sum() for t in (2.0, 3.0, 4.0)]
    assert errors[0] > errors[1] > errors[2] and 0.005 < errors[1] < 0.02  # measured ≈ 1.6 % at 3σ
    assert errors[2] < 5e-4


def test_real_structure_defaults_and_determinism():
    s = read_structure(DATA / "cath" / "3m9qA02.pdb")
    coords, channels, n_channels = select_atoms(s, "heavy")
    a = voxelize(coords, channels, n_channels)
    b = voxelize(coords, channels, n_channels)
    assert a.grid.shape == (5, 50, 50, 50) and a.n_outside == 0
    assert a.grid.tobytes() == b.grid.tobytes()
    assert a.grid.sum() == pytest.approx(len(coords), rel=1e-5)
    np.testing.assert_allclose(a.grid.sum(axis=(1, 2, 3)), np.bincount(channels, minlength=5), rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="center"):
        voxelize(np.zeros((0, 3)))
    assert voxelize(np.zeros((0, 3)), center=[0, 0, 0], grid_size=4).grid.sum() == 0
    with pytest.raises(ValueError, match="channels"):
        voxelize(np.zeros((2, 3)), [0, 3], 3)
    with pytest.raises(ValueError, match="positive"):
        voxelize(np.zeros((1, 3)), sigma=0)
