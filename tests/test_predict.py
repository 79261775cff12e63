"""The released CATH architecture model and `cathnet predict`."""
import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import cathnet
from cathnet import so3
from cathnet.checkpoint import load_model as load_checkpoint
from cathnet.cli import app
from cathnet.grid import rotate_grid
from cathnet.nn import FieldType
from cathnet.predict import available_models, models_dir
from cathnet.structure import Structure, read_structure

from cath_helpers import CATH, DATA, FIXTURES


@pytest.fixture(scope="module")
def model():
    return cathnet.load_model("cath-arch")


def test_released_model_metadata(model):
    assert "cath-arch" in available_models()
    meta = json.loads((models_dir() / "cath-arch.json").read_text())
    assert meta["network"]["equivariant"]
    assert len(meta["classes"]["codes"]) == 10 == len(meta["classes"]["names"])
    for key in ("grid_size", "voxel_size", "sigma", "atoms"):
        assert key in meta["input"]
    assert meta["metrics"]["test"]["accuracy"] > 0.3
    assert model.codes == meta["classes"]["codes"]


def test_collapsed_equals_uncollapsed(model):
    network, _ = load_checkpoint(models_dir() / "cath-arch")
    g = np.stack([model.grid(read_structure(p))[0] for p in CATH[:4]])
    x = torch.from_numpy(g)
    with torch.no_grad():
        a, b = model.network(x), network.eval()(x)
    assert not any(type(m).__name__ == "SE3Conv" for m in model.network.modules())
    assert ((a - b).norm() / b.norm()).item() <= 1e-5


def test_fp32_on_cpu_runs_channels_last_with_the_same_probabilities():
    """fp32 on CPU: network and inputs in channels_last_3d (faster there); bf16 stays contiguous."""
    fp32 = cathnet.load_model("cath-arch", precision="fp32")
    kernels = [p for p in fp32.network.parameters() if p.dim() == 5]
    assert fp32.channels_last and kernels
    assert all(k.is_contiguous(memory_format=torch.channels_last_3d) and not k.is_contiguous() for k in kernels)
    g = np.stack([fp32.grid(read_structure(p))[0] for p in CATH[:3]])
    contiguous = copy.deepcopy(fp32.network).to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        reference = torch.softmax(contiguous(torch.from_numpy(g)), dim=1).numpy()
    assert np.abs(fp32.probabilities(g) - reference).max() <= 1e-5
    assert not cathnet.load_model("cath-arch", precision="bf16").channels_last


def test_shipped_network_invariant_under_24_cube_rotations(model):
    """The input's oriented fields rotate with the grid (D¹(R) = R, D²(R)); rotating only
    the voxels, with the components left as they were, is not a rotation of the protein."""
    g = torch.from_numpy(model.grid(read_structure(CATH[0]))[0])[None]
    in_type = FieldType.parse(model.preprocessing.in_type)
    assert in_type.dim == g.shape[1] and in_type.lmax == 2  # v2: helix/strand directions and axes
    with torch.no_grad():
        logits = model.network(torch.cat([in_type.transform(g, R) for R in so3.cube_rotations()]))
        voxels_only = model.network(torch.cat([rotate_grid(g, R) for R in so3.cube_rotations()]))
    err = ((logits - logits[:1]).norm(dim=1) / logits[:1].norm()).max().item()
    assert err <= 1e-5, err
    wrong = ((voxels_only - voxels_only[:1]).norm(dim=1) / voxels_only[:1].norm()).max().item()
    assert wrong > 1e-2, wrong


def test_arbitrary_rotations_of_real_proteins_leave_the_prediction_unchanged(model):
    """Rotate the atoms of real domains by random rotations: in the canonical principal-axes
    frame the probabilities stay the same (up to bf16 rounding); the same network on the
    structures as given (v2 before the frame) moves by a few percent."""
    assert model.preprocessing.canonical == "principal"
    as_given = replace(model.preprocessing, canonical=None)
    agree, shifts, moved = [], [], []
    for path in CATH[::4]:
        s = read_structure(path)
        base = model.probabilities(model.grid(s)[0][None])[0]
        rotations = so3.random_rotation(4, seed=1)
        probs = model.probabilities(np.stack([model.grid(s, R)[0] for R in rotations]))
        agree.append((probs.argmax(1) == base.argmax()).mean())
        shifts.append(np.abs(probs - base).sum(1).max() / 2)  # total-variation distance
        plain = model.probabilities(as_given.grids(s, [None, *rotations]).grids)
        moved.append(np.abs(plain[1:] - plain[0]).sum(1).max() / 2)
    print(f"top-1 agreement {np.mean(agree):.3f}, max total-variation shift {max(shifts):.4f} (as given {max(moved):.3f})")
    assert np.mean(agree) == 1.0 and max(shifts) < 0.01
    assert np.median(moved) > 3 * max(shifts)


def test_python_api(model):
    (pred,) = model.predict(CATH[0], rotations=2)
    assert pred.architecture in model.codes and 0 < pred.probability <= 1
    assert pred.agreement is not None
    assert [t["architecture"] for t in pred.top][0] == pred.architecture
    assert pytest.approx(sum(t["probability"] for t in model.predict(CATH[0], top=10)[0].top), abs=1e-3) == 1.0
    s = read_structure(CATH[1])
    assert model.predict(s)[0].architecture == model.predict(CATH[1])[0].architecture


