"""Datasets written by :func:`cathnet.data.build_dataset` (keys: :mod:`cathnet.data`),
loaded and checked (no pickle).

A file that is not a regular, complete npz, lacks a key, or whose arrays disagree (offsets
that do not partition the atoms, labels or splits out of range, non-finite positions, a
residue table pointing outside its domain) is a :class:`~cathnet.errors.DatasetError`
with one line naming the file and the problem.
"""
from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path
from typing import Iterable

import numpy as np

from cathnet.environments import ENVIRONMENT, environment
from cathnet.errors import DatasetError
from cathnet.fileio import regular_file_error, sha256

__all__ = ["FORMAT", "CathData", "EnvironmentData"]

FORMAT = "cathnet-cath/1"


class CathData:
    """A dataset written by :func:`build_dataset`, loaded into memory (no pickle)."""

    KEYS = (
        "positions", "channels", "residue_index", "offsets", "labels", "class_codes", "class_names",
        "ids", "cath_codes", "superfamilies", "resolutions", "splits", "meta",
    )

    def __init__(self, path: str | Path):
        self.path = Path(path)
        arrays = _load_npz(self.path, self.KEYS, "a cathnet CATH dataset")
        try:
            self.meta: dict = json.loads(str(arrays.pop("meta")))
        except ValueError:
            self.meta = None
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT:
            found = self.meta.get("format") if isinstance(self.meta, dict) else None
            raise DatasetError(f"{self.path}: format {found!r}, expected {FORMAT!r}")
        _check_domains(self.path, arrays, self.meta)
        self.positions = arrays["positions"]
        self.channels = arrays["channels"]
        self.residue_index = arrays["residue_index"]
        self.offsets = arrays["offsets"]
        self.labels = arrays["labels"]
        self.class_codes = [str(c) for c in arrays["class_codes"]]
        self.class_names = [str(c) for c in arrays["class_names"]]
        self.ids = arrays["ids"]
        self.cath_codes = arrays["cath_codes"]
        self.superfamilies = arrays["superfamilies"]
        self.resolutions = arrays["resolutions"]
        self.splits = arrays["splits"]
        self.n_channels: int = self.meta["n_channels"]
        self.n_splits: int = self.meta["n_splits"]
        self._sha256: str | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.class_codes)

    @property
    def sha256(self) -> str:
        """SHA-256 of the npz file (computed once)."""
        if self._sha256 is None:
            self._sha256 = sha256(self.path)
        return self._sha256

    def atoms(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates (n, 3) and channels (n,) of domain ``i``."""
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return self.positions[lo:hi], self.channels[lo:hi]

    def indices(self, splits: Iterable[int]) -> np.ndarray:
        """Domain indices whose split is in ``splits``."""
        splits = list(splits)
        bad = [s for s in splits if not 0 <= s < self.n_splits]
        if bad:
            raise DatasetError(f"split(s) {bad} out of range: {self.path} has splits 0..{self.n_splits - 1}")
        return np.flatnonzero(np.isin(self.splits, splits))


class EnvironmentData(CathData):
    """An ``environment`` dataset (``build_dataset(..., atoms="environment")``): the
    domains' C/N/O/S atoms plus a residue table, for the amino-acid task."""

    RES_KEYS = ("backbone", "res_offsets", "res_ca", "res_n", "res_c", "res_labels")
    backbone: np.ndarray
    res_offsets: np.ndarray
    res_ca: np.ndarray
    res_n: np.ndarray
    res_c: np.ndarray
    res_labels: np.ndarray

    def __init__(self, path: str | Path):
        super().__init__(path)
        if self.meta.get("atoms") != ENVIRONMENT:
            raise DatasetError(
                f"{self.path}: built with --atoms {self.meta.get('atoms')}; the amino-acid task needs --atoms {ENVIRONMENT}"
            )
        arrays = _load_npz(self.path, self.RES_KEYS, "an environment dataset", optional=("res_o",))
        _check_residues(self.path, arrays, np.diff(self.offsets), len(self.positions))
        for k in self.RES_KEYS:
            setattr(self, k, arrays[k])
        self.res_o = arrays.get("res_o")  # absent from datasets built before it was added
        self.res_domain = np.repeat(np.arange(len(self), dtype=np.int32), np.diff(self.res_offsets))

    def residues(self, splits: Iterable[int], *, needs_frame: bool = False) -> np.ndarray:
        """Rows of the standard residues in ``splits`` that have a Cα (and N, C when
        ``needs_frame``: oriented environments or backbone channels)."""
        domains = self.indices(splits)
        ok = np.isin(self.res_domain, domains) & (self.res_labels >= 0) & (self.res_ca >= 0)
        if needs_frame:
            ok &= (self.res_n >= 0) & (self.res_c >= 0)
        return np.flatnonzero(ok)

    def residue_environment(
        self, row: int, *, radius: float, oriented: bool, backbone_channels: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Environment (coordinates relative to the Cα, channels) of residue ``row``."""
        d = self.res_domain[row]
        lo, hi = self.offsets[d], self.offsets[d + 1]
        if backbone_channels and self.res_o is None:
            raise DatasetError(f"{self.path}: built before backbone channels existed; rebuild it with --atoms environment")
        return environment(
            self.positions[lo:hi], self.channels[lo:hi], self.residue_index[lo:hi], self.backbone[lo:hi],
            row - self.res_offsets[d], self.res_ca[row], self.res_n[row], self.res_c[row],
            -1 if self.res_o is None else self.res_o[row],
            radius=radius, oriented=oriented, backbone_channels=backbone_channels,
        )


def _load_npz(path: Path, keys: tuple[str, ...], what: str, optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (and those of ``optional`` present) of an npz file, with one
    :class:`DatasetError` for a file that is not a regular, complete npz holding them."""
    reason = regular_file_error(path)
    if reason:
        raise DatasetError(f"{path}: {reason}")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z]
            if missing:
                raise DatasetError(f"{path}: not {what} (missing {', '.join(missing)})")
            return {k: z[k] for k in (*keys, *optional) if k in z}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise DatasetError(f"{path}: cannot read dataset ({type(exc).__name__}: {exc})") from None


def _require(path: Path, ok: bool, problem: str) -> None:
    if not ok:
        raise DatasetError(f"{path}: corrupt dataset: {problem}")


def _index_range(a: np.ndarray, lo: int, hi: int) -> bool:
    """Whether ``a`` holds integers in ``lo..hi - 1``."""
    return a.dtype.kind in "iu" and (len(a) == 0 or (int(a.min()) >= lo and int(a.max()) < hi))


def _check_domains(path: Path, a: dict[str, np.ndarray], meta: dict) -> None:
    """Shapes, offsets, labels, splits and channels of a CATH dataset agree."""
    n_channels, n_splits = meta.get("n_channels"), meta.get("n_splits")
    _require(path, isinstance(n_channels, int) and isinstance(n_splits, int) and n_channels >= 1 and n_splits >= 1,
             "meta lacks n_channels or n_splits")
    m, d, offsets = len(a["positions"]), len(a["labels"]), a["offsets"]
    _require(path, a["positions"].shape == (m, 3) and np.isfinite(a["positions"]).all(), "positions are not finite (M, 3)")
    _require(path, len(a["channels"]) == m == len(a["residue_index"]), "per-atom arrays differ in length")
    _require(path, _index_range(a["channels"], 0, n_channels), f"channels outside 0..{n_channels - 1}")
    _require(path, offsets.shape == (d + 1,) and _index_range(offsets, 0, m + 1) and offsets[0] == 0
             and offsets[-1] == m and (np.diff(offsets) >= 0).all(), "offsets do not partition the atoms")
    _require(path, all(len(a[k]) == d for k in ("ids", "cath_codes", "superfamilies", "resolutions", "splits")),
             "per-domain arrays differ in length")
    _require(path, len(a["class_codes"]) == len(a["class_names"]) and _index_range(a["labels"], 0, len(a["class_codes"])),
             "labels outside the classes")
    _require(path, _index_range(a["splits"], 0, n_splits), f"splits outside 0..{n_splits - 1}")


def _check_residues(path: Path, a: dict[str, np.ndarray], counts: np.ndarray, m: int) -> None:
    """The residue table of an environment dataset indexes its domains' atoms."""
    res_offsets = a["res_offsets"]
    r = len(a["res_labels"])
    _require(path, len(a["backbone"]) == m, "backbone differs in length from the atoms")
    _require(path, res_offsets.shape == (len(counts) + 1,) and _index_range(res_offsets, 0, r + 1)
             and res_offsets[0] == 0 and res_offsets[-1] == r and (np.diff(res_offsets) >= 0).all(),
             "res_offsets do not partition the residues")
    _require(path, _index_range(a["res_labels"], -1, 20), "res_labels outside -1..19")
    limit = np.repeat(counts, np.diff(res_offsets))
    for k in ("res_ca", "res_n", "res_c", "res_o"):
        if k in a:
            _require(path, len(a[k]) == r and a[k].dtype.kind in "iu" and ((a[k] >= -1) & (a[k] < limit)).all(),
                     f"{k} outside its domain's atoms")
