"""SO(3) math in numpy: real spherical harmonics, real Wigner-D matrices, the change
of basis Q of a tensor product, random rotations and the 24 rotations of the cube.

Convention (used everywhere in cathnet)
---------------------------------------
* Coordinates are (x, y, z); a rotation is a 3×3 orthogonal matrix with det +1 acting on
  column vectors, ``x' = R @ x``.
* A field of order ``l`` has ``2l+1`` real components ``m = -l..l``. Our real spherical
  harmonics are the textbook ones (Condon–Shortley phase removed) with the polar axis
  along **y**, chosen so that order 1 is simply ``(x, y, z)``: ``Y^1(x) ∝ x`` and
  ``D^1(R) == R``. No axis permutation is hidden anywhere else.
* ``Y^l(R x) = D^l(R) Y^l(x)`` and ``D^l(R1 R2) = D^l(R1) D^l(R2)``.

Everything is cached per order; the functions are pure and cheap (microseconds to
milliseconds up to l = 10).
"""
from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import numpy as np
import scipy.linalg
import scipy.special
from scipy.spatial.transform import Rotation

__all__ = [
    "spherical_harmonics",
    "wigner_D",
    "change_of_basis",
    "generators",
    "random_rotation",
    "cube_rotations",
]


def spherical_harmonics(l: int, xyz: np.ndarray) -> np.ndarray:
    """Real orthonormal spherical harmonics of order ``l`` at directions ``xyz``.

    ``xyz``: (..., 3) array, need not be normalised; the origin maps to ``Y^0`` for l = 0
    and to zero for l > 0. Returns (..., 2l+1) float64, components m = -l..l, normalised
    so that ``∫ Y_m Y_n dΩ = δ_mn`` over the unit sphere.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    # Polar axis along y: relabel (x, y, z) -> (z', x', y') so that the textbook
    # real harmonics of order 1, ordered (y', z', x'), read (x, y, z).
    xp, yp, zp = z, x, y
    r = np.sqrt(xp**2 + yp**2 + zp**2)
    safe = np.where(r > 0, r, 1.0)
    theta = np.arccos(np.clip(zp / safe, -1.0, 1.0))  # polar angle
    phi = np.arctan2(yp, xp)  # azimuth
    out = np.empty(xyz.shape[:-1] + (2 * l + 1,))
    for m in range(-l, l + 1):
        # sph_harm_y includes the Condon–Shortley phase; (-1)^m removes it.
        c = scipy.special.sph_harm_y(l, abs(m), theta, phi)
        if m < 0:
            out[..., m + l] = np.sqrt(2) * (-1) ** m * c.imag
        elif m == 0:
            out[..., l] = c.real
        else:
            out[..., m + l] = np.sqrt(2) * (-1) ** m * c.real
    if l > 0:
        out[r == 0] = 0.0
    return out


@functools.lru_cache(maxsize=None)
def _sample_points(l: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed well-spread unit vectors and the pseudo-inverse of Y^l on them."""
    n = max(4 * (2 * l + 1) ** 2, 64)
    i = np.arange(n) + 0.5  # Fibonacci sphere
    zc = 1 - 2 * i / n
    ang = np.pi * (1 + 5**0.5) * i
    rho = np.sqrt(1 - zc**2)
    pts = np.stack([rho * np.cos(ang), rho * np.sin(ang), zc], axis=-1)
    return pts, np.linalg.pinv(spherical_harmonics(l, pts))


def wigner_D(l: int, R: np.ndarray) -> np.ndarray:
    """Real Wigner-D matrix of order ``l`` for rotation matrix ``R`` ((..., 3, 3) allowed).

    Obtained by least squares from ``Y^l(R x) = D^l(R) Y^l(x)`` on a fixed point set,
    which is exact to ~1e-14 because the harmonics of one order span a closed space.
    """
    R = np.asarray(R, dtype=np.float64)
    if l == 0:
        return np.ones(R.shape[:-2] + (1, 1))
    pts, pinv = _sample_points(l)
    rotated = np.einsum("...ij,pj->...pi", R, pts)
    # rows: Y(R x_p)^T = Y(x_p)^T D^T  =>  D^T = pinv(Y(x)) Y(Rx)
    return np.swapaxes(pinv @ spherical_harmonics(l, rotated), -1, -2)


