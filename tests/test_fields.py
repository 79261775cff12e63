"""Oriented input fields (ss-orientation, ss-pairing): directions, their order-2 axes, strand
pairing, exact equivariance of the grids and invariance of a steerable network that reads them."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from cathnet import fields, load_model, so3
from cathnet.data import build_dataset
from cathnet.evaluate import evaluate
from cathnet.grid import rotate_grid
from cathnet.networks import build
from cathnet.nn import FieldType
from cathnet.selection import select_atoms
from cathnet.structure import read_structure
from cathnet.train import TrainError, train

from cath_helpers import FIXTURES, N_SPLITS, tiny_config

CUBE = so3.cube_rotations()
T = FieldType.parse(fields.in_type(fields.SS_ORIENTATION))


def _helix(n=20, rise=1.5, radius=2.3, per_turn=3.6):
    a = 2 * np.pi * np.arange(n) / per_turn
    return np.stack([radius * np.cos(a), radius * np.sin(a), rise * np.arange(n)], 1)


def _domain(name="1fd3A00.pdb"):
    ca, ss, _ = select_atoms(read_structure(FIXTURES / name), "ca-ss")
    return ca, ss, fields.element_directions(ca)


def _grids(ca, ss, d, rotations=None, field_set=fields.SS_ORIENTATION):
    n = 1 if rotations is None else len(rotations)
    rep = lambda a: torch.from_numpy(np.repeat(np.asarray(a)[None], n, 0))  # noqa: E731
    R = None if rotations is None else torch.as_tensor(np.stack(rotations))
    return fields.voxelize_fields(rep(ca), rep(np.ones(len(ca), bool)), rep(ss), rep(d), grid_size=50,
                                  voxel_size=2.0, sigma=1.0, rotations=R, fields=field_set)


def _sheet(second):
    """Two 6-residue strands 4.8 Å apart; the second runs the same way or the opposite way."""
    zigzag = np.stack([3.3 * np.arange(6), np.zeros(6), 0.9 * (-1) ** np.arange(6)], 1)
    other = zigzag + [0, 4.8, 0] if second == "parallel" else zigzag[::-1] + [0, 4.8, 0]
    loop = np.linspace(zigzag[-1], other[0], 6)[1:-1] + [0, 0, 6.0]  # a hairpin or crossover far from the sheet
    ca = np.concatenate([zigzag, loop, other])
    ss = np.array([1] * 6 + [2] * 4 + [1] * 6)
    return ca, ss, fields.element_directions(ca)


def _pairing(ca, ss, d):
    t = lambda a: torch.from_numpy(np.asarray(a, np.float64)[None])  # noqa: E731
    return fields.strand_pairing(t(ca), t(d), torch.from_numpy(ss[None] == 1))[0].numpy()


def test_directions_follow_helix_axis_and_strands_and_stop_at_breaks():
    helix = fields.element_directions(_helix())
    assert (helix[3:-4] @ np.array([0, 0, 1.0]) > 0.99).all()  # the axis, not the local tangent
    strand = np.stack([3.3 * np.arange(8), 0.9 * (-1) ** np.arange(8), np.zeros(8)], 1)
    assert (fields.element_directions(strand) @ np.array([1.0, 0, 0]) > 0.95).all()
    two = np.concatenate([strand, strand[:1] + [0, 30, 0]])  # a lone residue after a chain break
    d = fields.element_directions(two)
    assert (d[:8] @ np.array([1.0, 0, 0]) > 0.95).all() and not d[8].any()
    split = fields.element_directions(strand, np.array([True] * 3 + [False] + [True] * 3))  # chain change after 4
    assert (split[3] @ np.array([1.0, 0, 0]) > 0.9) and (split[4] @ np.array([1.0, 0, 0]) > 0.9)
    assert not np.allclose(split[3], fields.element_directions(strand)[3])  # the window stops at the break


def test_axis_is_the_order_2_harmonic_and_sign_free():
    t = torch.nn.functional.normalize(torch.randn(50, 3, dtype=torch.float64), dim=1)
    R = so3.random_rotation(1, np.random.default_rng(3))[0]
    y = fields._axis(t)
    torch.testing.assert_close(fields._axis(t @ torch.as_tensor(R).T), y @ torch.as_tensor(so3.wigner_D(2, R)).T)
    torch.testing.assert_close(fields._axis(-t), y)
    torch.testing.assert_close(y.norm(dim=1), torch.ones(50, dtype=torch.float64))
    assert not fields._axis(torch.zeros(1, 3)).any()


def test_pairing_tells_parallel_from_antiparallel_strands_and_edges():
    for kind, column in (("parallel", 0), ("antiparallel", 1)):
        ca, ss, d = _sheet(kind)
        p = _pairing(ca, ss, d)
        strand = ss == 1
        assert (p[strand, column] > 0.8).all(), (kind, p[strand])  # every strand residue has its partner
        assert (p[strand, 1 - column] < 0.05).all() and not p[~strand].any()
        assert (p[strand, column] < 2.2).all()  # one neighbouring strand: its partner and, in part, the partner's neighbours
    ca, ss, d = _sheet("antiparallel")
    assert not _pairing(ca, np.where(np.arange(len(ss)) < 6, 1, 2), d).any()  # no partner strand, no pairing
    R = so3.random_rotation(1, np.random.default_rng(1))[0]
    np.testing.assert_allclose(_pairing(ca @ R.T, ss, d @ R.T), _pairing(ca, ss, d), atol=1e-9)


@pytest.mark.parametrize("field_set", [fields.SS_ORIENTATION, fields.SS_PAIRING])
def test_grids_are_exactly_equivariant_under_cube_rotations(field_set):
    t = FieldType.parse(fields.in_type(field_set))
    ca, ss, d = _domain()
    g = _grids(ca, ss, d, field_set=field_set)
    rotated = _grids(ca, ss, d, list(CUBE), field_set=field_set)
    assert g.shape == (1, t.dim, 50, 50, 50) and t.dim == len(fields.channel_names(field_set))
    errs = [(rotated[i: i + 1] - t.transform(g, R)).abs().max().item() for i, R in enumerate(CUBE)]
    assert max(errs) < 1e-6
    moved_only = [(rotated[i: i + 1] - rotate_grid(g, R)).abs().max().item() for i, R in enumerate(CUBE[1:], 1)]
    assert min(moved_only) > 0.1  # the components must rotate too
    np.testing.assert_allclose(g[0, :3].sum((1, 2, 3)).numpy(), np.bincount(ss, minlength=3), rtol=1e-4)
    if field_set == fields.SS_PAIRING:  # the pairing channels carry each strand Cα's pairing, the rest as before
        np.testing.assert_allclose(g[0, 3:5].sum((1, 2, 3)).numpy(), _pairing(ca, ss, d).sum(0), rtol=1e-4)
        assert g[0, 3:5].sum() > 5
        torch.testing.assert_close(g[:, [0, 1, 2, *range(5, 21)]], _grids(ca, ss, d))


@pytest.mark.parametrize("field_set", [fields.SS_ORIENTATION, fields.SS_PAIRING])
def test_steerable_network_on_fields_is_invariant(field_set):
    torch.manual_seed(0)
    t = FieldType.parse(fields.in_type(field_set))
    ca, ss, d = _domain()
    model = build("se3-compact", in_channels=t.dim, n_classes=10, in_type=str(t)).eval()
    with torch.no_grad():
        out = model(_grids(ca, ss, d, list(CUBE), field_set))
        err = ((out - out[:1]).norm(dim=1) / out[:1].norm()).max().item()
        assert err < 1e-5, err
        scrambled = torch.cat([rotate_grid(_grids(ca, ss, d, field_set=field_set), R) for R in CUBE[1:4]])
        bad = ((model(scrambled) - out[:1]).norm(dim=1) / out[:1].norm()).max().item()  # components not rotated
    assert bad > 100 * err


def _train_readout(config, tmp_path, readout, refusal, **frame):
    """Train ``config`` with ``readout`` and the input ``frame`` it needs (refused without
    it); the fp32 model and the structure to rotate."""
    kwargs = {**config.model_kwargs, "readout": readout}
    with pytest.raises(TrainError, match=refusal):
        train(replace(config, out=str(tmp_path / "no-frame"), model_kwargs=kwargs))
    train(replace(config, out=str(tmp_path / readout), model_kwargs=kwargs, **frame))
    return load_model(tmp_path / readout / "best.json", precision="fp32"), read_structure(FIXTURES / "1fd3A00.pdb")


def test_train_and_predict_with_fields(tmp_path):
    path = tmp_path / "ss.npz"
    build_dataset(FIXTURES, path, labels=FIXTURES / "labels.csv", n_splits=N_SPLITS, seed=0, workers=1, atoms="ca-ss")
    config = replace(tiny_config(path, tmp_path / "run"), model="se3-compact", fields=fields.SS_PAIRING, epochs=1,
                     grid_size=26, voxel_size=4.0, model_kwargs={"widths": [[4, 2, 1], [4, 2, 1], [4, 2, 1], [4, 2, 1]]})
    train(config)
    meta = json.loads((tmp_path / "run" / "best.json").read_text())
    tp = FieldType.parse(fields.in_type(fields.SS_PAIRING))
    assert meta["input"]["fields"] == fields.SS_PAIRING and meta["input"]["in_type"] == str(tp)
    assert meta["network"]["config"]["in_type"] == str(tp)
    model = load_model(tmp_path / "run" / "best.json", precision="fp32")
    grids, n_atoms, _ = model.grids(read_structure(FIXTURES / "1fd3A00.pdb"), [None, CUBE[7]])
    assert grids.shape == (2, tp.dim, 26, 26, 26) and grids[0, 3:5].sum() > 0  # the pairing channels are filled
    np.testing.assert_allclose(grids[1], tp.transform(torch.from_numpy(grids[:1]), CUBE[7])[0].numpy(), atol=1e-6)
    pred, = model.predict(FIXTURES / "1fd3A00.pdb", rotations=4)
    assert pred.architecture in model.codes and 0 <= pred.agreement <= 1
    build_dataset(FIXTURES, tmp_path / "ca.npz", labels=FIXTURES / "labels.csv", n_splits=N_SPLITS, seed=0, workers=1)
    with pytest.raises(TrainError, match="ca-ss"):
        train(replace(config, data=str(tmp_path / "ca.npz"), out=str(tmp_path / "r2")))

    # readout=axes: absolute components along the principal axes, which rotate with the structure
    model, s = _train_readout(config, tmp_path, "axes", "needs --canonical principal", canonical="principal")
    probs = []
    for R in [np.eye(3), *so3.random_rotation(2, seed=4)]:
        moved = replace(s, coords=(s.coords.astype(np.float64) @ R.T).astype(np.float32))
        probs.append(model.softmax(torch.from_numpy(model.grids(moved)[0])))
    assert max(np.abs(p - probs[0]).max() for p in probs[1:]) < 1e-4
    with pytest.raises(TrainError, match="canonical none"):
        evaluate(tmp_path / "axes" / "best.json", path, canonical="none", device="cpu")


def test_axes_readout_is_invariant_under_the_axes_sign_flips_only():
    """``readout="axes"`` reads absolute l > 0 components: 180° turns about the grid axes
    (the principal frame's sign ambiguity) leave the logits alone, other cube rotations don't."""
    torch.manual_seed(0)
    ca, ss, d = _domain()
    model = build("se3-compact", in_channels=T.dim, n_classes=10, in_type=str(T), readout="axes")
    grids = _grids(ca, ss, d, list(CUBE))
    with torch.no_grad():
        model.train()(grids)  # batch-norm statistics of real inputs
        out = model.eval()(grids)
    errs = ((out - out[:1]).norm(dim=1) / out[:1].norm()).numpy()
    flips = np.array([np.allclose(np.abs(np.diag(R)), 1) for R in CUBE])
    assert flips.sum() == 4
    assert errs[flips].max() < 1e-6 and errs[~flips].min() > max(1e-5, 100 * errs[flips].max()), errs


def _envs(n=4):
    from cathnet.environments import pad_environments, residue_environments

    envs = residue_environments(read_structure(FIXTURES / "1fd3A00.pdb"), backbone_channels=True)[:n]
    return envs, [torch.from_numpy(a) for a in pad_environments([(e.coords, e.channels) for e in envs])]


def test_frame_fields_are_the_backbone_directions_and_rotate_exactly():
    envs, (c, ch, m) = _envs()
    TF = FieldType.parse(fields.FRAME_TYPE)
    kw = dict(grid_size=16, voxel_size=1.5, sigma=0.75)
    g = fields.voxelize_frame(c, m, ch, **kw)
    assert g.shape == (4, TF.dim, 16, 16, 16)
    e = envs[0]
    n_dir = e.coords[e.channels == 4][0] / np.linalg.norm(e.coords[e.channels == 4][0])
    centre = g[0, 8:11].sum((1, 2, 3)).numpy()  # the Cα→N field: a unit Gaussian times the direction
    np.testing.assert_allclose(centre / np.linalg.norm(centre), n_dir, atol=1e-5)
    errs = [(fields.voxelize_frame(c, m, ch, rotations=torch.tensor(R)[None].expand(4, 3, 3), **kw)
             - TF.transform(g, R)).abs().max().item() for R in CUBE]
    assert max(errs) < 1e-6


def test_train_and_predict_amino_acids_with_frame_fields(tmp_path):
    path = tmp_path / "env.npz"
    build_dataset(FIXTURES, path, labels=FIXTURES / "labels.csv", atoms="environment", n_splits=N_SPLITS, seed=0)
    config = replace(tiny_config(path, tmp_path / "run"), task="aa", model="se3-env", backbone_channels=True,
                     fields=fields.FRAME, grid_size=None, voxel_size=None, batch_size=32, epoch_size=64, val_size=48,
                     epochs=1, model_kwargs={"widths": [[4, 2, 1], [4, 2, 1]], "head_scalars": 16})
    train(config)
    model = load_model(tmp_path / "run" / "best.json", precision="fp32")
    assert model.meta["input"]["in_type"] == fields.FRAME_TYPE and model.n_channels == 17
    residues = model.predict(FIXTURES / "1fd3A00.pdb", rotations=2)
    assert len(residues) > 10 and all(np.isclose(r.probabilities.sum(), 1, atol=1e-4) for r in residues)
    with pytest.raises(TrainError, match="backbone-channels"):
        train(replace(config, backbone_channels=False, out=str(tmp_path / "r2")))

    # readout=frame: the head reads l = 1 components in the backbone frame
    model, s = _train_readout(config, tmp_path, "frame", "needs --oriented", oriented=True, augment=False)
    base = np.stack([r.probabilities for r in model.predict(s)])
    R = so3.random_rotation(1, seed=3)[0]
    moved = replace(s, coords=(s.coords.astype(np.float64) @ R.T).astype(np.float32))
    turned = np.stack([r.probabilities for r in model.predict(moved)])
    assert np.abs(turned - base).max() < 1e-3  # the frame rotates with the structure
    with pytest.raises(TrainError, match="as-given"):
        evaluate(tmp_path / "frame" / "best.json", path, oriented=False, device="cpu")


def test_frame_readout_is_equivariant_inside_but_not_invariant_on_the_grid():
    """``readout="frame"`` keeps every layer equivariant; its logits read l = 1 components, so
    rotating the grid (components too) changes them, unlike the invariant readout's."""
    torch.manual_seed(0)
    t = FieldType.parse(fields.FRAME_TYPE)
    x = torch.randn(2, t.dim, 16, 16, 16)
    for readout, moves in (("invariant", False), ("frame", True)):
        net = build("se3-env", in_channels=t.dim, n_classes=20, in_type=str(t), readout=readout).eval()
        with torch.no_grad():
            ref, feats = net(x), net.features(x)
            out_type = net.head.conv[0].in_type
            errs = [((net(t.transform(x, R)) - ref).norm() / ref.norm()).item() for R in CUBE[1:]]
            feat_err = max(((net.features(t.transform(x, R)) - out_type.transform(feats, R)).norm() / feats.norm()).item()
                           for R in CUBE[1:])
        assert feat_err < 1e-5
        assert (max(errs) > 1e-2) == moves, (readout, max(errs))
    with pytest.raises(ValueError, match="readout"):
        build("se3-env", in_channels=t.dim, n_classes=20, in_type=str(t), readout="pose")
