"""Amino-acid task: environment dataset, task batches, training, evaluation and `cathnet predict --task aa`."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cathnet.checkpoint import load_model as load_trained
from cathnet.cli import app
from cathnet.data import DatasetError, EnvironmentData, build_dataset
from cathnet.environments import AMINO_ACIDS, residue_environments
from cathnet.evaluate import evaluate
from cathnet.networks import from_config
from cathnet.predict import load_model
from cathnet.run_state import load_initial
from cathnet.structure import read_structure
from cathnet.tasks import AminoAcidTask, TrainError, make_task
from cathnet.train import _Run, train

from cath_helpers import DATA, FIXTURES, N_SPLITS, tiny_config

PDBS = sorted(FIXTURES.glob("*.pdb"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("aa") / "env.npz"
    build_dataset(FIXTURES, path, labels=FIXTURES / "labels.csv", atoms="environment", n_splits=N_SPLITS, seed=0)
    return path


def aa_config(data, out, **changes):
    base = dict(task="aa", model="se3-env", model_kwargs={"widths": [[4, 2, 1], [4, 2, 1]], "head_scalars": 16},
                grid_size=None, voxel_size=None, batch_size=32, epoch_size=64, val_size=48, epochs=1)
    return tiny_config(data, out, **{**base, **changes})


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("aa-run")
    torch.manual_seed(0)
    train(aa_config(data, out))
    return out


def test_dataset_holds_every_residue_environment_as_read_from_the_files(data):
    d = EnvironmentData(data)
    summary = json.loads(data.with_suffix(".json").read_text())
    assert summary["residues"]["standard_with_ca"] == int(((d.res_labels >= 0) & (d.res_ca >= 0)).sum())
    assert d.meta["atoms"] == "environment" and d.channels.max() <= 3
    rows = d.residues(range(N_SPLITS))
    assert set(rows) == set(d.residues([0, 1])) | set(d.residues([2, 3]))
    # the same environments as cut from the structure directly (train = predict)
    i = int(np.flatnonzero(d.ids == PDBS[3].stem)[0])
    envs = [e for e in residue_environments(read_structure(PDBS[3])) if e.label >= 0]
    mine = [r for r in rows if d.res_domain[r] == i]
    assert len(envs) == len(mine)
    for e, r in list(zip(envs, mine))[::7]:
        xyz, ch = d.residue_environment(r, radius=12.0, oriented=False)
        np.testing.assert_array_equal(xyz, e.coords)
        np.testing.assert_array_equal(ch, e.channels)
        assert AMINO_ACIDS[d.res_labels[r]] == e.native


def test_splits_are_superfamily_disjoint(data):
    d = EnvironmentData(data)
    by_split = [set(d.superfamilies[d.res_domain[d.residues([s])]]) for s in range(N_SPLITS)]
    for a in range(N_SPLITS):
        for b in range(a + 1, N_SPLITS):
            assert not by_split[a] & by_split[b]


def test_cath_datasets_are_refused(dataset):
    with pytest.raises(DatasetError, match="--atoms environment"):
        AminoAcidTask(dataset)
    with pytest.raises(TrainError, match="only apply to --task aa"):
        make_task("cath", dataset, oriented=True)


def test_task_batches_are_centred_on_the_ca(data):
    task = AminoAcidTask(data)
    items = task.items([0])[:5]
    batch = task.batch(items)
    assert batch.center.abs().max() == 0 and batch.coords.shape[0] == 5
    for b in range(5):  # Cα at the origin, nothing beyond the radius
        xyz = batch.coords[b][batch.mask[b]]
        assert xyz.norm(dim=1).min() == 0 and xyz.norm(dim=1).max() <= 12.0 + 1e-4
    oriented = AminoAcidTask(data, oriented=True)
    assert set(oriented.items([0])) <= set(items.tolist()) | set(task.items([0]).tolist())


def test_epoch_stream_covers_the_training_items_and_balance_flattens_classes(data, tmp_path):
    run = _Run(aa_config(data, tmp_path / "a"), console=None)
    n = len(run.train_items)
    stream = np.concatenate([run.stream.epoch(e) for e in range(1, n // 64 + 2)])
    np.testing.assert_array_equal(np.sort(stream[:n]), run.train_items)  # first pass: a permutation
    assert len(run.val_items) == 48
    balanced = _Run(aa_config(data, tmp_path / "b", balance=True), console=None).stream.draw(0)
    labels = run.task.labels

    def counts(items):
        return np.bincount(labels[items], minlength=20)

    assert counts(balanced).std() < 0.5 * counts(run.train_items).std()


def test_training_writes_an_aa_model_and_evaluate_reads_it(data, trained):
    meta = json.loads((trained / "best.json").read_text())
    assert meta["task"] == "aa" and meta["input"]["grid_size"] == 16 and meta["input"]["centre"] == "CA"
    assert meta["classes"]["names"] == list(AMINO_ACIDS)
    assert abs(sum(meta["classes"]["train_frequency"]) - 1) < 1e-4
    r = evaluate(trained, data, splits=[3], rotations=1, device="cpu", max_items=40)
    assert r["n"] == 40 and r["n_items_in_splits"] > 40 and 0 <= r["accuracy"] <= r["top3_accuracy"] <= 1
    assert r["rotation"]["passes"][0]["agreement"] > 0.5
    framed = evaluate(trained, data, splits=[3], rotations=1, device="cpu", max_items=40, oriented=True)
    assert framed["input"]["oriented"] is True and r["input"]["oriented"] is False
    assert framed["rotation"]["n_rotations"] == 0  # a rotation would take the environment out of its frame
    assert framed["log_loss"] != r["log_loss"]  # other grids: the network sees each residue in its frame


def test_predict_task_aa_formats_and_errors(trained, tmp_path):
    runner = CliRunner()
    bad = tmp_path / "broken.pdb"
    bad.write_text("not a structure\n")
    pdb = str(PDBS[0])
    res = runner.invoke(app, ["predict", "--model", str(trained), "-f", "json", "--no-progress", pdb, str(bad)])
    assert res.exit_code == 1, res.output
    assert "broken.pdb" in res.stderr and "Traceback" not in res.output
    *rows, failed = json.loads(res.stdout)
    assert failed["file"] == str(bad) and set(failed) == {"file", "error"}  # as in the cath task's JSON
    n_res = len([e for e in residue_environments(read_structure(pdb))])
    assert len(rows) == n_res
    for row in rows:
        assert {"chain", "resnum", "icode", "native", "predicted", "probabilities", "log_odds"} <= set(row)
        assert list(row["probabilities"]) == list(AMINO_ACIDS)
        assert abs(sum(row["probabilities"].values()) - 1) < 1e-3
        assert row["predicted"] == max(row["probabilities"], key=row["probabilities"].get)
    model = load_model(trained)
    freq = dict(zip(AMINO_ACIDS, model.meta["classes"]["train_frequency"]))
    row = rows[3]
    assert row["log_odds"] == pytest.approx(np.log(row["probabilities"][row["native"]] / freq[row["native"]]), abs=2e-3)
    res = runner.invoke(app, ["predict", "--model", str(trained), "-f", "csv", "--no-progress", pdb])
    lines = res.stdout.splitlines()
    assert res.exit_code == 0 and lines[0].split(",")[:8] == ["file", "chain", "resnum", "icode", "native", "predicted", "p_native", "log_odds"]
    assert len(lines) == n_res + 1 and len(lines[1].split(",")) == 29 and lines[0].endswith(",error")
    res = runner.invoke(app, ["predict", "--model", str(trained), "--no-progress", pdb])
    assert res.exit_code == 0 and "top-1 prediction = native residue for" in res.stdout
    res = runner.invoke(app, ["predict", "--model", str(trained), "--rotations", "3", "-f", "json", "--no-progress", pdb])
    averaged = json.loads(res.stdout)
    assert res.exit_code == 0 and len(averaged) == n_res and averaged[0]["probabilities"] != rows[0]["probabilities"]
    # options of the other task are usage errors
    for args in (["--task", "cath"], ["--per-chain"]):
        res = runner.invoke(app, ["predict", "--model", str(trained), *args, pdb])
        assert res.exit_code == 2 and "Traceback" not in res.output


def test_multi_chain_files_insertion_codes_and_structures(trained):
    model = load_model(trained)
    residues = model.predict(DATA / "rnase_frag.pdb")  # two protein chains, sulfates, waters
    assert {r.chain for r in residues} == {"A", "B"}
    assert all(r.native in AMINO_ACIDS for r in residues)  # ligands and waters have no environment
    assert {r.chain for r in model.predict(DATA / "rnase_frag.pdb", chain="B")} == {"B"}
    icodes = {r.icode for r in model.predict(DATA / "cath_1kskA01.pdb")}  # insertion codes 1A-1C
    assert {"A", "B", "C"} <= icodes
    structure = read_structure(DATA / "1ejg.pdb")  # residues present only as altloc B/C are kept
    assert len(model.predict(structure)) == 46


@pytest.mark.slow
def test_ddp_two_processes_match_one_process_on_the_aa_task(data, tmp_path):
    from safetensors.torch import load_file

    from cath_helpers import run_ddp

    config = aa_config(data, tmp_path / "one", model="cnn-env", epochs=2,
                       model_kwargs={"widths": [4, 8], "depth": 1, "head": 8, "norm": "group", "dropout": 0.0})
    train(config)
    run_ddp(replace(config, out=str(tmp_path / "two")))
    a, b = load_file(tmp_path / "one" / "epoch-0002.safetensors"), load_file(tmp_path / "two" / "epoch-0002.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    one, two = ([json.loads(l) for l in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in ("one", "two"))
    for m1, m2 in zip(one, two):
        assert m1["val_loss"] == pytest.approx(m2["val_loss"], rel=1e-5) and m1["val_acc"] == m2["val_acc"]


@pytest.mark.parametrize("oriented,backbone_channels", [(True, False), (False, True), (True, True)])
def test_framed_dataset_environments_match_the_structure(data, oriented, backbone_channels):
    d = EnvironmentData(data)
    i = int(np.flatnonzero(d.ids == PDBS[7].stem)[0])
    options = dict(oriented=oriented, backbone_channels=backbone_channels)
    envs = [e for e in residue_environments(read_structure(PDBS[7]), **options) if e.label >= 0]
    mine = [r for r in d.residues(range(N_SPLITS), needs_frame=True) if d.res_domain[r] == i]
    assert len(envs) == len(mine) > 0
    for e, r in list(zip(envs, mine))[::5]:
        xyz, ch = d.residue_environment(r, radius=12.0, **options)
        np.testing.assert_allclose(xyz, e.coords, atol=1e-5)
        np.testing.assert_array_equal(ch, e.channels)


def test_backbone_channels_show_the_own_backbone_and_a_virtual_cb():
    s = read_structure(DATA / "1ejg.pdb")
    plain = {e.resnum: e for e in residue_environments(s)}
    framed = {e.resnum: e for e in residue_environments(s, backbone_channels=True)}
    e, p = framed[13], plain[13]  # ARG 13
    own = {int(c): xyz for xyz, c in zip(e.coords, e.channels) if c >= 4}
    assert sorted(own) == [4, 5, 6, 7]  # own N, C, O, virtual Cβ, one each
    i = (s.res_num == 13)
    ref = {name: s.coords[i & (s.atom_name == name)][0] - s.coords[i & (s.atom_name == "CA")][0] for name in ("N", "C", "O", "CB")}
    for ch, name in ((4, "N"), (5, "C"), (6, "O")):
        np.testing.assert_allclose(own[ch], ref[name], atol=1e-4)
    assert np.linalg.norm(own[7] - ref["CB"]) < 0.3 and abs(np.linalg.norm(own[7]) - 1.53) < 0.05
    # the other atoms are those of the plain environment minus the own backbone
    others = e.coords[e.channels < 4]
    assert len(others) == len(p.coords) - 4 and not (np.linalg.norm(others, axis=1) < 1e-6).any()
    gly = next(e for e in residue_environments(s, backbone_channels=True) if e.native == "GLY")
    assert (gly.channels == 7).sum() == 1  # glycine gets the same virtual Cβ: no label leak


@pytest.mark.parametrize("backbone_channels", [False, True])
def test_prediction_environments_equal_the_training_ones(trained, backbone_channels):
    from cathnet.propensity import PropensityModel

    meta = json.loads((trained / "best.json").read_text())
    meta["input"]["backbone_channels"] = backbone_channels
    model = PropensityModel(load_model(trained).network, meta)
    s = read_structure(PDBS[11])
    _, _, envs = model.environments(s)  # k-d tree candidates
    ref = residue_environments(s, backbone_channels=backbone_channels)  # every atom
    assert len(envs) == len(ref)
    for (xyz, ch), e in zip(envs, ref):
        np.testing.assert_array_equal(xyz, e.coords)
        np.testing.assert_array_equal(ch, e.channels)


def test_resume_mid_stream_with_balance_is_exact(data, tmp_path):
    # 64 items per epoch do not divide the training items: epochs straddle passes
    full = aa_config(data, tmp_path / "full", model="cnn-env", epochs=3, balance=True, epoch_size=40,
                     model_kwargs={"widths": [4, 8], "depth": 1, "head": 8})
    train(full)
    part = replace(full, out=str(tmp_path / "part"), epochs=2)
    train(part)
    train(replace(part, epochs=3, resume=True))
    a = (tmp_path / "full" / "epoch-0003.safetensors").read_bytes()
    assert a == (tmp_path / "part" / "epoch-0003.safetensors").read_bytes()


def test_resume_accepts_checkpoints_from_before_the_new_options(data, tmp_path):
    config = aa_config(data, tmp_path / "old", model="cnn-env", model_kwargs={"widths": [4, 8], "depth": 1, "head": 8})
    train(config)
    state = json.loads((tmp_path / "old" / "last.json").read_text())
    for key in ("oriented", "epoch_size", "val_size", "balance"):
        state["config"].pop(key)
    (tmp_path / "old" / "last.json").write_text(json.dumps(state))
    with pytest.raises(TrainError, match="epoch_size"):  # the old run had no epoch size: one full pass
        train(replace(config, epochs=2, resume=True))
    train(replace(config, epochs=2, resume=True, epoch_size=None, val_size=None))


def test_oriented_training_does_not_augment(data, tmp_path):
    result = train(aa_config(data, tmp_path / "o", model="cnn-env", oriented=True,
                             model_kwargs={"widths": [4, 8], "depth": 1, "head": 8}))
    assert result["augment"] is False
    meta = json.loads((tmp_path / "o" / "best.json").read_text())
    assert meta["input"]["oriented"] is True
    with pytest.raises(TrainError, match="backbone frame"):
        train(aa_config(data, tmp_path / "o2", model="cnn-env", oriented=True, augment=True))
    r = evaluate(tmp_path / "o", data, splits=[3], rotations=2, device="cpu", max_items=16)
    assert r["rotation"]["n_rotations"] == 0  # rotating a backbone-frame environment is meaningless
    with pytest.raises(ValueError, match="oriented"):
        load_model(tmp_path / "o").predict(str(PDBS[0]), rotations=2)
    res = CliRunner().invoke(app, ["predict", "--model", str(tmp_path / "o"), "--rotations", "2", str(PDBS[0])])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_log_odds_background(trained, tmp_path):
    meta = json.loads((trained / "best.json").read_text())
    model = load_model(trained)
    np.testing.assert_allclose(np.exp(model.log_background), np.maximum(meta["classes"]["train_frequency"], 1e-6))
    meta["training"]["balance"] = True
    from cathnet.propensity import PropensityModel

    balanced = PropensityModel(model.network, meta)
    np.testing.assert_allclose(np.exp(balanced.log_background), 1 / 20)
    meta["training"]["balance"] = False
    meta["classes"]["train_frequency"] = [0.0] + meta["classes"]["train_frequency"][1:]
    assert np.isfinite(PropensityModel(model.network, meta).log_background).all()


def test_cli_dataset_train_evaluate_for_the_aa_task(tmp_path):
    runner = CliRunner()
    out = tmp_path / "env.npz"
    res = runner.invoke(app, ["dataset", "build", "--pdb", str(FIXTURES), "--labels", str(FIXTURES / "labels.csv"),
                              "--atoms", "environment", "--splits", str(N_SPLITS), "--workers", "1", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "standard residues with a Cα" in res.output
    common = ["train", "--data", str(out), "--val-splits", "2", "--test-splits", "3", "--device", "cpu", "--no-progress"]
    for bad in (["--task", "dna"], ["--task", "cath", "--oriented"], ["--task", "aa", "--oriented", "--augment"]):
        res = runner.invoke(app, [*common, "--model", "cnn-env", "--out", str(tmp_path / "x"), *bad])
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    run = tmp_path / "run"
    res = runner.invoke(app, [*common, "--task", "aa", "--model", "cnn-env", "--out", str(run), "--epochs", "1",
                              "--epoch-size", "32", "--val-size", "16", "--batch-size", "16",
                              "--model-arg", "widths=[4,8]", "--model-arg", "head=8"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["evaluate", str(run), "--data", str(out), "--max-items", "20", "--rotations", "0",
                              "-o", str(tmp_path / "eval.json")])
    assert res.exit_code == 0, res.output
    assert "top-3" in res.output and json.loads((tmp_path / "eval.json").read_text())["n"] == 20


def test_export_of_an_aa_model(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    from cathnet.export import export_onnx, sidecar_path

    out = tmp_path / "aa.onnx"
    export_onnx(trained, out)
    side = json.loads(sidecar_path(out).read_text())
    assert side["input"]["channels"] == ["C", "N", "O", "S"] and side["input"]["centre"] == "CA"
    assert side["classes"]["names"] == list(AMINO_ACIDS) and side["output"]["shape"] == ["batch", 20]


def test_init_widens_a_trained_steerable_model(data, trained, tmp_path):
    narrow, meta = load_trained(trained / "best.json")
    config = meta["network"]["config"]
    wide = from_config({**config, "widths": [[5, 3, 2], [6, 3, 2]], "head_scalars": 20, "head_hidden": 8})
    load_initial(wide, str(trained / "best.json"), task=meta)  # wider fields and head, and an MLP head
    x = torch.randn(4, config["in_channels"], 16, 16, 16)
    with torch.no_grad():
        a, b = narrow.eval()(x), wide.eval()(x)
    assert (a - b).abs().max() <= 1e-5 * a.abs().max()  # the same function, more fields to train
    # through `cathnet train --init`: a wider run starts from the narrow one; a narrower one is refused
    train(aa_config(data, tmp_path / "wide", init=str(trained / "best.json"),
                    model_kwargs={"widths": [[5, 3, 2], [6, 3, 2]], "head_scalars": 16}))
    assert load_trained(tmp_path / "wide" / "best.json")[1]["network"]["config"]["widths"] == [[5, 3, 2], [6, 3, 2]]
    with pytest.raises(TrainError, match=r"cannot be widened to this run's: features.0.0: .* is not wider"):
        train(aa_config(data, tmp_path / "narrow", init=str(trained / "best.json"),
                        model_kwargs={"widths": [[3, 2, 1], [4, 2, 1]], "head_scalars": 16}))
