"""How a structure becomes a network's input: the atoms (a selection of
:mod:`cathnet.selection`, or residue environments of :mod:`cathnet.environments`), the grid
(:class:`~cathnet.voxel.Voxels`) and optional oriented input fields (:mod:`cathnet.fields`).

One :class:`Preprocessing` serves training, prediction and ``cathnet voxelize``. A model's
metadata carries it (``input``, written by :meth:`Preprocessing.metadata`, read back by
:meth:`Preprocessing.from_metadata`), as torchvision's weights carry their transforms.
torch is imported by the methods that use it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from cathnet import canonical as canonical_frames
from cathnet import fields as input_fields
from cathnet.environments import ENVIRONMENT, RADIUS, channel_names
from cathnet.selection import CHANNELS, select_atoms, selection_mask
from cathnet.structure import Structure, StructureError
from cathnet.voxel import Voxels, voxelize, voxelize_batch

if TYPE_CHECKING:
    import torch

__all__ = ["Grids", "Preprocessing"]


class Grids(NamedTuple):
    """The input grids of one structure under K rotations."""

    grids: np.ndarray  # (K, C, N, N, N) float32
    n_atoms: int  # selected atoms
    n_outside: int  # the most atoms outside the box under any rotation
    center: np.ndarray  # (3,) float64 grid centre in Å: the selected atoms' mean position
    rotations: np.ndarray  # (K, 3, 3) float64: each grid shows R (x − center), canonical frame included


@dataclass(frozen=True)
class Preprocessing:
    """Atoms → input grid. ``selection`` is an atom selection (grid centred on the atoms'
    mean position) or ``environment`` (one grid per residue, centred on its Cα, holding
    the atoms within ``radius``, in the residue's backbone frame when ``oriented``, its own
    backbone in channels of their own with ``backbone_channels``). ``fields``: oriented
    input fields (``ss-orientation``, ``ss-pairing`` on ``ca-ss``, ``frame`` on environments). ``canonical``:
    ``principal`` turns every atom selection into its principal-axes frame first
    (:mod:`cathnet.canonical`), whatever rotation it comes in."""

    selection: str = "ca"
    voxels: Voxels = field(default_factory=Voxels)
    fields: str | None = None
    radius: float = RADIUS
    oriented: bool = False
    backbone_channels: bool = False
    canonical: str | None = None

    @classmethod
    def from_metadata(cls, meta: dict) -> Preprocessing:
        """The preprocessing of a model, from its metadata (``task`` and ``input``)."""
        inp = meta["input"]
        voxels = Voxels(inp["grid_size"], inp["voxel_size"], inp["sigma"])
        if meta.get("task") != "aa":
            return cls(inp["atoms"], voxels, inp.get("fields"), canonical=inp.get("canonical"))
        return cls(ENVIRONMENT, voxels, inp.get("fields"), float(inp["radius"]), bool(inp["oriented"]),
                   bool(inp.get("backbone_channels", False)))

    @property
    def environment(self) -> bool:
        return self.selection == ENVIRONMENT

    @property
    def needs_frame(self) -> bool:
        """Whether an environment needs its residue's N and C besides the Cα."""
        return self.oriented or self.backbone_channels

    @property
    def channels(self) -> tuple[str, ...]:
        """Names of the input channels, in order."""
        if self.environment:
            names = channel_names(self.backbone_channels)
            return names + input_fields.FRAME_CHANNELS if self.fields == input_fields.FRAME else names
        if self.fields is not None:
            return tuple(input_fields.channel_names(self.fields))
        return CHANNELS[self.selection]

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def in_type(self) -> str | None:
        """The field type of oriented input fields (None for densities only)."""
        if self.fields is None:
            return None
        return input_fields.FRAME_TYPE if self.fields == input_fields.FRAME else input_fields.in_type(self.fields)

    def metadata(self) -> dict:
        """The ``input`` entry of a model's metadata."""
        inp = {**asdict(self.voxels), "centre": "CA" if self.environment else "mean atom position",
               "atoms": self.selection, "n_channels": self.n_channels}
        if self.environment:
            inp.update(channels=list(self.channels), radius=self.radius, oriented=self.oriented,
                       backbone_channels=self.backbone_channels)
        if self.fields is not None:
            inp.update(fields=self.fields, in_type=self.in_type)
        if self.canonical is not None:
            inp.update(canonical=self.canonical)
        return inp

    def select(self, structure: Structure) -> tuple[np.ndarray, np.ndarray, int]:
        """(coords, channels, n_channels) of the selected atoms; :class:`StructureError` if none."""
        coords, channels, n_channels = select_atoms(structure, self.selection)
        if len(coords) == 0:
            raise StructureError(structure.path, f"no {self.selection} atoms")
        return coords, channels, n_channels

    def grids(self, structure: Structure, rotations=(None,)) -> Grids:
        """The input grids of ``structure`` (an atom selection) under each rotation (None: as is)."""
        coords, channels, n_channels = self.select(structure)  # once for all rotations
        center = coords.astype(np.float64).mean(axis=0)
        applied = np.stack([np.eye(3) if r is None else np.asarray(r, np.float64) for r in rotations])
        if self.canonical is not None:
            applied = self._canonical(coords, applied)
        if self.fields is not None:
            return self._field_grids(structure, coords, channels, applied, center)
        v = self.voxels
        out = [voxelize(coords, channels, n_channels, grid_size=v.grid_size, voxel_size=v.voxel_size, sigma=v.sigma,
                        center=center, rotation=R) for R in applied]
        return Grids(np.stack([g.grid for g in out]), len(coords), max(g.n_outside for g in out), center, applied)

    def _canonical(self, coords: np.ndarray, R: np.ndarray) -> np.ndarray:
        """Each of the rotations ``R`` (K, 3, 3) composed with the canonical frame it leaves."""
        import torch

        atoms = torch.from_numpy(np.repeat(coords[None], len(R), 0))
        mask = torch.ones(atoms.shape[:2], dtype=torch.bool)
        return canonical_frames.principal_frames(atoms, mask, rotations=torch.from_numpy(R)).numpy()

    def _field_grids(self, structure: Structure, coords, ss, R: np.ndarray, center) -> Grids:
        """:meth:`grids` with oriented input fields (torch), under the rotations ``R`` (K, 3, 3)."""
        import torch

        chain = structure.chain[selection_mask(structure, self.selection)]
        directions = input_fields.element_directions(coords, chain[1:] == chain[:-1])
        k = len(R)
        beyond = np.abs(np.einsum("kij,aj->kai", R, coords.astype(np.float64) - center))
        outside = int((beyond >= self.voxels.grid_size * self.voxels.voxel_size / 2).any(-1).sum(1).max())
        mask = np.ones(len(coords), bool)
        atoms = (torch.from_numpy(np.repeat(a[None], k, 0)) for a in (coords, mask, ss, directions))
        grids = self._voxelize(*atoms, rotations=torch.from_numpy(R))
        return Grids(grids.numpy(), len(coords), outside, center, R)

    def voxelize_batch(
        self, coords: torch.Tensor, mask: torch.Tensor, channels: torch.Tensor, directions: torch.Tensor | None = None,
        *, center: torch.Tensor | None = None, rotations: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Grids (B, C, N, N, N) of padded atom batches on their device (:func:`cathnet.voxel.voxelize_batch`):
        ``coords`` (B, A, 3), ``mask`` and ``channels`` (B, A), ``directions`` (B, A, 3) of
        ``ss-orientation`` / ``ss-pairing`` fields; ``center`` (B, 3) defaults to the mean atom position,
        ``rotations`` (B, 3, 3) turn each structure about it first (then into its canonical
        frame, with ``canonical``)."""
        if self.canonical is not None:
            rotations = canonical_frames.principal_frames(coords, mask, center=center, rotations=rotations)
        return self._voxelize(coords, mask, channels, directions, center=center, rotations=rotations)

    def _voxelize(
        self, coords: torch.Tensor, mask: torch.Tensor, channels: torch.Tensor, directions: torch.Tensor | None = None,
        *, center: torch.Tensor | None = None, rotations: torch.Tensor | None = None,
    ) -> torch.Tensor:
        v = self.voxels
        grid: dict[str, Any] = dict(grid_size=v.grid_size, voxel_size=v.voxel_size, sigma=v.sigma, rotations=rotations)
        if self.fields == input_fields.FRAME:
            return input_fields.voxelize_frame(coords, mask, channels, **grid)
        if self.fields is not None:
            if directions is None:
                raise ValueError(f"{self.fields} input fields need the directions of the atoms")
            return input_fields.voxelize_fields(coords, mask, channels, directions, center=center,
                                                fields=self.fields, **grid)
        return voxelize_batch(coords, mask, channels, self.n_channels, center=center, **grid)
