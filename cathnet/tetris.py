"""The 3D Tetris experiment (Weiler et al. 2018, §5.1; shapes of Thomas et al. 2018).

Eight 3D tetrominoes, one example each, in canonical orientation only, are the whole
training set. The test set is the same shapes under random rotations of the cube
(:func:`cathnet.so3.cube_rotations`, applied exactly with :func:`cathnet.grid.rotate_grid`).
A steerable network whose every layer is rotation-equivariant about the grid centre and
that ends in :class:`cathnet.nn.GlobalPool` invariants is exactly invariant to these
rotations, so it must classify every rotated shape correctly once it fits the canonical
eight. A plain CNN of similar size has no such guarantee (it sees only one orientation).

The two shapes ``chiral_1`` and ``chiral_2`` are mirror images. Rotations never map one
onto the other, so an SO(3)-invariant network *can* tell them apart, but a network whose
fields are scalars only (isotropic kernels) is also reflection-invariant and cannot. The
steerable network therefore carries l = 1, 2 fields: the 1 → 1 kernel's J = 1 part is the
cross product, which is what sees handedness.

Shapes are rendered as one Gaussian blob per cube, centred on the shape's centroid, which is
placed at the grid centre. The blobs are evaluated at rotated positions for the optional
arbitrary-rotation test (an exact rotation of the continuous signal, not a resampling).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from cathnet import so3
from cathnet.grid import rotate_grid
from cathnet.nn import EquivariantAvgPool, EquivariantBatchNorm, FieldType, Gate, GlobalPool, SE3Conv

__all__ = [
    "SHAPES",
    "render_shape",
    "tetris_dataset",
    "cube_rotated",
    "arbitrarily_rotated",
    "SteerableTetrisNet",
    "PlainTetrisNet",
    "count_parameters",
    "train",
    "accuracy",
    "TetrisResult",
    "run_tetris",
]

#: Cube coordinates of the eight tetrominoes (Thomas et al. 2018, tensor field networks).
SHAPES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "chiral_1": ((0, 0, 0), (0, 0, 1), (1, 0, 0), (1, 1, 0)),
    "chiral_2": ((0, 0, 0), (0, 0, 1), (1, 0, 0), (1, -1, 0)),  # mirror image of chiral_1 (y → -y)
    "square": ((0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)),
    "line": ((0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3)),
    "corner": ((0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0)),
    "L": ((0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0)),
    "T": ((0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 1)),
    "zigzag": ((0, 0, 0), (1, 0, 0), (1, 1, 0), (2, 1, 0)),
}


def render_shape(
    cubes, size: int = 16, spacing: float = 3.0, sigma: float = 1.0, rotation: np.ndarray | None = None
) -> np.ndarray:
    """A (size, size, size) float32 grid: a Gaussian blob (width ``sigma`` voxels) at every
    cube, cubes ``spacing`` voxels apart, centroid at the grid centre, optionally rotated
    by ``rotation`` (any 3×3 rotation) about the grid centre."""
    centres = (np.asarray(cubes, dtype=np.float64) - np.mean(cubes, axis=0)) * spacing
    if rotation is not None:
        centres = centres @ np.asarray(rotation, dtype=np.float64).T
    axis = np.arange(size) - (size - 1) / 2
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)  # voxel offsets
    d2 = ((grid[..., None, :] - centres) ** 2).sum(-1)  # (size, size, size, n_cubes)
    return np.exp(-d2 / (2 * sigma**2)).sum(-1).astype(np.float32)


def tetris_dataset(size: int = 16, spacing: float = 3.0, sigma: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set: every shape once, canonical orientation; ((8, 1, s, s, s), (8,))."""
    x = np.stack([render_shape(c, size, spacing, sigma) for c in SHAPES.values()])
    return torch.from_numpy(x).unsqueeze(1), torch.arange(len(SHAPES))


