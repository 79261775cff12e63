import numpy as np

from cathnet.so3 import random_rotation
from cathnet.ss import COIL, HELIX, STRAND, assign_ca, chain_segments


def ideal_helix(n):
    t = np.deg2rad(100.0) * np.arange(n)
    return np.stack([2.3 * np.cos(t), 2.3 * np.sin(t), 1.5 * np.arange(n)], axis=1)


def ideal_strand(n):
    i = np.arange(n)
    return np.stack([3.3 * i, 0.95 * (i % 2), np.zeros(n)], axis=1)


def test_ideal_elements_and_invariance():
    ca = np.concatenate([ideal_helix(12), ideal_strand(8) + [0, 30, 0]])
    ss = assign_ca(ca)
    assert (ss[:12] == HELIX).all()
    assert (ss[12:] == STRAND).all()
    R = random_rotation(seed=0)
    np.testing.assert_array_equal(assign_ca(ca @ R.T + 5.0), ss)


def test_random_coil_and_short_pieces():
    rng = np.random.default_rng(0)
    steps = rng.normal(size=(40, 3))
    ca = np.cumsum(3.8 * steps / np.linalg.norm(steps, axis=1, keepdims=True), axis=0)
    assert (assign_ca(ca) == HELIX).mean() < 0.2
    assert (assign_ca(ideal_helix(4)) == COIL).all()  # too short for a helix
    assert assign_ca(np.zeros((0, 3))).shape == (0,)


def test_chain_break_splits_elements():
    ca = ideal_helix(10)
    ca[5:] += [0, 0, 20.0]  # a gap after residue 4
    np.testing.assert_array_equal(chain_segments(ca), [0] * 5 + [1] * 5)
    ss = assign_ca(ca)
    assert (ss == HELIX).sum() == 10
    # with a chain change flagged explicitly, windows never straddle it
    ca = ideal_helix(10)
    same = np.ones(9, dtype=bool)
    same[4] = False
    assert (assign_ca(ca, same) == HELIX).sum() == 10
    same[2] = False
    assert (assign_ca(ca, same)[:3] == COIL).all()
