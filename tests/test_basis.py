import numpy as np
import pytest
import torch

from cathnet import basis, so3
from cathnet.grid import rotate_grid

PAIRS = [(j, l) for j in range(4) for l in range(4)]


def _rotate_kernel(K, R):
    """K(R⁻¹ x) for a (..., s, s, s) kernel and a cube rotation."""
    return rotate_grid(torch.from_numpy(np.array(K)), R).numpy()


@pytest.mark.parametrize("size", [3, 4, 5, 7])
@pytest.mark.parametrize("j,l", PAIRS)
def test_exact_on_grid_under_cube_rotations(j, l, size):
    B = basis.kernel_basis(j, l, size)
    assert B.shape == (basis.basis_count(j, l, size), 2 * j + 1, 2 * l + 1, size, size, size)
    for R in so3.cube_rotations():
        # κ(R x) = D^j κ(x) D^lᵀ  <=>  κ(y) = D^j κ(R⁻¹ y) D^lᵀ
        rhs = np.einsum("ab,nbc...,dc->nad...", so3.wigner_D(j, R), _rotate_kernel(B, R), so3.wigner_D(l, R))
        np.testing.assert_allclose(B, rhs, atol=1e-12)


@pytest.mark.parametrize("j,l", PAIRS + [(4, 2)])
def test_continuous_constraint_at_random_rotations(j, l):
    rng = np.random.default_rng(10 * j + l)
    x = rng.normal(size=(50, 3)) * 1.5
    for R in so3.random_rotation(3, seed=j + 7 * l):
        lhs = basis.evaluate_basis(j, l, 5, x @ R.T)
        rhs = np.einsum("ab,nbcp,dc->nadp", so3.wigner_D(j, R), basis.evaluate_basis(j, l, 5, x), so3.wigner_D(l, R))
        np.testing.assert_allclose(lhs, rhs, atol=1e-12)


def test_not_rotating_components_breaks_the_constraint():
    B = basis.kernel_basis(2, 1, 5)
    R = so3.cube_rotations()[5]
    moved = _rotate_kernel(B, R)
    assert np.abs(B - moved).max() > 0.05  # moving voxels alone is not a symmetry


@pytest.mark.parametrize("size", [3, 4, 5, 7])
@pytest.mark.parametrize("j,l", PAIRS)
def test_count_rank_and_unit_norm(j, l, size):
    B = basis.kernel_basis(j, l, size)
    # the paper's count: sum over shells of the orders J in [|j-l|, j+l] under the bandlimit
    expected = sum(
        1
        for m in range(size // 2 + 1)
        for J in range(abs(j - l), j + l + 1)
        if J <= (0 if m == 0 else 2 * m + 1)
    )
    assert len(B) == expected == basis.basis_count(j, l, size)
    flat = B.reshape(len(B), -1)
    np.testing.assert_allclose(np.linalg.norm(flat, axis=1), 1.0, atol=1e-12)
    assert np.linalg.matrix_rank(flat, tol=1e-8) == len(B)


def test_known_counts():
    # kernel 5, compromise rule: shells J_max = 0, 3, 5
    assert basis.basis_count(0, 0, 5) == 3
    assert basis.basis_count(1, 0, 5) == 2
    assert basis.basis_count(1, 1, 5) == 1 + 3 + 3
    assert basis.basis_count(3, 3, 5) == 1 + 4 + 6
    assert basis.basis_count(3, 0, 3) == 1
    assert basis.basis_count(3, 3, 5, "conservative") == 1 + 3 + 5


def test_bandlimit_rules():
    assert [basis.bandlimit(m) for m in range(4)] == [0, 3, 5, 7]
    assert [basis.bandlimit(m, "conservative") for m in range(4)] == [0, 2, 4, 6]
    assert [basis.bandlimit(m, "sfcnn") for m in range(4)] == [0, 4, 6, 8]
    with pytest.raises(ValueError, match="unknown bandlimit"):
        basis.bandlimit(1, "nope")


def test_scalar_basis_is_isotropic_gaussian_shells():
    B = basis.kernel_basis(0, 0, 5)[:, 0, 0]
    r = np.linalg.norm(basis.kernel_offsets(5), axis=-1)
    for m in range(3):
        shell = np.exp(-((r - m) ** 2) / (2 * 0.6**2))
        np.testing.assert_allclose(B[m], shell / np.linalg.norm(shell), atol=1e-12)


def test_disk_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("CATHNET_CACHE", str(tmp_path))
    basis._kernel_basis.cache_clear()
    first = basis.kernel_basis(2, 2, 3)
    files = list((tmp_path / "basis").glob("*.npz"))
    assert len(files) == 1
    basis._kernel_basis.cache_clear()
    second = basis.kernel_basis(2, 2, 3)
    np.testing.assert_array_equal(first, second)
    assert not second.flags.writeable
    basis._kernel_basis.cache_clear()