@functools.lru_cache(maxsize=None)
def generators(l: int) -> np.ndarray:
    """The Lie-algebra generators of ``D^l``: (3, 2l+1, 2l+1) antisymmetric matrices with
    ``D^l(exp(t [e_a]_×)) = expm(t L_a)``, exact to ~1e-13 (matrix log of a small rotation)."""
    t = 1.0 / (l + 1)  # every eigen-angle m·t stays below π
    out = np.stack(
        [np.real(scipy.linalg.logm(wigner_D(l, Rotation.from_rotvec(t * e).as_matrix()))) / t for e in np.eye(3)]
    )
    out = (out - np.swapaxes(out, 1, 2)) / 2
    out.setflags(write=False)
    return out


def _lowest_eigenvector(A: np.ndarray, what: str) -> np.ndarray:
    """The null vector of ``A`` (whose null space must be one-dimensional)."""
    if A.shape[1] == 1:  # scalar unknown: any nonzero value
        return np.ones(1)
    w, v = scipy.linalg.eigh(A.T @ A, subset_by_index=[0, 1])
    if not w[0] < 1e-10 < w[1]:
        raise ArithmeticError(f"{what}: intertwiner space is not one-dimensional ({w})")
    return v[:, 0]


@functools.lru_cache(maxsize=None)
def _change_of_basis(j: int, l: int) -> np.ndarray:
    n = (2 * j + 1) * (2 * l + 1)
    if j == 0 or l == 0:  # D^0 ⊗ D^l = D^l
        Q = np.eye(n)
        Q.setflags(write=False)
        return Q
    # Generators of D^j ⊗ D^l; their Casimir -Σ G_a² has eigenvalue J(J+1) on the order-J part.
    G = np.stack(
        [np.kron(a, np.eye(2 * l + 1)) + np.kron(np.eye(2 * j + 1), b) for a, b in zip(generators(j), generators(l))]
    )
    w, V = np.linalg.eigh(-np.einsum("aij,ajk->ik", G, G))
    blocks = []
    for J in range(abs(j - l), j + l + 1):
        VJ = V[:, np.abs(w - J * (J + 1)) < 0.5]  # an orthonormal basis of the order-J part
        k = 2 * J + 1
        # Rotate it into our basis of D^J: M with L^J_a M = M (VJᵀ G_a VJ), a small system.
        H = np.einsum("ni,anm,mj->aij", VJ, G, VJ)
        A = np.concatenate([np.kron(LJ, np.eye(k)) - np.kron(np.eye(k), h.T) for LJ, h in zip(generators(J), H)])
        C = _lowest_eigenvector(A, f"{j}x{l}->{J}").reshape(k, k) @ VJ.T
        C /= np.linalg.norm(C[0])  # orthonormal rows (Schur: C Cᵀ ∝ I)
        first = np.flatnonzero(np.abs(C.ravel()) > 1e-6)[0]
        blocks.append(C * np.sign(C.ravel()[first]))  # deterministic sign
    Q = np.concatenate(blocks)
    Q[np.abs(Q) < 1e-13] = 0.0
    Q.setflags(write=False)
    return Q


def change_of_basis(j: int, l: int) -> np.ndarray:
    """Orthogonal Q ((2j+1)(2l+1) square) with ``Q (D^j ⊗ D^l) Qᵀ = ⊕_{J=|j-l|}^{j+l} D^J``.

    Row block J (of size 2J+1, in increasing J) maps a row-major flattened (2j+1)×(2l+1)
    matrix to its order-J part. Solved numerically as in the paper: the Casimir operator of
    the tensor product splits it into its order-J parts, and a small intertwining system
    per J aligns each part with our ``D^J``; cached.
    """
    return _change_of_basis(int(j), int(l))


def random_rotation(n: int | None = None, seed: int | Sequence[int] | np.random.Generator | None = None) -> np.ndarray:
    """Haar-uniform random rotation matrix (3, 3), or (n, 3, 3) when ``n`` is given."""
    rng = np.random.default_rng(seed)
    R = Rotation.random(1 if n is None else n, random_state=rng).as_matrix()
    return R[0] if n is None else R


@functools.lru_cache(maxsize=None)
def _cube_rotations() -> np.ndarray:
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            M = np.zeros((3, 3))
            M[range(3), perm] = signs
            if np.linalg.det(M) > 0:
                mats.append(M)
    out = np.array(mats)
    out.setflags(write=False)
    return out


def cube_rotations() -> np.ndarray:
    """The 24 rotations of the cube (signed permutation matrices, det +1), (24, 3, 3);
    the identity first."""
    return _cube_rotations()
