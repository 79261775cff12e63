"""The steerable kernel basis of Weiler et al. (2018), §3.

A convolution from a field of order ``l`` to a field of order ``j`` has a kernel
``κ: R³ → R^{(2j+1)×(2l+1)}`` that must satisfy ``κ(R x) = D^j(R) κ(x) D^l(R)ᵀ``. Flattened
row-major, ``κ`` transforms with ``D^j ⊗ D^l = Qᵀ (⊕_J D^J) Q`` (:func:`cathnet.so3.change_of_basis`),
so every solution is a sum over ``J ∈ [|j-l|, j+l]`` and radial profiles of

    κ_{J,m}(x) = φ_m(|x|) · Q_Jᵀ Y^J(x / |x|),    φ_m(r) = exp(-(r - m)² / 2σ²).

Shells ``m = 0 … ⌊s/2⌋`` (radii in voxels), σ = 0.6 voxel by default.

Bandlimit: a shell of radius ``m`` voxels is sampled by about 2πm grid points around its
circumference, so high angular frequencies alias there. Shell ``m`` keeps only
``J ≤ J_max(m)`` with the paper's rules (se3cnn ``gaussian_window_wrapper``):

    ======================  ===========================
    ``"compromise"`` (default)  J_max = 0, 3, 5, 7, … (2m+1 for m ≥ 1)
    ``"conservative"``          J_max = 0, 2, 4, 6, … (2m)
    ``"sfcnn"``                 J_max = 0, 4, 6, 8, … (2m+2 for m ≥ 1)
    ======================  ===========================

The origin shell carries only ``J = 0`` (the only equivariant value at x = 0). Each
sampled basis kernel is scaled to unit Frobenius norm. Grids are sampled at the voxel
centres of an ``s³`` window centred on the origin (half-integer offsets for even ``s``),
index ``[..., i, j, k]`` at offset ``(i, j, k) - (s-1)/2`` — the convention of
:mod:`cathnet.voxel`, so a cube rotation acts on index triples directly.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

from cathnet import so3
from cathnet.fileio import UnreadableFile, atomic_save_npz, read_regular

__all__ = ["BANDLIMITS", "bandlimit", "basis_count", "kernel_basis", "evaluate_basis", "kernel_offsets"]

BANDLIMITS = ("compromise", "conservative", "sfcnn")
_MAX_CACHE_BYTES = 1 << 30


def bandlimit(m: int, rule: str = "compromise") -> int:
    """Highest angular order J kept on the shell of radius ``m`` voxels."""
    if rule not in BANDLIMITS:
        raise ValueError(f"unknown bandlimit rule {rule!r}; choose one of {BANDLIMITS}")
    if m == 0:
        return 0
    return {"compromise": 2 * m + 1, "conservative": 2 * m, "sfcnn": 2 * m + 2}[rule]


def _terms(j: int, l: int, size: int, rule: str) -> list[tuple[int, int]]:
    """(shell m, order J) of every basis kernel, in basis order."""
    return [
        (m, J)
        for m in range(size // 2 + 1)
        for J in range(abs(j - l), j + l + 1)
        if J <= bandlimit(m, rule)
    ]


def basis_count(j: int, l: int, size: int, rule: str = "compromise") -> int:
    """Number of basis kernels: Σ_m #{J : |j-l| ≤ J ≤ min(j+l, J_max(m))}."""
    return sum(
        max(0, min(j + l, bandlimit(m, rule)) - abs(j - l) + 1) for m in range(size // 2 + 1)
    )


def kernel_offsets(size: int) -> np.ndarray:
    """(s, s, s, 3) voxel-centre offsets from the window centre, in voxels."""
    r = np.arange(size) - (size - 1) / 2
    return np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1)


