"""Oriented input fields: which way the secondary-structure elements point.

A CATH architecture is defined by how helices and strands are oriented relative to each
other; Cα densities typed helix / strand / coil only show where they are. The
``ss-orientation`` input adds, at every helix and strand Cα, the local direction ``t`` of
its element as an order-1 field (``t`` times the density) and its sign-free axis as an
order-2 field (``Y²(t)``, the traceless part of ``t tᵀ`` in the basis of
:mod:`cathnet.so3`), one of each per element type, so antiparallel neighbours add in the
order-2 field where they cancel in the order-1 field. The fields rotate with the
structure (``D¹(R) = R``, ``D²(R)``): a steerable network takes them as its ``in_type``
and stays invariant, a plain CNN can only read them as scalars.

``ss-pairing`` adds the sheet's pairing as two invariant scalar channels at every strand
Cα: how many strand Cα of another part of the chain lie beside it (Cα–Cα ≤ 5.5 Å, fading
to 6.5 Å) running the same way (``strand.parallel``) and the opposite way
(``strand.antiparallel``), each weighted by the cosine of their directions. Parallel and
antiparallel sheets and edge strands (one partner; a closed barrel has none) then differ in
the input; from the order-1 fields alone an invariant network would have to multiply
neighbouring vectors to tell them apart.

Directions and pairing are computed from the Cα trace at voxelization time, so datasets
store only Cα positions and secondary-structure channels (``--atoms ca-ss``).

The ``frame`` input of the amino-acid task does the same for a residue environment: the
residue's own backbone directions as order-1 fields at its Cα (:func:`voxelize_frame`).
torch is imported by the functions that use it.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from cathnet.selection import SS_CHANNELS
from cathnet.ss import COIL, STRAND, chain_segments
from cathnet.voxel import voxelize_batch

if TYPE_CHECKING:
    import torch

__all__ = [
    "FIELDS", "FRAME", "FRAME_CHANNELS", "FRAME_TYPE", "SS_ORIENTATION", "SS_PAIRING", "channel_names",
    "element_directions", "in_type", "strand_pairing", "voxelize_fields", "voxelize_frame",
]

SS_ORIENTATION = "ss-orientation"
SS_PAIRING = "ss-pairing"
#: field set -> input field type: helix / strand / coil densities (``ss-pairing``: and the
#: strands' parallel and antiparallel pairing), helix and strand directions (l = 1) and axes (l = 2)
FIELDS = {SS_ORIENTATION: "3x0 + 2x1 + 2x2", SS_PAIRING: "5x0 + 2x1 + 2x2"}
PAIRING_CHANNELS = ("strand.parallel", "strand.antiparallel")
WINDOW = 4  # residues averaged on each side: about one helical turn, so the mean lies on the axis
PAIR_DISTANCE = (5.5, 6.5)  # Å: Cα–Cα of paired strand residues (full weight up to the first, none past the second)
PAIR_SEPARATION = 3  # residues closer than this along the chain are never pairing partners
_ORIENTED = 2  # helix and strand carry directions (COIL does not)
_SLOTS = 1 + 3 + 5  # per atom: its density, its direction, its axis


def in_type(fields: str) -> str:
    """The input field type of a field set."""
    if fields not in FIELDS:
        raise ValueError(f"unknown input fields {fields!r}; available: {', '.join(FIELDS)}")
    return FIELDS[fields]


def channel_names(fields: str) -> list[str]:
    """Channel names of a field set, in channel order."""
    in_type(fields)
    kinds = SS_CHANNELS[:_ORIENTED]
    pairing = PAIRING_CHANNELS if fields == SS_PAIRING else ()
    return [*SS_CHANNELS, *pairing, *(f"{k}.{c}" for k in kinds for c in "xyz"),
            *(f"{k}.axis{m:+d}" for k in kinds for m in range(-2, 3))]


def element_directions(ca: np.ndarray, same_chain: np.ndarray | None = None, window: int = WINDOW) -> np.ndarray:
    """(N, 3) float32 unit direction of the chain at each Cα: the mean of the next ``window``
    Cα minus the mean of this and the ``window - 1`` before, within its chain segment (no
    direction, zero, for a one-residue segment). On a helix the window means lie near the
    axis, so this is the helix axis; on a strand, the strand's direction."""
    ca = np.asarray(ca, dtype=np.float64).reshape(-1, 3)
    n = len(ca)
    if n == 0:
        return np.zeros((0, 3), np.float32)
    seg = chain_segments(ca, same_chain)
    start = np.searchsorted(seg, seg, side="left")
    stop = np.searchsorted(seg, seg, side="right")
    i = np.arange(n)
    csum = np.concatenate([np.zeros((1, 3)), np.cumsum(ca, axis=0)])
    lo, hi = np.maximum(i - window + 1, start), np.minimum(i + 1 + window, stop)
    back = (csum[i + 1] - csum[lo]) / (i + 1 - lo)[:, None]
    ahead = np.where((hi > i + 1)[:, None], (csum[hi] - csum[i + 1]) / np.maximum(hi - i - 1, 1)[:, None], ca)
    t = ahead - back
    norm = np.linalg.norm(t, axis=1, keepdims=True)
    return np.where(norm > 1e-6, t / np.maximum(norm, 1e-12), 0.0).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _y2_matrix() -> np.ndarray:
    """(5, 6) map from (x², y², z², xy, yz, zx) of a unit vector to its Y² (of unit norm)."""
    from cathnet import so3

    pts = so3.random_rotation(64, np.random.default_rng(0))[:, 0]
    x, y, z = pts.T
    q = np.stack([x * x, y * y, z * z, x * y, y * z, z * x], axis=1)
    y2 = so3.spherical_harmonics(2, pts) * np.sqrt(4 * np.pi / 5)
    return np.linalg.lstsq(q, y2, rcond=None)[0].T