runner = CliRunner()


def test_cli_json_format_and_errors(tmp_path):
    bad = tmp_path / "bad.pdb"
    bad.write_bytes(b"\x00\xff garbage")
    out = tmp_path / "pred.json"
    result = runner.invoke(app, ["predict", CATH[0], str(bad), "missing.pdb", "-f", "json", "-o", str(out), "--no-progress"])
    assert result.exit_code == 1
    rows = json.loads(out.read_text())
    assert [r["file"] for r in rows] == [CATH[0], str(bad)]
    ok, failed = rows
    assert set(ok) == {"file", "architecture", "name", "probability", "top"}
    assert set(ok["top"][0]) >= {"architecture", "probability"}
    assert "error" in failed and "Traceback" not in result.output
    lines = [l for l in result.output.splitlines() if l.startswith("error:")]
    assert len(lines) == 2 and any("missing.pdb" in l for l in lines) and any("bad.pdb" in l for l in lines)


def test_cli_per_chain_csv_and_shards(tmp_path):
    result = runner.invoke(app, ["predict", str(DATA / "rnase_frag.pdb"), "--per-chain", "-f", "json", "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["chain"] for r in rows] == read_structure(DATA / "rnase_frag.pdb").chains()
    whole = runner.invoke(app, ["predict", str(FIXTURES), "-f", "csv", "--no-progress"]).stdout.splitlines()
    parts = [runner.invoke(app, ["predict", str(FIXTURES), "-f", "csv", "--shard", f"{i}/3", "--no-progress"]).stdout.splitlines() for i in range(3)]
    assert all(p[0] == whole[0] for p in parts)  # same header: shards concatenate
    assert sorted(l for p in parts for l in p[1:]) == sorted(whole[1:])
    assert runner.invoke(app, ["predict", CATH[0], "--shard", "3/3"]).exit_code == 2


def test_cli_table_and_unknown_model(tmp_path):
    result = runner.invoke(app, ["predict", CATH[0], "--rotations", "2"])
    assert result.exit_code == 0 and "agreement" in result.stdout
    (tmp_path / "bad.pdb").write_text("garbage\n")
    result = runner.invoke(app, ["predict", str(tmp_path / "bad.pdb")])
    assert result.exit_code == 1 and result.stdout == "" and result.stderr.startswith("error:")  # no empty table
    result = runner.invoke(app, ["predict", CATH[0], "--model", "nope"])
    assert result.exit_code == 1 and "unknown model" in result.output


def test_cli_residue_ranges(model):
    s = read_structure(CATH[0])
    chain, first = s.chain[0], int(s.res_num[0])
    spec = f"{chain}:{first}-{first + 20}"
    result = runner.invoke(app, ["predict", CATH[0], "--residues", spec, "-f", "json"])
    assert result.exit_code == 0, result.output
    (part,) = model.predict(CATH[0], residues=spec)
    assert json.loads(result.stdout)[0]["probability"] == part.probability
    assert part.n_atoms == 21 < model.predict(CATH[0])[0].n_atoms
    assert runner.invoke(app, ["predict", CATH[0], "--residues", "A:x"]).exit_code == 2


def test_size_warnings_for_structures_unlike_a_cath_domain(model, tmp_path):
    """Fewer than 30 or more than 450 residues: a warning (API, JSON and stderr); a domain of
    the pool's usual size and each chain of a multi-chain file predicted per chain: none."""
    whole = read_structure(CATH[0])  # 41 residues
    chain, first = whole.chain[0], int(whole.res_num[0])
    (part,) = model.predict(CATH[0], residues=f"{chain}:{first}-{first + 20}")
    assert part.warnings == ("21 residue(s) with a Cα: smaller than 99.7 % of the domains the model learnt from "
                             "(under 30), so the answer is less reliable",)
    assert not model.predict(CATH[0])[0].warnings
    domain = read_structure(DATA / "cath_2xskA00.pdb")  # 94 residues; five copies side by side: 470
    big = Structure(*(np.concatenate([getattr(domain, f) for _ in range(5)])
                      for f in ("coords", "element", "atom_name", "res_name", "res_num", "icode")),
                    np.repeat(np.array(list("ABCDE")), len(domain)), "five.pdb")
    big = replace(big, coords=big.coords + 40.0 * np.repeat(np.arange(5.0), len(domain))[:, None])
    (pred,) = model.predict(big)
    assert len(pred.warnings) == 1 and pred.warnings[0].startswith("470 residues with a Cα: larger than 99.7 %")
    assert all(not p.warnings for p in model.predict(big, per_chain=True))
    result = runner.invoke(app, ["predict", str(DATA / "2k39_3models.pdb"), CATH[0], "-f", "json", "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0]["warnings"] == ["10 residue(s) with a Cα: smaller than 99.7 % of the domains the model learnt "
                                   "from (under 30), so the answer is less reliable"] and "warnings" not in rows[1]
    warned = [l for l in result.stderr.splitlines() if l.startswith("warning:")]
    assert len(warned) == 1 and warned[0].startswith(f"warning: {DATA / '2k39_3models.pdb'}: 10 residue(s)")
