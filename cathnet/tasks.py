"""Training tasks: what an item is, its label, and how a batch of items becomes atoms.

* ``cath``: one item per domain, label = CATH architecture, grid centred on the domain's
  mean atom position (:class:`CathTask`).
* ``aa``: one item per residue, label = its amino acid, grid centred on its Cα and filled
  with its environment (:mod:`cathnet.environments`; :class:`AminoAcidTask`).

A task exposes ``preprocessing`` (:class:`~cathnet.preprocess.Preprocessing`: atoms, grid,
input fields), ``n_classes``, ``n_splits``, ``labels`` (class of every item), ``sha256`` (of
the data file), ``items(splits)``, ``batch(items) -> Batch`` and ``metadata()`` (``task``,
``input``, ``classes``, ``data``). Batches are voxelized on the training device
(:func:`cathnet.inference.batch_grids`).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from cathnet import fields as input_fields
from cathnet.canonical import CANONICAL
from cathnet.data import CathData, EnvironmentData
from cathnet.environments import AMINO_ACIDS, ENVIRONMENT, ONE_LETTER, RADIUS, pad_environments
from cathnet.errors import DatasetError, TrainError
from cathnet.preprocess import Preprocessing
from cathnet.selection import SELECTIONS
from cathnet.voxel import Voxels

__all__ = ["TrainError", "Batch", "CathTask", "AminoAcidTask", "TASKS", "make_task"]


class Batch(NamedTuple):
    """Padded atoms of a batch (CPU tensors)."""

    coords: torch.Tensor  # (B, A, 3) float32, Å
    mask: torch.Tensor  # (B, A) bool
    channels: torch.Tensor  # (B, A) long
    targets: torch.Tensor  # (B,) long
    center: torch.Tensor | None = None  # (B, 3) grid centres; None: mean atom position
    directions: torch.Tensor | None = None  # (B, A, 3) element directions of oriented input fields


def _batch(atoms: list[tuple[np.ndarray, np.ndarray]], targets: np.ndarray, centred: bool) -> Batch:
    coords, channels, mask = pad_environments(atoms)
    center = torch.zeros(len(atoms), 3) if centred else None
    return Batch(torch.from_numpy(coords), torch.from_numpy(mask), torch.from_numpy(channels),
                 torch.from_numpy(targets.astype(np.int64)), center)


class CathTask:
    """CATH architecture classification: one grid per domain, label = architecture.
    ``fields`` (e.g. ``ss-orientation``, :mod:`cathnet.fields`) adds oriented input fields
    to a ``ca-ss`` dataset."""

    name = "cath"
    voxels = Voxels()  # the default grid

    def __init__(self, data: str | Path, *, fields: str | None = None, voxels: Voxels | None = None,
                 canonical: str | None = None):
        self.data = CathData(data)
        atoms = self.data.meta["atoms"]
        if atoms not in SELECTIONS:
            raise DatasetError(f"{self.data.path}: built with --atoms {atoms}; --task cath needs "
                               f"{', '.join(SELECTIONS)}")
        if fields is not None:
            if fields not in input_fields.FIELDS:
                known = ", ".join(input_fields.FIELDS)
                raise TrainError(f"--fields: unknown input fields {fields!r}; available: {known}")
            if atoms != "ca-ss":
                raise TrainError(f"{self.data.path}: built with --atoms {atoms}; the input fields {fields} "
                                 "(--fields) need a dataset of --atoms ca-ss")
        if canonical is not None and canonical not in CANONICAL:
            raise TrainError(f"--canonical: unknown frame {canonical!r}; available: {', '.join(CANONICAL)}")
        self.preprocessing = Preprocessing(atoms, voxels or self.voxels, fields, canonical=canonical)
        self.n_classes = self.data.n_classes
        self.labels = self.data.labels
        self.n_splits = self.data.n_splits

    @property
    def sha256(self) -> str:
        return self.data.sha256

    def items(self, splits) -> np.ndarray:
        return self.data.indices(splits)

    def batch(self, items: np.ndarray) -> Batch:
        atoms = [self.data.atoms(i) for i in items]
        batch = _batch(atoms, self.labels[items], centred=False)
        if self.preprocessing.fields is None:
            return batch
        directions = np.zeros(batch.coords.shape, np.float32)
        for b, (xyz, _) in enumerate(atoms):
            directions[b, : len(xyz)] = input_fields.element_directions(xyz)
        return batch._replace(directions=torch.from_numpy(directions))

    def metadata(self) -> dict:
        d = self.data
        return {
            "task": self.name,
            "input": self.preprocessing.metadata(),
            "classes": {"codes": d.class_codes, "names": d.class_names},
            "data": {"file": d.path.name, "sha256": d.sha256, "n_domains": len(d), "n_splits": d.n_splits},
        }


class AminoAcidTask:
    """Amino-acid propensity: one grid per residue, centred on its Cα, holding the C/N/O/S
    atoms within ``radius`` minus its own side chain; label = its amino acid. ``oriented``
    puts each environment in its backbone frame (as Boomsma & Frellsen), otherwise it keeps
    the structure's axes; ``backbone_channels`` gives the residue's own N, C, O and virtual
    Cβ channels of their own (:mod:`cathnet.environments`). Environments are cut out batch by
    batch from the atoms, so memory stays at the size of the atom arrays whatever the number
    of residues."""

    name = "aa"
    voxels = Voxels(16, 1.5, 0.75)  # 24 Å box around the 12 Å sphere

    def __init__(
        self, data: str | Path, *, oriented: bool = False, radius: float = RADIUS, backbone_channels: bool = False,
        fields: str | None = None, voxels: Voxels | None = None,
    ):
        self.data = EnvironmentData(data)
        if backbone_channels and self.data.res_o is None:
            raise DatasetError(f"{data}: built before backbone channels existed; rebuild it with --atoms environment")
        if fields is not None and (fields != input_fields.FRAME or not backbone_channels):
            raise TrainError(f"--fields for --task aa: only {input_fields.FRAME}, with --backbone-channels")
        self.preprocessing = Preprocessing(ENVIRONMENT, voxels or self.voxels, fields, radius, oriented,
                                           backbone_channels)
        self.n_classes = len(AMINO_ACIDS)
        self.labels = self.data.res_labels
        self.n_splits = self.data.n_splits

    @property
    def sha256(self) -> str:
        return self.data.sha256

    def items(self, splits) -> np.ndarray:
        return self.data.residues(splits, needs_frame=self.preprocessing.needs_frame)

    def batch(self, items: np.ndarray) -> Batch:
        p = self.preprocessing
        envs = [self.data.residue_environment(r, radius=p.radius, oriented=p.oriented,
                                              backbone_channels=p.backbone_channels) for r in items]
        return _batch(envs, self.labels[items], centred=True)

    def metadata(self) -> dict:
        d = self.data
        return {
            "task": self.name,
            "input": self.preprocessing.metadata(),
            "classes": {"codes": list(ONE_LETTER), "names": list(AMINO_ACIDS)},
            "data": {"file": d.path.name, "sha256": d.sha256, "n_domains": len(d), "n_splits": d.n_splits,
                     "n_residues": int((d.res_labels >= 0).sum())},
        }


TASKS: dict[str, type[CathTask] | type[AminoAcidTask]] = {"cath": CathTask, "aa": AminoAcidTask}


def make_task(
    name: str, data: str | Path, *, grid_size: int | None = None, voxel_size: float | None = None,
    sigma: float | None = None, **options,
):
    """Task ``name`` on dataset ``data``; ``options`` go to its constructor (``fields``;
    ``cath``: ``canonical``; ``aa``: ``oriented``, ``radius``, ``backbone_channels``). The
    grid is the task's default but for the sizes given; σ defaults to half a given voxel."""
    if name not in TASKS:
        raise TrainError(f"--task: unknown task {name!r}; available: {', '.join(sorted(TASKS))}")
    if name == "cath" and (options.get("oriented") or options.get("backbone_channels")):
        raise TrainError("--oriented and --backbone-channels only apply to --task aa")
    if name == "aa" and options.get("canonical") is not None:
        raise TrainError("--canonical only applies to --task cath (environments have their backbone frame: --oriented)")
    task = TASKS[name]
    d = task.voxels
    voxel = d.voxel_size if voxel_size is None else voxel_size
    if sigma is None:
        sigma = d.sigma if voxel_size is None else voxel / 2
    voxels = Voxels(d.grid_size if grid_size is None else grid_size, voxel, sigma)
    if voxels.grid_size < 1 or not voxels.voxel_size > 0 or not voxels.sigma > 0:
        raise TrainError(f"grid size, voxel size and sigma must be positive, got {voxels}")
    keys = ("oriented", "radius", "backbone_channels", "fields") if name == "aa" else ("fields", "canonical")
    return task(data, voxels=voxels, **{k: v for k, v in options.items() if k in keys and v is not None})


def task_for(name: str, data: str | Path, prep: Preprocessing):
    """Task ``name`` on dataset ``data`` that prepares its items as ``prep`` says (a model's
    input, from its metadata)."""
    return make_task(name, data, fields=prep.fields, radius=prep.radius, oriented=prep.oriented,
                     backbone_channels=prep.backbone_channels, canonical=prep.canonical, **asdict(prep.voxels))
