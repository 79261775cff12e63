"""``cathnet voxelize`` and the shared CLI helpers, on real files."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cathnet.cli import app
from cathnet.cli.common import expand_inputs
from cathnet.selection import select_atoms
from cathnet.structure import is_structure_file, read_structure, structure_id
from cathnet.voxel import voxelize

DATA = Path(__file__).parent / "data"
CATH = DATA / "cath"
GOOD = ["3m9qA02", "3r4yA01", "1fd3A00"]


def run(*args: str):
    return CliRunner().invoke(app, ["voxelize", *map(str, args)])


def expected_grid(path: Path, selection: str = "ca", **kw) -> np.ndarray:
    coords, channels, n = select_atoms(read_structure(path, **{k: v for k, v in kw.items() if k == "model"}), selection)
    return voxelize(coords, channels, n, center=coords.astype(np.float64).mean(0),
                    **{k: v for k, v in kw.items() if k != "model"}).grid


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_one_npz_per_structure(tmp_path):
    out = tmp_path / "grids"
    result = run(*(CATH / f"{c}.pdb" for c in GOOD), "-o", out, "--grid-size", "24", "--sigma", "1.5")
    assert result.exit_code == 0, result.output
    assert "written: 3, failed: 0" in result.stdout and not result.stderr
    assert sorted(os.listdir(out)) == sorted(f"{c}.npz" for c in GOOD)  # no temporary files left
    z = np.load(out / "3m9qA02.npz")
    np.testing.assert_array_equal(z["grid"], expected_grid(CATH / "3m9qA02.pdb", grid_size=24, sigma=1.5))
    assert z["grid"].shape == (1, 24, 24, 24) and z["n_atoms"] == 17 and z["n_outside"] == 0
    assert (z["selection"], z["grid_size"], z["voxel_size"], z["sigma"]) == ("ca", 24, 2.0, 1.5)
    assert z["channels"].tolist() == ["CA"] and z["source"] == str(CATH / "3m9qA02.pdb") and z["in_type"] == "1x0"


@pytest.mark.parametrize(("field_set", "in_type"), [("ss-orientation", "3x0 + 2x1 + 2x2"), ("ss-pairing", "5x0 + 2x1 + 2x2")])
def test_oriented_fields_and_their_type(tmp_path, field_set, in_type):
    from cathnet.fields import channel_names
    from cathnet.nn import FieldType
    from cathnet.preprocess import Preprocessing
    from cathnet.voxel import Voxels

    result = run(CATH / "1fd3A00.pdb", "-o", tmp_path, "--selection", "ca-ss", "--fields", field_set, "--grid-size", "30")
    assert result.exit_code == 0, result.output
    z = np.load(tmp_path / "1fd3A00.npz")
    t = FieldType.parse(str(z["in_type"]))
    assert t == FieldType.parse(in_type) and z["grid"].shape == (t.dim, 30, 30, 30)
    assert z["channels"].tolist() == channel_names(field_set)
    prep = Preprocessing("ca-ss", Voxels(30, 2.0, 1.0), field_set)
    np.testing.assert_allclose(z["grid"], prep.grids(read_structure(CATH / "1fd3A00.pdb")).grids[0], atol=1e-6)
    refused = run(CATH / "1fd3A00.pdb", "-o", tmp_path / "x", "--fields", field_set)
    assert refused.exit_code == 2 and "ca-ss" in refused.output


def test_canonical_frame_and_its_rotation(tmp_path):
    """--canonical principal: the grid of a rotated copy equals the original's up to a cube
    rotation, and the npz records the turn applied."""
    from cathnet import so3
    from cathnet.grid import rotate_grid

    src = read_structure(CATH / "1fd3A00.pdb")
    R = so3.random_rotation(seed=4)
    lines = (CATH / "1fd3A00.pdb").read_text().splitlines()
    moved = [ln[:30] + "".join(f"{v:8.3f}" for v in R @ (xyz - src.coords.mean(0))) + ln[54:]
             for ln, xyz in zip([ln for ln in lines if ln.startswith(("ATOM", "HETATM"))], src.coords)]
    (tmp_path / "turned.pdb").write_text("\n".join(moved) + "\nEND\n")
    result = run(CATH / "1fd3A00.pdb", tmp_path / "turned.pdb", "-o", tmp_path / "g.npz", "--stacked",
                 "--canonical", "principal", "--grid-size", "30")
    assert result.exit_code == 0, result.output
    z = np.load(tmp_path / "g.npz")
    assert z["canonical"] == "principal" and z["rotations"].shape == (2, 3, 3)
    a, b = (torch.from_numpy(g[None]) for g in z["grids"])
    best = min((rotate_grid(a, C) - b).abs().max().item() for C in so3.cube_rotations())
    scale = a.abs().max().item()  # the rotated copy is rounded to 0.001 Å in its PDB file
    assert best < 1e-3 * scale and (a - b).abs().max().item() > 0.1 * scale
    residual = z["rotations"][1] @ R @ z["rotations"][0].T  # the two frames differ by a cube rotation
    assert min(np.abs(residual - C).max() for C in so3.cube_rotations()) < 1e-3
    plain = run(CATH / "1fd3A00.pdb", "-o", tmp_path / "p")
    assert plain.exit_code == 0 and "canonical" not in np.load(tmp_path / "p" / "1fd3A00.npz")
    assert np.array_equal(np.load(tmp_path / "p" / "1fd3A00.npz")["rotation"], np.eye(3))


def test_stacked_heavy_glob_and_workers(tmp_path):
    pattern = str(CATH / "3[mr][94]*.pdb")
    single = run(pattern, "-o", tmp_path / "a.npz", "--stacked", "--selection", "heavy", "--grid-size", "20")
    assert single.exit_code == 0, single.output
    assert single.stdout.count("\n") == 1 and single.stdout.startswith(f"written: 2 (in {tmp_path / 'a.npz'}), ")
    z = np.load(tmp_path / "a.npz")
    assert z["ids"].tolist() == ["3m9qA02", "3r4yA01"]
    assert z["grids"].shape == (2, 5, 20, 20, 20) and z["channels"].tolist() == ["C", "N", "O", "S", "other"]
    np.testing.assert_array_equal(z["grids"][1], expected_grid(CATH / "3r4yA01.pdb", "heavy", grid_size=20))
    parallel = run(pattern, "-o", tmp_path / "b.npz", "--stacked", "--selection", "heavy", "--grid-size", "20",
                   "--workers", "2")
    assert parallel.exit_code == 0, parallel.output
    z2 = np.load(tmp_path / "b.npz")
    assert z2["ids"].tolist() == z["ids"].tolist() and np.array_equal(z2["grids"], z["grids"])


def test_atoms_outside_are_reported(tmp_path):
    result = run(DATA / "rnase_frag.pdb", "-o", tmp_path, "--grid-size", "6")
    assert result.exit_code == 0 and "atoms outside the box: " in result.stdout
    z = np.load(tmp_path / "rnase_frag.npz")
    assert z["n_outside"] > 0 and f"atoms outside the box: {z['n_outside']} (in 1 structure)" in result.stdout


def test_chain_model_and_residue_options(tmp_path):
    result = run(DATA / "2k39_3models.pdb", "-o", tmp_path, "--model", "2", "--grid-size", "16")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(tmp_path / "2k39_3models.npz")["grid"],
                                  expected_grid(DATA / "2k39_3models.pdb", model=2, grid_size=16))
    result = run(DATA / "rnase_frag.pdb", "-o", tmp_path, "--chain", "B", "--residues", "B:1-10", "--selection", "backbone")
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "rnase_frag.npz")["n_atoms"] == 40


def test_mixed_directory(tmp_path):
    """Good files written, each bad one one line on stderr (file and reason), exit 1."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for c in GOOD[:2]:
        shutil.copy(CATH / f"{c}.pdb", folder / "sub" / f"{c}.pdb")
    shutil.copy(DATA / "1osm.pdb.gz", folder / "1osm.pdb.gz")
    bad = {
        "empty.pdb": (b"", "empty file"),
        "garbage.cif": (np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes(), "binary data"),
        "1osm_truncated.pdb.gz": ((DATA / "1osm_truncated.pdb.gz").read_bytes(), "corrupt or truncated gzip"),
        "1ubi_truncated.pdb": ((DATA / "1ubi_truncated.pdb").read_bytes(), "too short"),
        "2zmm_ligand.pdb": ((DATA / "2zmm_ligand.pdb").read_bytes(), "no protein atoms"),
    }
    for name, (data, _) in bad.items():
        (folder / name).write_bytes(data)
    (folder / "notes.txt").write_text("not a structure: skipped by the directory walk")
    out = tmp_path / "out"
    result = run(folder, tmp_path / "missing.pdb", "-o", out)
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == len(bad) + 1 and "Traceback" not in result.output
    for name, (_, reason) in bad.items():
        assert sum(str(folder / name) in line and reason in line for line in lines) == 1, name
    assert any(str(tmp_path / "missing.pdb") in line and "no such file" in line for line in lines)
    assert sorted(os.listdir(out)) == ["1osm.npz", "3m9qA02.npz", "3r4yA01.npz"]
    assert "written: 3, failed: 6" in result.stdout