def _unnormalised(j: int, l: int, size: int, sigma: float, rule: str, points: np.ndarray) -> np.ndarray:
    """Analytic basis at ``points`` (..., 3): (B, 2j+1, 2l+1, ...)."""
    Q = so3.change_of_basis(j, l)
    r = np.linalg.norm(points, axis=-1)
    starts = np.cumsum([0] + [2 * J + 1 for J in range(abs(j - l), j + l + 1)])
    out, angular = [], {}
    for m, J in _terms(j, l, size, rule):
        if J not in angular:  # Q_Jᵀ Y^J(x̂): ((2j+1)(2l+1), ...), zero at the origin for J > 0
            i = J - abs(j - l)
            angular[J] = np.einsum("...M,Mn->n...", so3.spherical_harmonics(J, points), Q[starts[i] : starts[i + 1]])
        k = angular[J] * np.exp(-((r - m) ** 2) / (2 * sigma**2))
        out.append(k.reshape((2 * j + 1, 2 * l + 1) + points.shape[:-1]))
    if not out:
        return np.zeros((0, 2 * j + 1, 2 * l + 1) + points.shape[:-1])
    return np.stack(out)


@functools.lru_cache(maxsize=None)
def _norms(j: int, l: int, size: int, sigma: float, rule: str) -> np.ndarray:
    raw = _unnormalised(j, l, size, sigma, rule, kernel_offsets(size))
    return np.sqrt((raw**2).reshape(len(raw), -1).sum(1))


def evaluate_basis(
    j: int, l: int, size: int, points: np.ndarray, *, sigma: float = 0.6, rule: str = "compromise"
) -> np.ndarray:
    """The continuous basis functions at arbitrary ``points`` (..., 3) in voxel units,
    scaled exactly as :func:`kernel_basis` scales them: (B, 2j+1, 2l+1, ...)."""
    raw = _unnormalised(j, l, size, sigma, rule, np.asarray(points, dtype=np.float64))
    return raw / _norms(j, l, size, float(sigma), rule).reshape((-1,) + (1,) * (raw.ndim - 1))


def _cache_dir() -> Path | None:
    root = os.environ.get("CATHNET_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "cathnet"))
    return None if root in ("", "0", "off") else Path(root) / "basis"


@functools.lru_cache(maxsize=1)
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def _load_cached(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The basis stored at ``path`` if it is a regular npz whose array has ``shape``, is
    finite and matches its stored SHA-256; None otherwise (then it is recomputed)."""
    try:
        with np.load(io.BytesIO(read_regular(path, _MAX_CACHE_BYTES)), allow_pickle=False) as z:
            basis, digest = z["basis"], str(z["sha256"])
    except (UnreadableFile, OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error):
        return None
    ok = basis.shape == shape and basis.dtype == np.float64 and np.isfinite(basis).all()
    return basis if ok and hashlib.sha256(basis.tobytes()).hexdigest() == digest else None


@functools.lru_cache(maxsize=None)
def _kernel_basis(j: int, l: int, size: int, sigma: float, rule: str) -> np.ndarray:
    key = hashlib.sha1(f"v2-{j}-{l}-{size}-{sigma!r}-{rule}".encode()).hexdigest()[:16]
    cache = _cache_dir()
    path = cache / f"{j}_{l}_{size}_{key}.npz" if cache else None
    shape = (basis_count(j, l, size, rule), 2 * j + 1, 2 * l + 1) + (size,) * 3
    basis = _load_cached(path, shape) if path is not None and path.exists() else None
    if basis is None:
        with _blas().limit(limits=1):  # tiny matrices: BLAS threads only wait on each other
            basis = evaluate_basis(j, l, size, kernel_offsets(size), sigma=sigma, rule=rule)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_save_npz(path, basis=basis, sha256=np.array(hashlib.sha256(basis.tobytes()).hexdigest()))
            except OSError:
                pass  # a read-only home only costs the rebuild
    basis.setflags(write=False)
    return basis


def kernel_basis(j: int, l: int, size: int, *, sigma: float = 0.6, rule: str = "compromise") -> np.ndarray:
    """Sampled steerable basis for output order ``j``, input order ``l``, kernel size ``size``.

    Returns a read-only float64 array (B, 2j+1, 2l+1, s, s, s), each kernel of unit norm;
    B = :func:`basis_count`. Built once per argument tuple and cached in memory and on disk
    (``$CATHNET_CACHE``, default ``~/.cache/cathnet``; set it to ``off`` to disable). A
    cached file is used only if its shape and SHA-256 check out; otherwise it is rebuilt.
    """
    if size < 1:
        raise ValueError(f"kernel size must be positive, got {size}")
    if j < 0 or l < 0:
        raise ValueError(f"orders must be non-negative, got j={j}, l={l}")
    return _kernel_basis(int(j), int(l), int(size), float(sigma), rule)
