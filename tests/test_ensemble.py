"""Ensembles: the mean of the members' probabilities, saved and loaded as one model."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from cathnet import load_model, so3
from cathnet.checkpoint import CheckpointError
from cathnet.ensemble import combine
from cathnet.grid import rotate_grid
from cathnet.networks import build, is_equivariant
from cathnet.nn import collapse
from cathnet.train import train

from cath_helpers import FIXTURES, tiny_config


def test_ensemble_averages_probabilities_and_stays_invariant():
    torch.manual_seed(0)
    members = [build("se3-compact", in_channels=1, n_classes=4, grid_size=26, widths=[[4, 2, 1]] * 4).eval() for _ in range(3)]
    model = build("ensemble", in_channels=1, n_classes=4, members=[m.config for m in members]).eval()
    for m, own in zip(members, model.members):
        own.load_state_dict(m.state_dict())
    x = torch.rand(2, 1, 26, 26, 26)
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(x), 1) for m in members]).mean(0)
        torch.testing.assert_close(torch.softmax(model(x), 1), mean)
        rotated = model(torch.cat([rotate_grid(x[:1], R) for R in so3.cube_rotations()]))
        assert ((rotated - rotated[:1]).abs().max() / rotated[:1].abs().max()).item() < 1e-5
        torch.testing.assert_close(collapse(model)(x), model(x), rtol=1e-4, atol=1e-5)
    assert is_equivariant(model.config)
    assert not is_equivariant({"name": "ensemble", "members": [m.config for m in members] + [{"name": "cnn-compact"}]})
    with pytest.raises(ValueError, match="channels"):
        build("ensemble", in_channels=2, n_classes=4, members=[members[0].config])


def test_combine_writes_one_model_that_predicts_the_mean(dataset, tmp_path):
    data = dataset
    stems = []
    for seed, val in ((0, 2), (1, 1)):  # cross-validation folds: each member holds out its own split
        out = tmp_path / f"run{seed}"
        train(replace(tiny_config(data, out), epochs=1, seed=seed, val_splits=(val,)))
        stems.append(out / "best")
    # folds of a real pool hold different class mixes (the fixtures' are balanced): members' frequencies differ
    second = stems[1].with_suffix(".json")
    meta1 = json.loads(second.read_text())
    meta1["classes"]["train_frequency"] = [0.2, 0.0] + meta1["classes"]["train_frequency"][2:]
    second.write_text(json.dumps(meta1))
    meta = combine(stems, tmp_path / "ens")
    assert combine(stems, tmp_path / "new" / "folder" / "ens") == meta  # the folder is made, as `cathnet train --out` does
    assert [m["training"]["seed"] for m in meta["members"]] == [0, 1]
    assert [m["val_splits"] for m in meta["members"]] == [[2], [1]] and meta["data"]["val_splits"] == [1, 2]
    assert "n_train" not in meta["data"] and meta["data"]["test_splits"] == [3]
    freqs = [json.loads(s.with_suffix(".json").read_text())["classes"]["train_frequency"] for s in stems]
    assert meta["classes"]["train_frequency"] == pytest.approx(np.mean(freqs, 0), abs=1e-6)
    assert meta["network"]["name"] == "ensemble" and json.loads((tmp_path / "ens.json").read_text()) == json.loads(json.dumps(meta))
    ens, single = load_model(tmp_path / "ens"), [load_model(s) for s in stems]
    pdb = sorted(FIXTURES.glob("*.pdb"))[0]
    p = {t["architecture"]: t["probability"] for t in ens.predict(pdb, top=10)[0].top}
    ref = [{t["architecture"]: t["probability"] for t in m.predict(pdb, top=10)[0].top} for m in single]
    assert max(abs(p[k] - (ref[0][k] + ref[1][k]) / 2) for k in p) < 2e-4  # rounded to 4 digits
    other = tmp_path / "other"
    train(replace(tiny_config(data, other), epochs=1, grid_size=20))
    with pytest.raises(CheckpointError, match="input differs"):
        combine([stems[0], other / "best"], tmp_path / "bad")
    assert np.isfinite(list(p.values())).all()