def test_unreadable_file(tmp_path, monkeypatch):
    locked = tmp_path / "locked.pdb"
    shutil.copy(CATH / "3m9qA02.pdb", locked)
    real = os.open
    monkeypatch.setattr(os, "open",  # root ignores chmod: raise what a locked file raises
                        lambda p, *a: (_ for _ in ()).throw(PermissionError(13, "denied")) if Path(p).name == "locked.pdb" else real(p, *a))
    result = run(locked, CATH / "3r4yA01.pdb", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert error_lines(result) == [f"error: {locked}: permission denied"]
    assert os.listdir(tmp_path / "out") == ["3r4yA01.npz"]


@pytest.mark.parametrize("args", [
    ["--selection", "sidechain"], ["--sigma", "0"], ["--voxel-size", "-1"], ["--grid-size", "0"],
    ["--residues", "A:x-y"], ["--model", "0"], ["--workers", "0"], ["--bogus"],
])
def test_usage_errors_exit_2(tmp_path, args):
    result = run(CATH / "3m9qA02.pdb", "-o", tmp_path / "out", *args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_output_kind_mismatch_exit_2(tmp_path):
    (tmp_path / "file").write_text("")
    assert run(CATH / "3m9qA02.pdb", "-o", tmp_path / "file").exit_code == 2
    assert run(CATH / "3m9qA02.pdb", "-o", tmp_path, "--stacked").exit_code == 2
    assert run("-o", tmp_path / "out").exit_code == 2  # no INPUT


def test_same_output_name(tmp_path):
    result = run(DATA / "1A8O.cif", DATA / "1A8O.pdb", "-o", tmp_path)
    assert result.exit_code == 1 and os.listdir(tmp_path) == ["1A8O.npz"]
    assert error_lines(result) == [f"error: {DATA / '1A8O.pdb'}: same output 1A8O.npz as {DATA / '1A8O.cif'}"]


def test_expand_inputs(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for name in ("a/x.pdb", "a/b/y.cif.gz", "a/b/z.PQR", "a/readme.md", "a/.tmp.pdb", ".hidden/h.pdb", "w.ent"):
        (tmp_path / name).write_text("")
    paths, errors = expand_inputs([tmp_path / "a", str(tmp_path / "*.ent"), tmp_path / "a" / "x.pdb",
                                   tmp_path / "a" / "readme.md", tmp_path / "nope.pdb", str(tmp_path / "*.xyz")])
    rel = [p.relative_to(tmp_path).as_posix() for p in paths]
    assert rel == ["a/x.pdb", "a/b/y.cif.gz", "a/b/z.PQR", "w.ent", "a/readme.md"]
    assert errors == [(str(tmp_path / "nope.pdb"), "no such file or directory"),
                      (str(tmp_path / "*.xyz"), "no structure files match this pattern")]
    assert expand_inputs([tmp_path / ".hidden"]) == ([tmp_path / ".hidden" / "h.pdb"], [])  # named, so searched
    (tmp_path / "empty").mkdir()
    assert expand_inputs([tmp_path / "empty"]) == ([], [(str(tmp_path / "empty"), "no structure files in this directory")])
    assert [structure_id(n) for n in ("1abc.cif.gz", "d.ent", "x.y.pdb", "notes.txt")] == ["1abc", "d", "x.y", "notes.txt"]
    assert is_structure_file("A.MMCIF.GZ") and not is_structure_file("a.gz")

