"""Steerable (SE(3)-equivariant) networks: the paper's ResNet34 and a compact network.

Both map a grid of scalar (and optionally vector) input fields to rotation-invariant
logits. Every downsampling step is laid out so that windows map onto windows under all 24
cube rotations (even kernel on an even grid, odd kernel on an odd grid), so the networks
are exactly invariant to 90° rotations of their input, and equivariant up to discretisation
for other rotations.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cathnet.nn import EquivariantAvgPool, EquivariantBatchNorm, FieldDropout, FieldType, Gate, GlobalPool, SE3Conv

__all__ = ["SE3ResNet", "SE3Compact", "SE3Environment", "se3resnet34", "se3_compact", "se3_env", "input_type"]

GATE_GAIN = 2**0.5
#: how the head reads the last features: invariants only, or also l > 0 components in the
#: input's frame (signed: a frame fixed by the structure; absolute: principal axes)
READOUTS = ("invariant", "frame", "axes")


def input_type(in_channels: int, in_type: str | None) -> FieldType:
    """The input field type: ``in_channels`` scalars unless ``in_type`` says otherwise."""
    t = FieldType([in_channels]) if in_type is None else FieldType.parse(in_type)
    if t.dim != in_channels:
        raise ValueError(f"in_type {t} has {t.dim} channels but in_channels={in_channels}")
    return t


def _down(n: int) -> tuple[int, int, int]:
    """(kernel, padding, output size) of a stride-2 step that keeps the grid centre."""
    kernel, padding = (4, 1) if n % 2 == 0 else (3, 1)
    return kernel, padding, (n + 2 * padding - kernel) // 2 + 1


class GatedConv(nn.Sequential):
    """SE3Conv → equivariant batch norm → gated nonlinearity (the paper's gated block)."""

    def __init__(self, t_in: FieldType, t_out: FieldType, kernel: int, stride: int = 1, padding: int | None = None):
        super().__init__(
            SE3Conv(t_in, t_out.gated(), kernel, stride, padding, bias=False, gain=GATE_GAIN),
            EquivariantBatchNorm(t_out.gated()),
            Gate(t_out),
        )


class ResBlock(nn.Module):
    """Residual block: gated conv → capsule dropout → conv → batch norm, plus a shortcut
    (identity, or average pooling and a 1³ steerable projection when the type or size
    changes)."""

    def __init__(self, t_in: FieldType, t_out: FieldType, kernel: int, grid: int, downsample: bool, dropout: float):
        super().__init__()
        if downsample:
            k, p, _ = _down(grid)
            self.conv1 = GatedConv(t_in, t_out, k, 2, p)
            pool = EquivariantAvgPool(3, 2, 1, t_in) if grid % 2 else EquivariantAvgPool(2, 2, field_type=t_in)
            shortcut: list[nn.Module] = [pool]
        else:
            self.conv1 = GatedConv(t_in, t_out, kernel)
            shortcut = []
        self.dropout = FieldDropout(t_out, dropout)
        self.conv2 = SE3Conv(t_out, t_out, kernel, bias=False)
        self.bn2 = EquivariantBatchNorm(t_out)
        if t_in != t_out:
            shortcut += [SE3Conv(t_in, t_out, 1, bias=False), EquivariantBatchNorm(t_out)]
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.bn2(self.conv2(self.dropout(self.conv1(x))))


class _Head(nn.Module):
    """Final gated conv to scalars → global average pool (and means over balls of
    ``centre_radii`` voxels about the centre) → dropout → linear. With ``readout="frame"``,
    the classifier also reads the grid mean of every component of the input's l > 0 fields:
    not invariants of the grid, but of the structure when the input is in a frame that
    rotates with it (a residue's backbone frame). ``readout="axes"``: their absolute values,
    which 180° turns about the grid axes keep (every real spherical harmonic is even or odd
    in each coordinate), for frames known up to the signs of their axes (principal axes).
    ``hidden`` > 0 adds a one-hidden-layer MLP on the same invariants to the linear logits
    (dropout, linear, ReLU, dropout, linear): a nonlinear head that costs no grid work."""

    def __init__(self, t_in: FieldType, n_scalars: int, n_classes: int, kernel: int, dropout: float,
                 centre_radii: Sequence[float] = (), readout: str = "invariant", hidden: int = 0):
        super().__init__()
        t = FieldType([n_scalars])
        self.conv = nn.Sequential(SE3Conv(t_in, t, kernel, bias=False, gain=GATE_GAIN), EquivariantBatchNorm(t), nn.ReLU())
        self.pool = GlobalPool(t, radii=tuple(centre_radii))
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(READOUTS)}, got {readout!r}")
        self.readout = readout
        self.n_frame = 0 if readout == "invariant" else t_in.dim - t_in.mult(0)
        n_in = self.pool.out_features + self.n_frame
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_in, n_classes))
        self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, n_classes)) if hidden else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(self.conv(x))
        if self.n_frame:
            components = x[:, x.shape[1] - self.n_frame:].to(y.dtype).mean(dim=(2, 3, 4))
            y = torch.cat([y, components.abs() if self.readout == "axes" else components], dim=1)
        return self.classifier(y) if self.mlp is None else self.classifier(y) + self.mlp(y)