def cube_rotated(
    x: torch.Tensor, y: torch.Tensor, per_shape: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_shape`` copies of every grid, each turned by a random one of the 24 cube
    rotations (exact voxel permutation about the grid centre)."""
    rng = np.random.default_rng(seed)
    rots = so3.cube_rotations()
    xs, ys = [], []
    for i in range(len(x)):
        for k in rng.integers(0, len(rots), size=per_shape):
            xs.append(rotate_grid(x[i], rots[k]))
            ys.append(y[i])
    return torch.stack(xs).contiguous(), torch.stack(ys)


def arbitrarily_rotated(
    per_shape: int, size: int = 16, spacing: float = 3.0, sigma: float = 1.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_shape`` renderings of every shape under Haar-random rotations."""
    rots = so3.random_rotation(len(SHAPES) * per_shape, seed=seed)
    xs, ys = [], []
    for i, cubes in enumerate(SHAPES.values()):
        for R in rots[i * per_shape : (i + 1) * per_shape]:
            xs.append(render_shape(cubes, size, spacing, sigma, rotation=R))
            ys.append(i)
    return torch.from_numpy(np.stack(xs)).unsqueeze(1), torch.tensor(ys)


class SteerableTetrisNet(nn.Module):
    """SE3Conv → EquivariantBatchNorm → Gate blocks, 2× equivariant average pooling between
    them, :class:`GlobalPool` invariants and a linear classifier.

    ``types`` are the hidden field types, one per block; a block at grid ``n`` keeps ``n``
    (kernel 5, padding 2) and is followed by a 2× pool while the grid is even and > 4.
    """

    def __init__(
        self,
        n_classes: int = len(SHAPES),
        types: tuple[str, ...] = ("4x0 + 4x1 + 2x2", "8x0 + 4x1 + 4x2", "16x0 + 4x1 + 4x2"),
        kernel_size: int = 5,
        pool_after: tuple[bool, ...] = (True, True, False),
    ):
        super().__init__()
        layers: list[nn.Module] = []
        t_in = FieldType.scalars(1)
        for text, pool in zip(types, pool_after):
            t = FieldType.parse(text)
            layers += [SE3Conv(t_in, t.gated(), kernel_size), EquivariantBatchNorm(t.gated()), Gate(t)]
            if pool:
                layers.append(EquivariantAvgPool(2))
            t_in = t
        self.features = nn.Sequential(*layers)
        self.pool = GlobalPool(t_in)
        self.classifier = nn.Linear(self.pool.out_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


class PlainTetrisNet(nn.Module):
    """The same layout with ``nn.Conv3d`` + BatchNorm3d + ReLU and global average pooling."""

    def __init__(
        self,
        n_classes: int = len(SHAPES),
        widths: tuple[int, ...] = (4, 6, 12),
        kernel_size: int = 3,
        pool_after: tuple[bool, ...] = (True, True, False),
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c, pool in zip(widths, pool_after):
            layers += [nn.Conv3d(c_in, c, kernel_size, padding=kernel_size // 2), nn.BatchNorm3d(c), nn.ReLU()]
            if pool:
                layers.append(nn.AvgPool3d(2))
            c_in = c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3, 4)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def _settle_batchnorm(model: nn.Module, x: torch.Tensor) -> None:
    """Set every batch norm's running statistics to those of the batch ``x`` (one forward
    pass with momentum 1), so that eval mode computes what the last training step saw."""
    saved = {}
    for m in model.modules():
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, EquivariantBatchNorm)):
            saved[m] = m.momentum
            m.momentum = 1.0
    model.train()
    model(x)
    for m, momentum in saved.items():
        m.momentum = momentum


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 150, lr: float = 0.02) -> float:
    """Full-batch Adam on (x, y); returns the final training loss. Leaves ``model`` in
    eval mode with batch-norm statistics of ``x``."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    _settle_batchnorm(model, x)
    model.eval()
    return float(loss.detach())


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    return correct / len(x)


@dataclass
class TetrisResult:
    model: str
    parameters: int
    train_seconds: float
    test_seconds: float
    final_loss: float
    canonical_accuracy: float
    rotated_accuracy: float  #: random cube (90°) rotations
    arbitrary_accuracy: float | None  #: Haar-random rotations, re-rendered; None when not run


def run_tetris(
    seed: int = 0,
    steps: int = 150,
    lr: float = 0.02,
    size: int = 16,
    per_shape: int = 24,
    arbitrary: int = 0,
    models: tuple[str, ...] = ("steerable", "cnn"),
) -> list[TetrisResult]:
    """Train each model on the canonical shapes and test it on ``per_shape`` random cube
    rotations of each shape (and on ``arbitrary`` Haar-random rotations when > 0).
    Deterministic for a given seed (and thread count)."""
    if size % 4:
        raise ValueError(f"grid size must be a multiple of 4 (two 2x poolings), got {size}")
    x, y = tetris_dataset(size)
    x_rot, y_rot = cube_rotated(x, y, per_shape, seed=seed)
    x_arb, y_arb = arbitrarily_rotated(arbitrary, size, seed=seed) if arbitrary else (None, None)
    factories = {"steerable": SteerableTetrisNet, "cnn": PlainTetrisNet}
    results = []
    for name in models:
        torch.manual_seed(seed)
        model = factories[name]()
        t0 = time.perf_counter()
        loss = train(model, x, y, steps=steps, lr=lr)
        t1 = time.perf_counter()
        acc_canonical = accuracy(model, x, y)
        acc_rotated = accuracy(model, x_rot, y_rot)
        acc_arbitrary = accuracy(model, x_arb, y_arb) if x_arb is not None and y_arb is not None else None
        t2 = time.perf_counter()
        results.append(
            TetrisResult(
                name, count_parameters(model), t1 - t0, t2 - t1, loss, acc_canonical, acc_rotated, acc_arbitrary
            )
        )
    return results
