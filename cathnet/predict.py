"""Predict with a released model: CATH architectures (``cath-arch``, :class:`ArchitectureModel`)
or per-residue amino-acid propensities (``aa-propensity``, :class:`cathnet.propensity.PropensityModel`).

>>> import cathnet
>>> model = cathnet.load_model("cath-arch")                     # doctest: +SKIP
>>> model.predict("examples/2cc0A00.pdb")[0].architecture       # doctest: +SKIP
'3.20'

Released models live in :mod:`cathnet.models` as ``NAME.safetensors`` + ``NAME.json`` (see
its ``README.md``); ``$CATHNET_MODELS`` points elsewhere. A bare name (no folder part)
is a released model (or, if none has that name, a file or folder here); anything else is
a path. At load every steerable convolution collapses to a plain ``conv3d`` (weights
computed once).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from cathnet import checkpoint, so3
from cathnet import nn as enn
from cathnet.inference import Model, source_label
from cathnet.models import (
    DEFAULT_MODEL,
    DEFAULT_MODELS,
    MAX_ROTATIONS,
    available_models,
    models_dir,
    released_files,
    resolve_model,
)
from cathnet.precision import resolve_precision
from cathnet.propensity import PropensityModel
from cathnet.selection import selection_mask
from cathnet.structure import Structure, StructureError

__all__ = ["Prediction", "ArchitectureModel", "load_model", "models_dir", "available_models", "released_files",
           "resolve_model", "DEFAULT_MODELS", "MAX_ROTATIONS", "DOMAIN_RESIDUES", "size_warnings"]

#: Residues (with a Cα) outside which a structure is unlike the CATH domains the models
#: learnt from: of the pool's 5,649 domains, 0.25 % have fewer than 30 and 0.28 % more than 450.
DOMAIN_RESIDUES = (30, 450)


def size_warnings(structure: Structure) -> tuple[str, ...]:
    """A warning when ``structure`` has fewer or more residues with a Cα than
    :data:`DOMAIN_RESIDUES`: smaller or larger than 99.7 % of the training domains."""
    n = len(np.unique(structure.residue_index[selection_mask(structure, "ca")]))
    lo, hi = DOMAIN_RESIDUES
    if n < lo:
        return (f"{n} residue(s) with a Cα: smaller than 99.7 % of the domains the model learnt from "
                f"(under {lo}), so the answer is less reliable",)
    if n > hi:
        return (f"{n} residues with a Cα: larger than 99.7 % of the domains the model learnt from (over {hi}); "
                "if this holds several domains, predict each with --residues",)
    return ()


@dataclass
class Prediction:
    """The architecture predicted for one structure (or one chain of it)."""

    file: str
    chain: str | None = None
    architecture: str | None = None
    name: str | None = None
    probability: float | None = None
    top: list[dict] = field(default_factory=list)
    n_atoms: int = 0
    atoms_outside: int = 0
    agreement: float | None = None  # fraction of rotations whose top-1 is the consensus
    error: str | None = None
    warnings: tuple[str, ...] = ()  # problems of the file, and a size unlike a domain's (size_warnings)

    def to_dict(self, *, with_chain: bool = False) -> dict:
        out: dict = {"file": self.file}
        if with_chain:
            out["chain"] = self.chain
        if self.error is not None:
            out["error"] = self.error
            return out
        out.update(architecture=self.architecture, name=self.name, probability=self.probability, top=self.top)
        if self.agreement is not None:
            out["rotation_agreement"] = self.agreement
        if self.atoms_outside:
            out["atoms_outside"] = self.atoms_outside
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


class ArchitectureModel(Model):
    """A CATH architecture classifier with its preprocessing and classes."""

    task = "cath"

    def grids(self, structure: Structure, rotations=(None,)) -> tuple[np.ndarray, int, int]:
        """(len(rotations), C, N, N, N) input grids of ``structure`` under each rotation
        (None: as is), the number of atoms, and the most atoms outside the box."""
        g = self.preprocessing.grids(structure, rotations)
        return g.grids, g.n_atoms, g.n_outside

    def grid(self, structure: Structure, rotation: np.ndarray | None = None) -> tuple[np.ndarray, int, int]:
        """(C, N, N, N) input grid, number of atoms, number outside the box."""
        grids, n_atoms, outside = self.grids(structure, [rotation])
        return grids[0], n_atoms, outside

    def probabilities(self, grids: np.ndarray) -> np.ndarray:
        """Softmax over the classes for a stack of grids (B, C, N, N, N)."""
        return self.softmax(torch.from_numpy(np.ascontiguousarray(grids)).to(self.device))

    def _units(
        self, source, chain: str | None, residues: str | None, per_chain: bool
    ) -> list[tuple[str | None, Structure]]:
        """(chain, structure) pieces to predict for one file or :class:`Structure`."""
        structure = self.structure(source, chain, residues)
        if not per_chain:
            return [(chain, structure)]
        return [(c, structure.subset(structure.chain == c)) for c in structure.chains()]

    def predict(
        self, source: str | os.PathLike | Structure, *, chain: str | None = None, residues: str | None = None,
        per_chain: bool = False, rotations: int = 0, seed: int = 0, top: int = 3,
    ) -> list[Prediction]:
        """Predictions for one file or :class:`Structure` (one per chain with ``per_chain``).
        ``residues`` ("A:10-120,…") cuts a domain out of a file. Raises
        :class:`StructureError` for an unreadable file."""
        return list(self.predict_many(
            [source], chain=chain, residues=residues, per_chain=per_chain, rotations=rotations, seed=seed, top=top,
            raise_errors=True,
        ))

    def predict_many(
        self, sources: Iterable[str | os.PathLike | Structure], *, chain: str | None = None,
        residues: str | None = None, per_chain: bool = False, rotations: int = 0, seed: int = 0, top: int = 3,
        batch_size: int = 16,
        raise_errors: bool = False, on_done: Callable[[int], None] | None = None,
    ) -> Iterator[Prediction]:
        """Predictions in input order, batched; a structure that fails yields a
        :class:`Prediction` with ``error`` set (or raises with ``raise_errors``).
        ``rotations`` (0..:data:`MAX_ROTATIONS`) > 0 averages over that many random
        rotations (seeded per structure)."""
        self.check_rotations(rotations)
        pending: list[tuple[Prediction, np.ndarray]] = []

        def flush():
            if not pending:
                return
            grids = np.concatenate([gs for _, gs in pending])
            probs = np.concatenate(
                [self.probabilities(grids[i : i + batch_size]) for i in range(0, len(grids), batch_size)]
            )
            k = 0
            for pred, gs in pending:
                p = probs[k : k + len(gs)]
                k += len(gs)
                self._fill(pred, p, top)
            yield from (pred for pred, _ in pending)
            pending.clear()

        for index, source in enumerate(sources):
            try:
                rots = [None] if rotations <= 0 else list(so3.random_rotation(rotations, seed=[seed, index]))
                for unit_chain, structure in self._units(source, chain, residues, per_chain):
                    grids, n_atoms, outside = self.grids(structure, rots)
                    size = size_warnings(structure)
                    if per_chain:
                        size = tuple(f"chain {unit_chain}: {w}" for w in size)
                    pred = Prediction(source_label(source), unit_chain, n_atoms=n_atoms, atoms_outside=outside,
                                      warnings=(*structure.warnings, *size))
                    pending.append((pred, grids))
            except StructureError as exc:
                if raise_errors:
                    raise
                yield from flush()
                yield Prediction(source_label(source), chain, error=exc.reason)
            if on_done:
                on_done(1)
            if sum(len(g) for _, g in pending) >= batch_size:
                yield from flush()
        yield from flush()

    def _fill(self, pred: Prediction, probs: np.ndarray, top: int) -> None:
        if not np.isfinite(probs).all():
            pred.error = "the model's output is not finite (NaN or infinite probabilities)"
            return
        mean = probs.mean(axis=0)
        order = np.argsort(-mean, kind="stable")
        best = int(order[0])
        pred.architecture, pred.name, pred.probability = self.codes[best], self.names[best], round(float(mean[best]), 4)
        pred.top = [
            {"architecture": self.codes[i], "name": self.names[i], "probability": round(float(mean[i]), 4)}
            for i in order[:top]
        ]
        if len(probs) > 1:
            pred.agreement = round(float((probs.argmax(axis=1) == best).mean()), 4)


def load_model(
    name: str | os.PathLike = DEFAULT_MODEL, *, device: str | torch.device = "cpu", collapse: bool = True,
    precision: str = "auto",
):
    """A released model by name (``"cath-arch"``, ``"aa-propensity"``, see
    :func:`available_models`) or by path to its ``.json``/``.safetensors``/stem or a
    training folder: an :class:`ArchitectureModel` or a
    :class:`~cathnet.propensity.PropensityModel`, after the model's task. With ``collapse``
    every steerable convolution becomes a plain ``conv3d``. ``precision``: auto, fp32 or
    bf16 (:mod:`cathnet.precision`; auto is bf16 on CPUs with native bf16 and on CUDA)."""
    precision = resolve_precision(precision, torch.device(device))  # a bad name is the caller's error
    path = resolve_model(name)
    network, meta = checkpoint.load_model(path, device="cpu")
    if collapse:
        network = enn.collapse(network)
    if meta.get("task") == PropensityModel.task:
        try:
            return PropensityModel(network, meta, device, precision)
        except (KeyError, ValueError) as exc:
            raise checkpoint.CheckpointError(f"{path}: not a usable amino-acid model ({exc})") from None
    return ArchitectureModel(network, meta, device, precision)