class _Invariant(nn.Module):
    """``features`` (equivariant stack) → ``head`` (invariant logits)."""

    features: nn.Module
    head: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SE3ResNet(_Invariant):
    """The paper's steerable ResNet34 for CATH (supplement, Table 4): a gated stem, four
    stages of residual blocks (3, 4, 6, 2 blocks of types (2,2,2,2), (4,4,4,4), (8,8,8,8),
    (16,16,16,16)), strided at the start of stages 2-4 (50 → 25 → 13 → 7), then a conv to
    256 scalars, global pooling and a linear classifier."""

    def __init__(
        self,
        in_type: FieldType,
        n_classes: int,
        *,
        stages: Sequence[tuple[Sequence[int], int]] = (((2, 2, 2, 2), 3), ((4, 4, 4, 4), 4), ((8, 8, 8, 8), 6), ((16, 16, 16, 16), 2)),
        stem: Sequence[int] = (2, 2, 2, 2),
        head_scalars: int = 256,
        kernel_size: int = 5,
        grid_size: int = 50,
        dropout: float = 0.1,
        head_dropout: float = 0.5,
        head_hidden: int = 0,
    ):
        super().__init__()
        t = FieldType(stem)
        layers: list[nn.Module] = [GatedConv(in_type, t, kernel_size)]
        n = grid_size
        for s, (mults, depth) in enumerate(stages):
            for i in range(depth):
                down = s > 0 and i == 0
                layers.append(ResBlock(t, FieldType(mults), kernel_size, n, down, dropout))
                n = _down(n)[2] if down else n
                t = FieldType(mults)
        self.features = nn.Sequential(*layers)
        self.head = _Head(t, head_scalars, n_classes, kernel_size, head_dropout, hidden=head_hidden)


class SE3Compact(_Invariant):
    """A steerable network sized for CPU training: it leaves 50³ at once (4³ stride-2
    conv, 50 → 25), steps to 13³ and 7³ with 3³ strided convs and does its work there with
    few, wide gated layers of orders 0-2, then a conv to scalars, global pooling and a
    linear classifier. About 1 GFLOP per 50³ sample forward. ``readout="axes"`` also reads
    the absolute components of the last l > 0 fields (see ``_Head``): for structures in
    their principal-axes frame only (``--canonical principal``)."""

    def __init__(
        self,
        in_type: FieldType,
        n_classes: int,
        *,
        widths: Sequence[Sequence[int]] = ((8, 4, 2), (12, 6, 3), (16, 8, 4), (24, 12, 6)),
        head_scalars: int = 96,
        grid_size: int = 50,
        dropout: float = 0.1,
        head_dropout: float = 0.3,
        readout: str = "invariant",
        head_hidden: int = 0,
    ):
        super().__init__()
        types = [FieldType(w) for w in widths]
        n = grid_size
        layers: list[nn.Module] = []
        t = in_type
        for i, t_out in enumerate(types):
            if i < 3:  # stride-2 steps: 50 → 25 → 13 → 7
                k, p, n = _down(n)
                layers.append(GatedConv(t, t_out, k, 2, p))
            else:
                layers.append(GatedConv(t, t_out, 3))
            if i > 0:
                layers.append(GatedConv(t_out, t_out, 3))
                layers.append(FieldDropout(t_out, dropout))
            t = t_out
        self.features = nn.Sequential(*layers)
        self.head = _Head(t, head_scalars, n_classes, 3, head_dropout, readout=readout, hidden=head_hidden)


class SE3Environment(_Invariant):
    """A steerable network for residue environments (amino-acid task, 16³ × 1.5 Å): a
    stride-2 gated conv leaves the fine grid at once (16 → 8), ``depth`` gated convs per
    stage, a stride-2 step to the next stage (8 → 4), then a conv to scalars, global
    pooling and a linear classifier. Invariant logits: the Cα-centred environment may come
    in any orientation. ``centre_radii`` (voxels of the last grid) adds means over balls
    about the Cα to the global mean: rotations about the Cα, not translations, are the
    environment's symmetry. ``readout="frame"`` also reads the components of the last
    stage's l > 0 fields (see ``_Head``): for environments in their backbone frame only,
    where the features stay equivariant and the logits invariant under rotations of the
    structure, though not under rotations of the grid."""

    def __init__(
        self,
        in_type: FieldType,
        n_classes: int,
        *,
        widths: Sequence[Sequence[int]] = ((16, 8, 4), (32, 16, 8)),
        depth: int = 1,
        head_scalars: int = 128,
        grid_size: int = 16,
        dropout: float = 0.1,
        head_dropout: float = 0.2,
        centre_radii: Sequence[float] = (),
        readout: str = "invariant",
        head_hidden: int = 0,
    ):
        super().__init__()
        n, t = grid_size, in_type
        layers: list[nn.Module] = []
        for w in widths:
            t_out = FieldType(w)
            k, p, n = _down(n)
            layers.append(GatedConv(t, t_out, k, 2, p))
            for _ in range(depth):
                layers.append(GatedConv(t_out, t_out, 3))
            layers.append(FieldDropout(t_out, dropout))
            t = t_out
        self.features = nn.Sequential(*layers)
        self.head = _Head(t, head_scalars, n_classes, 3, head_dropout, centre_radii, readout, head_hidden)


def se3resnet34(in_channels: int, n_classes: int, in_type: str | None = None, **kwargs) -> SE3ResNet:
    return SE3ResNet(input_type(in_channels, in_type), n_classes, **kwargs)


def se3_compact(in_channels: int, n_classes: int, in_type: str | None = None, **kwargs) -> SE3Compact:
    return SE3Compact(input_type(in_channels, in_type), n_classes, **kwargs)


def se3_env(in_channels: int, n_classes: int, in_type: str | None = None, **kwargs) -> SE3Environment:
    return SE3Environment(input_type(in_channels, in_type), n_classes, **kwargs)
