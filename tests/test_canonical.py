"""Canonical principal-axes frames: any rotation of the input is undone up to a cube rotation,
so a steerable network on canonical inputs is invariant under every rotation."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from cathnet import fields, so3
from cathnet.canonical import principal_frames
from cathnet.data import build_dataset
from cathnet.errors import TrainError
from cathnet.evaluate import evaluate
from cathnet.networks import build
from cathnet.preprocess import Preprocessing
from cathnet.structure import read_structure
from cathnet.tasks import make_task
from cathnet.train import train
from cathnet.voxel import Voxels

from cath_helpers import FIXTURES, N_SPLITS, tiny_config

CUBE = so3.cube_rotations()
SS = Preprocessing("ca-ss", Voxels(26, 4.0, 2.0), fields.SS_ORIENTATION)


def _is_cube_rotation(m: np.ndarray) -> bool:
    return min(np.abs(m - R).max() for R in CUBE) < 1e-9


def test_principal_frames_undo_any_rotation_up_to_a_cube_rotation():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(3, 40, 3)) * [6.0, 3.0, 1.5] + 10.0)
    mask = torch.ones(3, 40, dtype=torch.bool)
    mask[2, 30:] = False
    x[2, 30:] = 1e3  # padding: ignored
    frame = principal_frames(x, mask).numpy()
    assert np.allclose(frame @ frame.transpose(0, 2, 1), np.eye(3)) and np.allclose(np.linalg.det(frame), 1)
    assert np.allclose(frame[2], principal_frames(x[2:, :30], mask[2:, :30]).numpy()[0])
    R = torch.from_numpy(so3.random_rotation(3, seed=1))
    turned = principal_frames(x, mask, rotations=R).numpy()
    residual = turned @ frame.transpose(0, 2, 1)  # F(Rx) R F(x)^T: one of the 180° turns about the axes
    assert all(_is_cube_rotation(m) for m in residual)
    assert not all(_is_cube_rotation(m) for m in R.numpy() @ frame.transpose(0, 2, 1))


def test_steerable_network_on_canonical_fields_is_invariant_under_every_rotation():
    """Random (non-cube) rotations of a real domain: with the canonical frame the logits are
    the same to float precision; without it they move."""
    torch.manual_seed(0)
    T = SS.in_type
    model = build("se3-compact", in_channels=SS.n_channels, n_classes=10, in_type=T, grid_size=26,
                  widths=((4, 2, 1), (4, 2, 1), (4, 2, 1), (4, 2, 1))).eval()
    s = read_structure(FIXTURES / "1fd3A00.pdb")
    rotations = [None, *so3.random_rotation(4, seed=2)]

    def spread(prep: Preprocessing) -> float:
        with torch.no_grad():
            out = model(torch.from_numpy(prep.grids(s, rotations).grids))
        return ((out - out[:1]).norm(dim=1) / out[:1].norm()).max().item()

    canonical, plain = spread(replace(SS, canonical="principal")), spread(SS)
    assert canonical < 1e-5 and plain > 100 * canonical, (canonical, plain)


def test_batched_and_single_structure_paths_agree():
    s = read_structure(FIXTURES / "1fd3A00.pdb")
    prep = Preprocessing("ca", Voxels(26, 4.0, 2.0), canonical="principal")
    R = so3.random_rotation(2, seed=3)
    single = prep.grids(s, list(R)).grids
    coords = torch.from_numpy(prep.select(s)[0].astype(np.float32))
    batch = prep.voxelize_batch(coords[None].repeat(2, 1, 1), torch.ones(2, len(coords), dtype=torch.bool),
                                torch.zeros(2, len(coords), dtype=torch.long), rotations=torch.from_numpy(R))
    np.testing.assert_allclose(batch.numpy(), single, atol=1e-5)
    assert prep.metadata()["canonical"] == "principal"
    assert Preprocessing.from_metadata({"task": "cath", "input": prep.metadata()}) == prep


def test_train_and_evaluate_with_canonical_frames(tmp_path):
    path = tmp_path / "ss.npz"
    build_dataset(FIXTURES, path, labels=FIXTURES / "labels.csv", n_splits=N_SPLITS, seed=0, workers=1, atoms="ca-ss")
    config = replace(tiny_config(path, tmp_path / "run"), model="se3-compact", fields=fields.SS_ORIENTATION, epochs=1,
                     grid_size=26, voxel_size=4.0, canonical="principal",
                     model_kwargs={"widths": [[4, 2, 1], [4, 2, 1], [4, 2, 1], [4, 2, 1]]})
    train(config)
    meta = json.loads((tmp_path / "run" / "best.json").read_text())
    assert meta["input"]["canonical"] == "principal" and meta["training"]["canonical"] == "principal"
    result = evaluate(tmp_path / "run" / "best.json", path, rotations=3, device="cpu", precision="fp32")
    assert result["input"]["canonical"] == "principal" and result["rotation"]["agreement_mean"] == 1.0
    plain = evaluate(tmp_path / "run" / "best.json", path, rotations=0, device="cpu", canonical="none")
    assert "canonical" not in plain["input"]
    with pytest.raises(TrainError, match="--oriented"):
        evaluate(tmp_path / "run" / "best.json", path, rotations=0, device="cpu", oriented=True)
    with pytest.raises(TrainError, match="--canonical"):
        make_task("aa", path, canonical="principal")
    with pytest.raises(TrainError, match="unknown frame"):
        make_task("cath", path, canonical="inertia")
