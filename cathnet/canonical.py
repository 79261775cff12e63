"""Canonical orientations: each structure turned into the frame of its principal axes.

The principal axes of the atoms (eigenvectors of their covariance about the grid centre,
largest variance first) are a rotation-equivariant frame: rotating the structure by R turns
them by R too, up to the sign of each axis. Turning every structure into that frame before
voxelization therefore removes any rotation of the input, except for the sign ambiguity:
the four proper choices of signs differ by 180° turns about the grid axes, which are among
the 24 cube rotations under which a steerable network is exactly invariant. A steerable
network fed principal frames is thus invariant under every rotation of the input, not only
on the cube group (frame averaging with the cube group absorbing the frame's ambiguity).
Degenerate covariances (near-spherical atom clouds, fewer than three atoms) leave the frame
ill-defined and the invariance approximate.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["CANONICAL", "PRINCIPAL", "principal_frames"]

PRINCIPAL = "principal"
#: the canonical frames an input may be turned into (``Preprocessing.canonical``)
CANONICAL = (PRINCIPAL,)


def principal_frames(
    coords: torch.Tensor, mask: torch.Tensor, *, center: torch.Tensor | None = None,
    rotations: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rotations (B, 3, 3), float64, that turn each structure of a padded batch (``coords``
    (B, A, 3), ``mask`` (B, A)) about ``center`` (B, 3; default: the mean atom position) into
    its principal-axes frame, with determinant +1. With ``rotations`` (B, 3, 3), the
    structures are first turned by them and the result is the composed rotation F(R x) R,
    so that any rotation given is undone up to the frame's sign ambiguity."""
    import torch

    x = coords.to(torch.float64)
    w = mask.to(torch.float64).unsqueeze(-1)
    n = w.sum(1).clamp(min=1)
    c = (x * w).sum(1) / n if center is None else center.to(x)
    rel = (x - c.unsqueeze(1)) * w
    if rotations is not None:
        rel = torch.einsum("bij,baj->bai", rotations.to(x), rel)
    cov = rel.transpose(1, 2) @ rel / n.unsqueeze(-1)
    _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues, eigenvectors in columns
    frame = vectors.flip(-1).transpose(1, 2)  # rows: axes of largest variance first
    frame[:, 2] *= torch.where(torch.linalg.det(frame) < 0, -1.0, 1.0).unsqueeze(-1)  # proper: det +1
    return frame if rotations is None else frame @ rotations.to(x)