def _axis(t: torch.Tensor) -> torch.Tensor:
    """Y² (..., 5) of unit (or zero) vectors t (..., 3)."""
    import torch

    x, y, z = t.unbind(-1)
    q = torch.stack([x * x, y * y, z * z, x * y, y * z, z * x], dim=-1)
    return q @ torch.as_tensor(_y2_matrix().T, dtype=t.dtype, device=t.device)


def strand_pairing(x: torch.Tensor, t: torch.Tensor, strand: torch.Tensor) -> torch.Tensor:
    """(B, A, 2) parallel and antiparallel pairing of every strand Cα of padded batches:
    the sum over strand Cα at least ``PAIR_SEPARATION`` residues away along the chain of
    ``w(d) · max(±t·t', 0)``, ``w`` 1 up to 5.5 Å and 0 from 6.5 Å (:data:`PAIR_DISTANCE`).
    ``x`` (B, A, 3) positions, ``t`` (B, A, 3) directions, ``strand`` (B, A) bool. Distances
    and dot products only: invariant under rotations of the structure."""
    import torch

    near, far = PAIR_DISTANCE
    w = ((far - torch.cdist(x, x)) / (far - near)).clamp(0, 1)
    i = torch.arange(x.shape[1], device=x.device)
    w = w * ((i[:, None] - i[None, :]).abs() >= PAIR_SEPARATION) * (strand[:, :, None] & strand[:, None, :])
    cos = torch.einsum("bai,bci->bac", t, t)
    return torch.stack([(w * cos.clamp(min=0)).sum(-1), (w * (-cos).clamp(min=0)).sum(-1)], dim=-1)


