import dataclasses

import numpy as np
import pytest

from cathnet import so3
from cathnet.environments import AMINO_ACIDS, ENV_CHANNELS, backbone_frame, residue_environments
from cathnet.structure import read_structure

from cath_helpers import DATA

CRAMBIN = DATA / "1ejg.pdb"  # altlocs, residues only in altloc B/C, hydrogens


@pytest.fixture(scope="module")
def structure():
    return read_structure(CRAMBIN)


def test_every_residue_once_with_its_label(structure):
    envs = residue_environments(structure)
    assert len(envs) == len(np.unique(structure.residue_index)) == 46
    assert [e.resnum for e in envs] == sorted(e.resnum for e in envs)
    for e in envs:
        assert e.label == (AMINO_ACIDS.index(e.native) if e.native in AMINO_ACIDS else -1)
    assert len(ENV_CHANNELS) == 4 and envs[0].channels.max() < 4


def test_own_side_chain_removed_backbone_and_neighbours_kept(structure):
    env = {e.resnum: e for e in residue_environments(structure, radius=8.0)}[13]  # ARG 13
    i = (structure.res_num == 13)
    own = structure.coords[i] - structure.coords[i & (structure.atom_name == "CA")][0]
    heavy = structure.element[i] != "H"
    names = structure.atom_name[i]
    got = {tuple(np.round(p, 3)) for p in env.coords}
    for p, name, h in zip(own, names, heavy):
        if h:
            assert (tuple(np.round(p, 3)) in got) == (name in ("N", "CA", "C", "O")), name
    assert (np.linalg.norm(env.coords, axis=1) <= 8.0 + 1e-4).all()
    assert (structure.element == "H").any()  # crambin has hydrogens; environments never do
    assert set(env.channels.tolist()) <= {0, 1, 2, 3}
    assert len(env.coords) < (np.linalg.norm(structure.coords - structure.coords[i & (structure.atom_name == "CA")][0], axis=1) <= 8).sum()


def test_oriented_environments_do_not_depend_on_the_pose(structure):
    R = so3.random_rotation(seed=3)
    moved = dataclasses.replace(structure, coords=(structure.coords @ R.T + 7.0).astype(np.float32))
    a = residue_environments(structure, oriented=True)
    b = residue_environments(moved, oriented=True)
    for ea, eb in zip(a, b):
        np.testing.assert_allclose(ea.coords, eb.coords, atol=2e-3)
        np.testing.assert_array_equal(ea.channels, eb.channels)
    # unoriented ones rotate with the structure
    u, v = residue_environments(structure)[5], residue_environments(moved)[5]
    np.testing.assert_allclose(u.coords @ R.T, v.coords, atol=2e-3)


def test_backbone_frame_is_a_rotation():
    rng = np.random.default_rng(0)
    n, ca, c = rng.normal(size=(3, 3))
    F = backbone_frame(n, ca, c)
    np.testing.assert_allclose(F @ F.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(F) == pytest.approx(1.0)
    assert (F @ (n - ca))[1:] == pytest.approx([0, 0], abs=1e-12)  # N on the +x axis
    assert (F @ (c - ca))[2] == pytest.approx(0, abs=1e-12)  # C in the xy plane
