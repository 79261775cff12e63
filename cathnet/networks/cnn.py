"""Plain 3D CNN baselines: the paper's ResNet34 with half the channels and a compact CNN.

Both take voxel grids (B, C, X, Y, Z) of any size (50³ in the paper) and return logits
(B, n_classes); spatial information is collapsed by global average pooling.
"""
from __future__ import annotations

import torch
from torch import nn

from cathnet.nn.pool import centre_pool

__all__ = ["ResNet3d", "CompactCNN", "EnvironmentCNN", "resnet34", "compact", "env"]


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'group' or 'none', not {kind!r}")


def _conv(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3×3 convolutions with an identity (or 1×1×1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str):
        super().__init__()
        self.conv1, self.bn1 = _conv(c_in, c_out, stride=stride), _norm(norm, c_out)
        self.conv2, self.bn2 = _conv(c_out, c_out), _norm(norm, c_out)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(_conv(c_in, c_out, 1, stride), _norm(norm, c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet3d(nn.Module):
    """3D ResNet (He et al. 2016) with basic blocks; stem = 7³ conv stride 2 + max pool."""

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        depths: tuple[int, ...] = (3, 4, 6, 3),
        norm: str = "batch",
        dropout: float = 0.0,
    ):
        super().__init__()
        if len(widths) != len(depths):
            raise ValueError("widths and depths must have the same length")
        self.stem = nn.Sequential(
            _conv(in_channels, widths[0], 7, 2), _norm(norm, widths[0]), nn.ReLU(inplace=True),
            nn.MaxPool3d(3, stride=2, padding=1),
        )
        blocks, c = [], widths[0]
        for stage, (width, depth) in enumerate(zip(widths, depths)):
            for i in range(depth):
                blocks.append(BasicBlock(c, width, 2 if stage > 0 and i == 0 else 1, norm))
                c = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3, 4)))


class CompactCNN(nn.Module):
    """Small plain CNN: a stride-2 5³ stem (50 → 25), a stride-2 3³ conv (25 → 13), then
    3³ convs at 13³; batch norm, global average pooling, dropout, linear classifier."""

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        widths: tuple[int, ...] = (16, 32, 64, 64),
        norm: str = "batch",
        dropout: float = 0.2,
    ):
        super().__init__()
        layers, c = [], in_channels
        for i, width in enumerate(widths):
            kernel, stride = (5, 2) if i == 0 else (3, 2 if i == 1 else 1)
            layers += [_conv(c, width, kernel, stride), _norm(norm, width), nn.ReLU(inplace=True)]
            c = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3, 4)))


class EnvironmentCNN(nn.Module):
    """Plain CNN for residue environments, laid out like ``se3-env``: per stage a stride-2
    4³ conv then ``depth`` 3³ convs (16 → 8 → 4), a 3³ conv to ``head`` channels, global
    average pooling (and means over balls of ``centre_radii`` voxels about the centre, as
    ``se3-env``), dropout, linear classifier."""

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        widths: tuple[int, ...] = (12, 24),
        depth: int = 2,
        head: int = 64,
        norm: str = "batch",
        dropout: float = 0.2,
        centre_radii: tuple[float, ...] = (),
    ):
        super().__init__()
        self.centre_radii = tuple(float(r) for r in centre_radii)
        layers, c = [], in_channels
        for width in widths:
            layers += [nn.Conv3d(c, width, 4, stride=2, padding=1, bias=False), _norm(norm, width), nn.ReLU(inplace=True)]
            for _ in range(depth):
                layers += [_conv(width, width), _norm(norm, width), nn.ReLU(inplace=True)]
            c = width
        layers += [_conv(c, head), _norm(norm, head), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(head * (1 + len(self.centre_radii)), n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(centre_pool(self.features(x), self.centre_radii))


def resnet34(in_channels: int, n_classes: int, **kwargs) -> ResNet3d:
    """``cnn-resnet34``: the paper's CNN baseline, ResNet34 with channels (32, 64, 128, 256)."""
    return ResNet3d(in_channels, n_classes, **kwargs)


def compact(in_channels: int, n_classes: int, **kwargs) -> CompactCNN:
    """``cnn-compact``: a plain CNN sized like the compact steerable network."""
    return CompactCNN(in_channels, n_classes, **kwargs)


def env(in_channels: int, n_classes: int, **kwargs) -> EnvironmentCNN:
    """``cnn-env``: the plain CNN baseline of the amino-acid task, sized like ``se3-env``."""
    return EnvironmentCNN(in_channels, n_classes, **kwargs)