def voxelize_fields(
    coords: torch.Tensor, mask: torch.Tensor, ss: torch.Tensor, directions: torch.Tensor, *,
    grid_size: int, voxel_size: float, sigma: float, center: torch.Tensor | None = None,
    rotations: torch.Tensor | None = None, fields: str = SS_ORIENTATION,
) -> torch.Tensor:
    """Grids (B, C, N, N, N) of the ``fields`` (``ss-orientation``: C = 19, ``ss-pairing``: 21)
    of padded Cα batches: ``coords`` (B, A, 3) Å, ``mask`` (B, A), ``ss`` (B, A) helix /
    strand / coil, ``directions`` (B, A, 3) from :func:`element_directions`; ``rotations``
    (B, 3, 3) turn positions and directions about ``center`` (default: each structure's mean Cα)."""
    import torch

    names = channel_names(fields)
    mask = mask.to(torch.bool)
    x = torch.where(mask[..., None], coords.to(torch.float64), 0.0)
    if center is None:
        center = x.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    rel, t = x - center.to(x)[:, None, :], directions.to(x)
    ss = ss.long()
    pairing = strand_pairing(rel, t, (ss == STRAND) & mask) if fields == SS_PAIRING else None  # before rotating
    if rotations is not None:
        rel = torch.einsum("bij,baj->bai", rotations.to(x), rel)
        t = torch.einsum("bij,baj->bai", rotations.to(x), t)
    oriented = (ss != COIL) & mask
    k = ss.clamp(max=_ORIENTED - 1)
    steps = torch.arange(5, device=ss.device)
    first = names.index("helix.x")  # the first order-1 channel
    channels = [ss[..., None], first + 3 * k[..., None] + steps[:3], first + 3 * _ORIENTED + 5 * k[..., None] + steps]
    weights = [torch.ones_like(t[..., :1]), t, _axis(t)]
    slots = [mask[..., None], oriented[..., None].expand(-1, -1, _SLOTS - 1)]
    if pairing is not None:
        channels.append(names.index(PAIRING_CHANNELS[0]) + steps[None, None, :2].expand(*ss.shape, 2))
        weights.append(pairing)
        slots.append((pairing > 0) & mask[..., None])
    B, A = mask.shape
    n = sum(c.shape[-1] for c in channels)
    return voxelize_batch(
        rel[:, :, None, :].expand(B, A, n, 3).reshape(B, A * n, 3), torch.cat(slots, -1).reshape(B, -1),
        torch.cat(channels, -1).reshape(B, -1), len(names), grid_size=grid_size, voxel_size=voxel_size,
        sigma=sigma, center=torch.zeros(B, 3, dtype=x.dtype, device=x.device),
        weights=torch.cat(weights, -1).reshape(B, -1),
    )


#: environment channels of the residue's own N, own C and virtual Cβ (:mod:`cathnet.environments`)
_FRAME_ATOMS = (4, 5, 7)
FRAME = "frame"
FRAME_TYPE = "8x0 + 3x1"
#: the frame's channels, after the 8 environment channels: Cα→N, Cα→C, Cα→Cβ (x, y, z)
FRAME_CHANNELS = tuple(f"{a}.{c}" for a in ("N", "C", "CB") for c in "xyz")


def voxelize_frame(
    coords: torch.Tensor, mask: torch.Tensor, channels: torch.Tensor, *, grid_size: int, voxel_size: float,
    sigma: float, rotations: torch.Tensor | None = None,
) -> torch.Tensor:
    """Grids (B, 17, N, N, N) of Cα-centred environments with backbone channels (8 density
    channels) plus the residue's frame as three order-1 fields at the centre: the unit
    vectors Cα→N, Cα→C and Cα→Cβ (virtual), each carried by the same Gaussian as an atom
    at the Cα. The frame rotates with the environment, so an invariant network sees the
    residue's pose exactly without being given axes."""
    import torch

    B = coords.shape[0]
    x = coords.to(torch.float64)
    if rotations is not None:
        x = torch.einsum("bij,baj->bai", rotations.to(x), x)
    centre = torch.zeros(B, 3, dtype=x.dtype, device=x.device)
    kw: dict = dict(grid_size=grid_size, voxel_size=voxel_size, sigma=sigma, center=centre)
    density = voxelize_batch(x, mask, channels, 8, **kw)
    own = torch.stack([((channels == c) & mask.bool()).to(x.dtype)[..., None].mul(x).sum(1) for c in _FRAME_ATOMS], 1)
    frame = torch.nn.functional.normalize(own, dim=-1).reshape(B, 9)                      # (B, 3 fields × xyz)
    ones = torch.ones(B, 9, dtype=torch.bool, device=x.device)
    vectors = voxelize_batch(torch.zeros(B, 9, 3, dtype=x.dtype, device=x.device), ones,
                             torch.arange(9, device=x.device).expand(B, 9), 9, weights=frame, **kw)
    return torch.cat([density, vectors], dim=1)
