import numpy as np
import pytest
import scipy.linalg

from cathnet import so3

LMAX = 6


@pytest.fixture(scope="module")
def rots():
    return so3.random_rotation(4, seed=0)


def test_order_one_is_xyz():
    x = np.random.default_rng(0).normal(size=(20, 3))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(so3.spherical_harmonics(1, x), np.sqrt(3 / (4 * np.pi)) * unit, atol=1e-14)
    R = so3.random_rotation(seed=3)
    np.testing.assert_allclose(so3.wigner_D(1, R), R, atol=1e-13)


@pytest.mark.parametrize("l", range(LMAX + 1))
def test_harmonics_orthonormal_on_sphere(l):
    # Gauss-Legendre in cos(theta) x uniform phi integrates degree <= 2*LMAX exactly
    t, w = np.polynomial.legendre.leggauss(LMAX + 2)
    phi = np.linspace(0, 2 * np.pi, 2 * LMAX + 3, endpoint=False)
    ct, ph = np.meshgrid(t, phi, indexing="ij")
    st = np.sqrt(1 - ct**2)
    pts = np.stack([st * np.cos(ph), st * np.sin(ph), ct], -1).reshape(-1, 3)
    weights = (w[:, None] * np.full(len(phi), 2 * np.pi / len(phi))).ravel()
    Y = so3.spherical_harmonics(l, pts)
    np.testing.assert_allclose((Y * weights[:, None]).T @ Y, np.eye(2 * l + 1), atol=1e-12)


@pytest.mark.parametrize("l", range(LMAX + 1))
def test_wigner_D(l, rots):
    R1, R2 = rots[0], rots[1]
    D1, D2 = so3.wigner_D(l, R1), so3.wigner_D(l, R2)
    np.testing.assert_allclose(so3.wigner_D(l, R1 @ R2), D1 @ D2, atol=1e-12)  # homomorphism
    np.testing.assert_allclose(D1 @ D1.T, np.eye(2 * l + 1), atol=1e-12)  # orthogonal
    np.testing.assert_allclose(so3.wigner_D(l, np.eye(3)), np.eye(2 * l + 1), atol=1e-12)
    assert np.linalg.det(D1) == pytest.approx(1.0, abs=1e-10)
    x = np.random.default_rng(l).normal(size=(30, 3))
    np.testing.assert_allclose(
        so3.spherical_harmonics(l, x @ R1.T), so3.spherical_harmonics(l, x) @ D1.T, atol=1e-12
    )  # Y(Rx) = D(R) Y(x)
    np.testing.assert_allclose(so3.wigner_D(l, rots), np.stack([so3.wigner_D(l, R) for R in rots]), atol=1e-13)


@pytest.mark.parametrize("j,l", [(j, l) for j in range(4) for l in range(4)] + [(2, 4), (3, 3)])
def test_change_of_basis_block_diagonalises(j, l, rots):
    Q = so3.change_of_basis(j, l)
    n = (2 * j + 1) * (2 * l + 1)
    np.testing.assert_allclose(Q @ Q.T, np.eye(n), atol=1e-12)
    for R in rots[:2]:
        blocks = scipy.linalg.block_diag(*[so3.wigner_D(J, R) for J in range(abs(j - l), j + l + 1)])
        np.testing.assert_allclose(Q @ np.kron(so3.wigner_D(j, R), so3.wigner_D(l, R)) @ Q.T, blocks, atol=1e-11)


def test_cube_rotations():
    C = so3.cube_rotations()
    assert C.shape == (24, 3, 3)
    np.testing.assert_array_equal(C[0], np.eye(3))
    np.testing.assert_allclose(np.einsum("nij,nkj->nik", C, C), np.broadcast_to(np.eye(3), (24, 3, 3)))
    np.testing.assert_allclose(np.linalg.det(C), 1.0)
    assert len({tuple(m.ravel()) for m in C}) == 24
    # closed under composition: a group
    keys = {tuple(m.ravel()) for m in C}
    assert all(tuple((a @ b).ravel()) in keys for a in C for b in C)


def test_random_rotation_is_rotation_and_seeded():
    R = so3.random_rotation(5, seed=1)
    np.testing.assert_allclose(np.linalg.det(R), 1.0)
    np.testing.assert_allclose(R, so3.random_rotation(5, seed=1))
    assert not np.allclose(R, so3.random_rotation(5, seed=2))
