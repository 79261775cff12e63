"""Per-residue amino-acid propensities from atomic environments (the paper's §4.2 task).

>>> import cathnet
>>> model = cathnet.load_model("aa-propensity")                       # doctest: +SKIP
>>> r = model.predict("examples/2cc0A00.pdb")[0]                      # doctest: +SKIP
>>> r.native, r.predicted, round(r.log_odds, 2)                       # doctest: +SKIP
('ALA', 'GLY', -0.37)

Every residue with a Cα gets the probabilities of the 20 amino acids given its
environment (:mod:`cathnet.environments`: C/N/O/S atoms within 12 Å of the Cα, its own
side chain removed), and the log-odds of its native residue,
``ln(p(native) / f(native))`` with ``f`` the amino-acid frequency of the training set: > 0
where the environment favours the native residue more than chance, well below 0 for a
residue its surroundings do not explain (a mutation site, an error, a functional residue).
For a model trained with class-balanced sampling the background is uniform (1/20).

Neighbourhoods: the released model was trained on CATH domain files, so its training
environments never contained atoms of other domains or chains; a whole PDB file gives
residues at interfaces their full surroundings. Cut a domain out
(``--chain``/``--residues``) to see what the model saw in training.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import cKDTree

from cathnet import so3
from cathnet.environments import AMINO_ACIDS, ResidueAtoms, environment, pad_environments, residue_atoms
from cathnet.inference import Model, source_label
from cathnet.structure import Structure, StructureError

__all__ = ["ResiduePrediction", "FilePrediction", "PropensityModel"]


@dataclass
class ResiduePrediction:
    """Amino-acid probabilities of one residue."""

    chain: str
    resnum: int
    icode: str
    native: str  # residue name in the file
    predicted: str  # most probable amino acid (three-letter code)
    probabilities: np.ndarray  # (20,) in AMINO_ACIDS order
    log_odds: float | None  # ln(p(native) / training frequency of native); None if non-standard

    @property
    def p_native(self) -> float | None:
        return float(self.probabilities[AMINO_ACIDS.index(self.native)]) if self.native in AMINO_ACIDS else None

    def to_dict(self) -> dict:
        return {
            "chain": self.chain, "resnum": self.resnum, "icode": self.icode, "native": self.native,
            "predicted": self.predicted,
            "probabilities": {aa: round(float(p), 5) for aa, p in zip(AMINO_ACIDS, self.probabilities)},
            "log_odds": None if self.log_odds is None else round(self.log_odds, 4),
        }


@dataclass
class FilePrediction:
    """All residues of one structure, or the reason it could not be read."""

    file: str
    residues: list[ResiduePrediction] = field(default_factory=list)
    skipped: int = 0  # residues without the atoms an environment needs (Cα; N and C for frames)
    error: str | None = None
    warnings: tuple[str, ...] = ()  # problems of the file that did not stop the prediction

    @property
    def recovery(self) -> float | None:
        """Fraction of standard residues whose native amino acid is the top prediction."""
        standard = [r for r in self.residues if r.native in AMINO_ACIDS]
        return sum(r.predicted == r.native for r in standard) / len(standard) if standard else None


class PropensityModel(Model):
    """A trained amino-acid network with its environment and voxel parameters."""

    task = "aa"

    def __init__(
        self, network: torch.nn.Module, meta: dict, device: str | torch.device = "cpu", precision: str = "auto"
    ):
        super().__init__(network, meta, device, precision)
        if self.names != list(AMINO_ACIDS):
            raise ValueError(f"model classes {meta['classes']['names']} are not the 20 amino acids in order")
        if meta.get("training", {}).get("balance"):
            freq = np.full(len(AMINO_ACIDS), 1 / len(AMINO_ACIDS))
        else:
            freq = np.asarray(meta["classes"]["train_frequency"], dtype=np.float64)
        if freq.shape != (len(AMINO_ACIDS),) or not (np.isfinite(freq) & (freq >= 0)).all():
            raise ValueError("classes.train_frequency is not 20 finite frequencies")
        self.log_background = np.log(np.maximum(freq, 1e-6))

    def grids(self, envs: list[tuple[np.ndarray, np.ndarray]], rotations: np.ndarray | None = None) -> torch.Tensor:
        """(B, C, N, N, N) input grids, centred on the Cα, of a list of environments
        (coordinates relative to the Cα, channels), on the model's device; with
        ``rotations`` (K, 3, 3), (B·K, C, N, N, N): every environment under every rotation."""
        coords, channels, mask = (torch.from_numpy(a).to(self.device) for a in pad_environments(envs))
        R: torch.Tensor | None = None
        if rotations is not None:
            k = len(rotations)
            coords, channels, mask = (t.repeat_interleave(k, 0) for t in (coords, channels, mask))
            R = torch.as_tensor(np.asarray(rotations), dtype=torch.float32, device=self.device).repeat(len(envs), 1, 1)
        centre = torch.zeros(len(coords), 3, device=self.device)
        return self.preprocessing.voxelize_batch(coords, mask, channels, center=centre, rotations=R)

    def probabilities(
        self, envs: list[tuple[np.ndarray, np.ndarray]], rotations: np.ndarray | None = None
    ) -> np.ndarray:
        """(B, 20) softmax for a list of environments; with ``rotations`` (K, 3, 3) the mean
        softmax over the environment rotated by each (smooths the grid's discretisation)."""
        p = self.softmax(self.grids(envs, rotations))
        return p if rotations is None else p.reshape(len(envs), len(rotations), -1).mean(1)

    def environments(
        self, structure: Structure
    ) -> tuple[ResidueAtoms, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """The residue table of ``structure``, the rows that have an environment, and their environments."""
        a = residue_atoms(structure)
        rows = np.flatnonzero(a.usable(self.preprocessing.needs_frame))
        if len(rows) == 0:
            return a, rows, []
        prep = self.preprocessing
        near = cKDTree(a.coords).query_ball_point(a.coords[a.ca[rows]], prep.radius + 1e-3)
        envs = [environment(a.coords, a.channels, a.residue, a.backbone, r, a.ca[r], a.n[r], a.c[r], a.o[r],
                            radius=prep.radius, oriented=prep.oriented, backbone_channels=prep.backbone_channels,
                            candidates=np.sort(np.asarray(idx, np.int64)))
                for r, idx in zip(rows, near)]
        return a, rows, envs

    def predict(self, source: str | os.PathLike | Structure, *, chain: str | None = None, residues: str | None = None,
                rotations: int = 0, seed: int = 0, batch_size: int = 128) -> list[ResiduePrediction]:
        """Predictions for every residue of one file or :class:`Structure` (raises
        :class:`StructureError` for an unreadable file)."""
        result = next(self.predict_many([source], chain=chain, residues=residues, rotations=rotations, seed=seed,
                                        batch_size=batch_size, raise_errors=True))
        return result.residues

    def predict_many(
        self, sources: Iterable[str | os.PathLike | Structure], *, chain: str | None = None,
        residues: str | None = None, rotations: int = 0, seed: int = 0, batch_size: int = 128,
        raise_errors: bool = False, on_done: Callable[[int], None] | None = None,
    ) -> Iterator[FilePrediction]:
        """One :class:`FilePrediction` per source, in order; a source that fails carries
        ``error`` (or raises with ``raise_errors``). ``rotations`` > 0 averages every
        residue's probabilities over that many random rotations (seeded per source; not
        for oriented models, whose frame fixes the pose). ``on_done(n)`` counts residues."""
        if rotations and self.preprocessing.oriented:
            raise ValueError("rotation averaging does not apply to a model of oriented environments")
        self.check_rotations(rotations)
        for index, source in enumerate(sources):
            label = source_label(source)
            R = so3.random_rotation(rotations, seed=[seed, index]) if rotations > 0 else None
            try:
                per_batch = max(1, batch_size // max(rotations, 1))
                yield self._predict_one(source, label, chain, residues, R, per_batch, on_done)
            except StructureError as exc:
                if raise_errors:
                    raise
                yield FilePrediction(label, error=exc.reason)

    def _predict_one(self, source, label, chain, residues, R, batch_size, on_done) -> FilePrediction:
        structure = self.structure(source, chain, residues)
        a, rows, envs = self.environments(structure)
        if len(rows) == 0:
            needs = "a Cα" + (", N and C" if self.preprocessing.needs_frame else "")
            raise StructureError(label, f"no residue with {needs}")
        out = FilePrediction(label, skipped=int(len(a.ca) - len(rows)), warnings=structure.warnings)
        for lo in range(0, len(rows), batch_size):
            chunk = rows[lo: lo + batch_size]
            probs = self.probabilities(envs[lo: lo + batch_size], R)
            if not np.isfinite(probs).all():
                raise StructureError(label, "the model's output is not finite (NaN or infinite probabilities)")
            for r, p in zip(chunk, probs):
                label_r = int(a.labels[r])
                out.residues.append(ResiduePrediction(
                    chain=str(a.chain[r]), resnum=int(a.resnum[r]), icode=str(a.icode[r]), native=str(a.native[r]),
                    predicted=AMINO_ACIDS[int(p.argmax())], probabilities=p,
                    log_odds=(None if label_r < 0
                              else float(math.log(max(float(p[label_r]), 1e-12)) - self.log_background[label_r])),
                ))
            if on_done:
                on_done(len(chunk))
        return out
