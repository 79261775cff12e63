"""Broken, hostile and legacy inputs (issue 11): one line per bad file, no traceback, no
hang, nothing overwritten, nothing silently wrong. Every case is generated here from the
small real files in tests/data (legacy quirks: vendored excerpts, see tests/data/ORIGIN.md)."""
from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import gemmi
import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save
from typer.testing import CliRunner

import cathnet
from cathnet import basis, checkpoint, networks, predict, structure_text
from cathnet.checkpoint import CheckpointError
from cathnet.cli import app
from cathnet.cli.common import expand_inputs
from cathnet.data import CathData, DatasetError, build_dataset
from cathnet.fileio import atomic_file, atomic_write
from cathnet.predict import models_dir, resolve_model
from cathnet.structure import StructureError, read_structure

DATA = Path(__file__).parent / "data"
CATH = DATA / "cath"
GOOD = DATA / "cath_2v89A01.pdb"  # 490 atoms, 33 residues, no END record (a CATH domain file)
CODES = ["1.10", "1.20", "2.30", "2.40", "2.60", "3.10", "3.20", "3.30", "3.40", "3.90"]
runner = CliRunner()


@contextlib.contextmanager
def deadline(seconds: int = 10):
    """Fail instead of hanging: a blocking read would never return."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: a hang")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def atom_lines(path: Path = GOOD) -> list[bytes]:
    return path.read_bytes().splitlines()


def write(tmp_path: Path, name: str, lines: list[bytes]) -> Path:
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def set_field(line: bytes, start: int, value: bytes) -> bytes:
    return line[:start] + value + line[start + len(value):]


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity (which are not JSON)."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON output"))


def no_traceback(result) -> None:
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


# ---------------------------------------------------------------------------- 1. coordinates


@pytest.mark.parametrize("value", [b"     nan", b"     abc", b"     inf", b"    -inf", b"        ", b"   1e400", b"  1.0e7 "])
def test_an_unusable_coordinate_drops_its_atom_with_a_warning(tmp_path, value):
    lines = atom_lines()
    lines[3] = set_field(lines[3], 38, value)  # y of the 4th atom
    s = read_structure(write(tmp_path, "x.pdb", lines))
    assert len(s) == 489 and np.isfinite(s.coords).all() and (np.abs(s.coords) < 1e6).all()
    assert s.warnings == ("1 atom(s) with non-numeric or non-finite coordinates ignored",)
    assert not read_structure(GOOD).warnings


def test_the_same_rule_for_mmcif(tmp_path):
    text = (DATA / "1A8O.cif").read_text().splitlines()
    i = next(k for k, line in enumerate(text) if line.startswith("ATOM"))
    fields = text[i].split()
    x = fields.index(next(f for f in fields if "." in f and f.replace(".", "").lstrip("-").isdigit()))
    text[i] = " ".join([*fields[:x], "abc", *fields[x + 1:]])
    path = tmp_path / "x.cif"
    path.write_text("\n".join(text) + "\n")
    good = read_structure(DATA / "1A8O.cif")
    s = read_structure(path)
    assert len(s) == len(good) - 1 and s.warnings == ("1 atom(s) with non-numeric or non-finite coordinates ignored",)


def test_no_usable_atom_is_one_error(tmp_path):
    lines = [set_field(l, 30, b"     nan") if l.startswith(b"ATOM") else l for l in atom_lines()]
    with pytest.raises(StructureError, match="no usable protein atoms: 490 atom"):
        read_structure(write(tmp_path, "x.pdb", lines))


def test_a_structure_never_holds_non_finite_coordinates():
    s = read_structure(GOOD)
    coords = s.coords.copy()
    coords[0, 0] = np.nan
    with pytest.raises(StructureError, match="non-finite"):
        type(s)(coords, s.element, s.atom_name, s.res_name, s.res_num, s.icode, s.chain, s.path)


# ---------------------------------------------------------------------------- 2. bytes that are not ASCII


def test_latin1_atom_and_residue_names_are_decoded(tmp_path):
    lines = atom_lines()
    lines[0] = set_field(set_field(lines[0], 12, b"\xe9N  "), 17, b"PR\xe9")
    s = read_structure(write(tmp_path, "x.pdb", lines))
    assert (s.atom_name[0], s.res_name[0]) == ("éN", "PRé") and len(s) == 490 and not s.warnings


def test_latin1_chain_ids_are_read_with_placeholders(tmp_path):
    lines = [set_field(l, 21, b"\xe9") if l.startswith(b"ATOM") else l for l in atom_lines()]
    s = read_structure(write(tmp_path, "x.pdb", lines))
    assert set(s.chain) == {"?"} and len(s) == 490 and "not UTF-8" in s.warnings[0]


def test_unquoted_non_ascii_values_in_mmcif(tmp_path):
    text = (DATA / "1A8O.cif").read_bytes().replace(b" HOH ", b" HO\xc3\xa9 ", 2)  # one atom: CIF 1.1 wants quotes
    with pytest.raises((RuntimeError, ValueError), match="Wrong number of values"):
        gemmi.cif.read_string(text)
    path = tmp_path / "x.cif"
    path.write_bytes(text)
    assert len(read_structure(path)) == len(read_structure(DATA / "1A8O.cif"))
    assert "HOé" in read_structure(path, keep_water=True).res_name


# ---------------------------------------------------------------------------- 3. legacy but valid files


@pytest.mark.parametrize("name, n_atoms, columns", [("d1cih_excerpt.pdb", 36, b"1CIH 205"), ("1tab_e_excerpt.pdb", 19, b"0057 N98")])
def test_old_style_serials_in_columns_73_80(name, n_atoms, columns):
    text = (DATA / name).read_bytes()
    assert text.splitlines()[1 if name.startswith("1tab") else 12][72:80] == columns
    with pytest.raises(RuntimeError, match="charge"):  # gemmi alone rejects the whole file
        gemmi.read_pdb_string(text)
    s = read_structure(DATA / name)
    assert len(s) == n_atoms and not s.warnings
    assert s.element.tolist()[:4] == ["N", "C", "C", "O"] and s.atom_name.tolist()[:2] == ["N", "CA"]


def test_pqr_serial_glued_to_hetatm():
    path = DATA / "1afs_glued_excerpt.pqr"
    assert b"HETATM10570  OW   WAT" in path.read_bytes()
    s = read_structure(path, keep_water=True)
    water = s.res_name == "WAT"
    assert water.sum() == 6 and s.coords[water][0].tolist() == pytest.approx([-21.527, 36.762, -17.369])
    assert (s.res_name == "PHE").sum() == 42 and not s.warnings  # two chain-less copies, not duplicates


@pytest.mark.parametrize("name", ["1A8O.cif", "1A8O.pdb"])
def test_utf8_byte_order_mark(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + (DATA / name).read_bytes())
    np.testing.assert_array_equal(read_structure(path).coords, read_structure(DATA / name).coords)


# ---------------------------------------------------------------------------- 4. hangs and unbounded reads


def special_files(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.pdb"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.pdb"
    zero.symlink_to("/dev/zero")
    folder = tmp_path / "folder.pdb"
    folder.mkdir()
    return {"a FIFO": fifo, "a character device": zero, "is a directory": folder}


def test_only_regular_files_are_read(tmp_path):
    with deadline():
        for kind, path in special_files(tmp_path).items():
            with pytest.raises(StructureError, match=kind):
                read_structure(path)


def test_sizes_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(structure_text, "MAX_BYTES", 100_000)
    big = tmp_path / "big.pdb"
    big.write_bytes(GOOD.read_bytes() * 5)
    with pytest.raises(StructureError, match="too large"):
        read_structure(big)
    bomb = tmp_path / "bomb.pdb.gz"
    bomb.write_bytes(gzip.compress(b" " * 10_000_000))
    with pytest.raises(StructureError, match="too large: decompresses to more than 97.7 KiB"):
        read_structure(bomb)


def test_recursive_glob_does_not_follow_link_loops(tmp_path):
    root = tmp_path / "tree"
    (root / "a").mkdir(parents=True)
    shutil.copy(GOOD, root / "a" / "x.pdb")
    for name in ("loop1", "loop2", "loop3"):
        (root / "a" / name).symlink_to(root)
    with deadline():
        paths, errors = expand_inputs([f"{root}/**/*.pdb", f"{root}/**"])
    assert paths == [root / "a" / "x.pdb"] and not errors


# ---------------------------------------------------------------------------- 6. models and checkpoints


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny CNN model (Cα atoms, 16³ × 4 Å) saved the way training saves models."""
    torch.manual_seed(0)
    net = networks.build("cnn-compact", in_channels=1, n_classes=10, widths=(4, 4))
    meta = {"task": "cath", "input": {"atoms": "ca", "n_channels": 1, "grid_size": 16, "voxel_size": 4.0, "sigma": 2.0},
            "classes": {"codes": CODES, "names": CODES}}
    stem = tmp_path_factory.mktemp("model") / "tiny"
    checkpoint.save_model(stem, net, meta)
    return stem


def copy_model(tiny: Path, folder: Path) -> tuple[Path, dict]:
    folder.mkdir(exist_ok=True)
    for suffix in (".json", ".safetensors"):
        shutil.copy(f"{tiny}{suffix}", folder / f"tiny{suffix}")
    return folder / "tiny", json.loads(Path(f"{tiny}.json").read_text())


def _weights(folder: Path, blob: bytes) -> dict:
    """Write new weights; the metadata's checksum update that goes with them."""
    (folder / "tiny.safetensors").write_bytes(blob)
    return {"sha256": hashlib.sha256(blob).hexdigest()}


def damage(stem: Path, meta: dict, case: str) -> str:
    """Damage the model at ``stem`` in one way; returns the expected error fragment."""
    folder, json_path, weights = stem.parent, Path(f"{stem}.json"), Path(f"{stem}.safetensors")
    tensors = checkpoint.tensors_from(weights.read_bytes(), stem)
    first = next(iter(tensors))
    cases = {
        "json null": (lambda: json_path.write_text("null"), "not a JSON object"),
        "json list": (lambda: json_path.write_text("[1, 2]"), "not a JSON object"),
        "json truncated": (lambda: json_path.write_text(json_path.read_text()[:50]), "not a readable JSON file"),
        "no input": (lambda: meta.pop("input"), "'input' is missing"),
        "negative grid": (lambda: meta["input"].update(grid_size=-16), "grid_size -16"),
        "nan voxel size": (lambda: meta["input"].update(voxel_size=float("nan")), "voxel_size"),
        "channels": (lambda: meta["input"].update(n_channels=3), "n_channels"),
        "classes": (lambda: meta["classes"].update(codes=CODES[:9]), "classes"),
        "atoms": (lambda: meta["input"].update(atoms="water"), "input.atoms"),
        "unknown network": (lambda: meta["network"]["config"].update(name="nope"), "cannot rebuild network"),
        "escaping weights": (lambda: meta["weights"].update(file="../../x.safetensors"), "not a file name in the same folder"),
        "device weights": (lambda: meta["weights"].update(file="/dev/zero"), "not a file name in the same folder"),
        "fifo weights": (lambda: (weights.unlink(), os.mkfifo(weights)), "FIFO"),
        "zero weights": (lambda: (weights.unlink(), weights.symlink_to("/dev/zero")), "character device"),
        "checksum": (lambda: weights.write_bytes(b"x" * 100), "checksum"),
        "truncated weights": (lambda: meta["weights"].update(_weights(folder, st_save(tensors)[:-50])),
                              "not a readable safetensors file"),
        "missing tensor": (lambda: meta["weights"].update(_weights(folder, st_save({k: v for k, v in tensors.items() if k != first}))),
                           "missing tensor"),
        "wrong shape": (lambda: meta["weights"].update(_weights(folder, st_save({**tensors, first: torch.zeros(2, 2)}))),
                        "wrong shape"),
        "nan weights": (lambda: meta["weights"].update(_weights(folder, st_save({**tensors, first: tensors[first] * np.nan}))),
                        "NaN or infinite"),
    }
    change, expected = cases[case]
    change()
    if not case.startswith("json"):
        json_path.write_text(json.dumps(meta))
    return expected


MODEL_CASES = ["json null", "json list", "json truncated", "no input", "negative grid", "nan voxel size", "channels",
               "classes", "atoms", "unknown network", "escaping weights", "device weights", "fifo weights", "zero weights",
               "checksum", "truncated weights", "missing tensor", "wrong shape", "nan weights"]


@pytest.mark.parametrize("case", MODEL_CASES)
def test_a_bad_model_is_one_error_line(tiny, tmp_path, case):
    stem, meta = copy_model(tiny, tmp_path / "m")
    expected = damage(stem, meta, case)
    with deadline():
        with pytest.raises(CheckpointError) as info:
            cathnet.load_model(stem)
    assert expected in str(info.value) and "\n" not in str(info.value) and str(stem.parent) in str(info.value)


def test_a_bad_model_in_the_cli(tiny, tmp_path):
    stem, meta = copy_model(tiny, tmp_path / "m")
    damage(stem, meta, "nan weights")
    result = runner.invoke(app, ["predict", str(GOOD), "--model", str(stem), "--no-progress"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    no_traceback(result)


def test_non_finite_output_is_an_error_not_nan_in_json(tiny, tmp_path, monkeypatch):
    model = cathnet.load_model(tiny)
    monkeypatch.setattr(model.network, "forward", lambda x: torch.full((len(x), 10), float("nan")))
    monkeypatch.setattr(predict, "load_model", lambda *a, **k: model)  # the CLI imports it when run
    result = runner.invoke(app, ["predict", str(GOOD), "-f", "json", "--no-progress"])
    assert result.exit_code == 1 and "not finite" in result.stderr
    assert strict_json(result.stdout) == [{"file": str(GOOD), "error": "the model's output is not finite (NaN or infinite probabilities)"}]


def test_model_names_and_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_model("cath-arch") == models_dir() / "cath-arch"
    assert resolve_model("../../cath-arch") == Path("../../cath-arch")  # a path, never looked up in models/
    for name in ("../../x", f"../{models_dir().name}/nope", "nope"):
        with pytest.raises(CheckpointError, match="no such file|unknown model"):
            cathnet.load_model(name)


RESUME_CASES = {
    "json null": (lambda run, state: (run / "last.json").write_text("null"), "not a JSON object"),
    "no optimizer state": (lambda run, state: state.pop("optimizer_state"), "'optimizer_state' is missing"),
    "escaping weights": (lambda run, state: state.update(weights="../../best.safetensors"), "not a file name in the same folder"),
    "device weights": (lambda run, state: state.update(weights="/dev/zero"), "not a file name in the same folder"),
    "truncated weights": (lambda run, state: (run / state["weights"]).write_bytes((run / state["weights"]).read_bytes()[:99]),
                          "not a readable safetensors file"),
    "fifo optimizer": (lambda run, state: ((run / state["optimizer"]).unlink(), os.mkfifo(run / state["optimizer"])), "FIFO"),
    "wrong optimizer": (lambda run, state: state.update(optimizer=state["weights"]), "optimizer state does not fit"),
}


def test_resume_refuses_damaged_checkpoints(tmp_path):
    from cathnet.train import train

    from cath_helpers import build_fixture_dataset, tiny_config

    config = tiny_config(build_fixture_dataset(tmp_path / "d.npz"), tmp_path / "run", epochs=1, grid_size=8,
                         model_kwargs={"widths": [4, 4]}, batch_size=16)
    train(config)
    (tmp_path / "run" / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n')  # damaged lines are dropped
    for case, (change, expected) in RESUME_CASES.items():
        run = tmp_path / case
        shutil.copytree(tmp_path / "run", run)
        state = json.loads((run / "last.json").read_text())
        change(run, state)
        if case != "json null":
            (run / "last.json").write_text(json.dumps(state))
        with deadline(), pytest.raises(CheckpointError) as info:
            train(dataclasses.replace(config, out=str(run), resume=True, epochs=2))
        assert expected in str(info.value) and "\n" not in str(info.value), case
    train(dataclasses.replace(config, resume=True, epochs=2))
    assert [json.loads(l)["epoch"] for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_evaluate_accepts_a_released_model_name(tmp_path):
    data = build_dataset(CATH, tmp_path / "ca.npz", labels=CATH / "labels.csv", n_splits=2).path
    result = runner.invoke(app, ["evaluate", "cath-arch", "--data", str(data)])
    # found, loaded, compared: v2 takes oriented fields, which need secondary structure
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {data}: built with --atoms ca;")
    assert "need a dataset of --atoms ca-ss" in result.stderr
    no_traceback(result)


def test_basis_cache_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("CATHNET_CACHE", str(tmp_path))
    basis._kernel_basis.cache_clear()
    reference = basis.kernel_basis(1, 1, 3).copy()
    (path,) = (tmp_path / "basis").glob("*.npz")
    with np.load(path) as z:
        tampered, digest = z["basis"] * 2, z["sha256"]
    variants = [lambda: np.savez(path, basis=tampered, sha256=digest),  # values changed, checksum kept
                lambda: np.savez(path, basis=tampered[:1], sha256=np.array(hashlib.sha256(tampered[:1].tobytes()).hexdigest())),
                lambda: path.write_bytes(b"garbage"),
                lambda: (path.unlink(), os.mkfifo(path))]
    for make in variants:
        make()
        basis._kernel_basis.cache_clear()
        with deadline():
            np.testing.assert_array_equal(basis.kernel_basis(1, 1, 3), reference)
    basis._kernel_basis.cache_clear()


# ---------------------------------------------------------------------------- 5. outputs


def test_outputs_never_overwrite_inputs_or_released_models(tmp_path):
    structure = tmp_path / "in.pdb"
    shutil.copy(GOOD, structure)
    before = structure.read_bytes()
    released = models_dir() / "cath-arch.json"
    released_before = released.read_bytes()
    commands = [
        ["predict", str(structure), "-o", str(structure)],
        ["predict", str(structure), "-o", str(released)],
        ["voxelize", str(structure), "--stacked", "-o", str(structure)],
        ["dataset", "build", "--pdb", str(CATH), "--labels", str(CATH / "labels.csv"), "-o", str(models_dir() / "cath-arch.npz")],
        ["export", "cath-arch", "-o", str(models_dir() / "cath-arch.safetensors"), "--format", "onnx"],
    ]
    link = tmp_path / "link.json"
    link.symlink_to(structure)
    commands.append(["predict", str(structure), "-o", str(link)])
    for args in commands:
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "refusing to overwrite" in result.output, (args, result.output)
    assert structure.read_bytes() == before and released.read_bytes() == released_before


def test_overwriting_keeps_mode_and_writes_through_symlinks(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["link.json", "out.json"]
    atomic_write("/dev/null", b"to a device: written, not replaced")
    assert Path("/dev/null").is_char_device()


def test_sigterm_removes_the_temporary_file(tmp_path):
    script = textwrap.dedent(f"""
        import os, sys, time
        from cathnet.fileio import atomic_file
        with atomic_file({str(tmp_path / 'out.bin')!r}) as f:
            f.write(b"half")
            print("writing", flush=True)
            time.sleep(30)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(cathnet.__file__).parent.parent)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline() == b"writing\n"
    assert len(os.listdir(tmp_path)) == 1  # the temporary file
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == -signal.SIGTERM  # still dies of the signal
    assert os.listdir(tmp_path) == []


def test_exceptions_remove_the_temporary_file(tmp_path):
    with pytest.raises(ValueError):
        with atomic_file(tmp_path / "x") as f:
            f.write(b"half")
            raise ValueError
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------- 7. option bounds


@pytest.mark.parametrize("args", [
    ["predict", "x.pdb", "--rotations", "100000"],
    ["predict", "x.pdb", "--rotations", "1e20"],
    ["predict", "x.pdb", "--seed", "-1", "--rotations", "2"],
    ["predict", "x.pdb", "--batch-size", "100000000"],
    ["voxelize", "x.pdb", "-o", "out", "--voxel-size", "inf"],
    ["voxelize", "x.pdb", "-o", "out", "--voxel-size", "nan"],
    ["voxelize", "x.pdb", "-o", "out", "--sigma", "1e-300"],
    ["voxelize", "x.pdb", "-o", "out", "--grid-size", "100000"],
    ["evaluate", "cath-arch", "--data", __file__, "--rotations", "100000"],
    ["dataset", "build", "--pdb", ".", "-o", "x.npz", "--seed", "-1"],
    ["dataset", "build", "--pdb", ".", "-o", "x.npz", "--max-radius", "nan"],
    ["train", "--data", __file__, "--model", "cnn-compact", "--lr", "nan"],
    ["train", "--data", __file__, "--model", "cnn-compact", "--sigma", "1e-300"],
])
def test_option_bounds_are_usage_errors(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    no_traceback(result)


# ---------------------------------------------------------------------------- 8. dataset build and loading


def labels_csv(tmp_path: Path, text: str, bom: bool = False) -> Path:
    path = tmp_path / "labels.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def test_labels_with_a_byte_order_mark(tmp_path):
    path = labels_csv(tmp_path, (CATH / "labels.csv").read_text(), bom=True)
    result = build_dataset(CATH, tmp_path / "x.npz", labels=path, n_splits=2)
    assert result.summary["n_domains"] == 40


@pytest.mark.parametrize("row, expected", [
    ("1abcA00,,", ":2: empty or missing cath_code, resolution"),
    ("1abcA00", ":2: empty or missing cath_code, resolution"),
    (",1.10.8.10,2.0", ":2: empty or missing cath_id"),
    ("1abcA00,1.10.8.10,nan", ":2: resolution 'nan' is not a number"),
])
def test_bad_label_rows_name_their_line(tmp_path, row, expected):
    path = labels_csv(tmp_path, f"cath_id,cath_code,resolution\n{row}\n")
    result = runner.invoke(app, ["dataset", "build", "--pdb", str(CATH), "--labels", str(path), "-o", str(tmp_path / "x.npz")])
    assert result.exit_code == 1 and result.stderr == f"error: {path}{expected}\n"


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tar")
    out = {}
    for mode, suffix in (("w", ".tar"), ("w:gz", ".tar.gz"), ("w:xz", ".tar.xz")):
        path = folder / f"pool{suffix}"
        with tarfile.open(path, mode) as tar:
            tar.add(CATH / "labels.csv", "pool/labels.csv")
            for pdb in sorted(CATH.glob("*.pdb")):
                tar.add(pdb, f"pool/pdb/{pdb.name}")
        out[suffix] = path
    return out


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tar.xz"])
def test_truncated_archives_are_one_error_line(archives, tmp_path, suffix):
    whole = archives[suffix].read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole[: len(whole) // 2])
    result = runner.invoke(app, ["dataset", "build", "--pdb", str(cut), "-o", str(tmp_path / "x.npz"), "--splits", "2",
                                 "--workers", "2"])
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {cut}: truncated or corrupt archive")
    assert result.stderr.count("\n") == 1 and "Aborted" not in result.output


def test_archive_members_are_streamed(archives, monkeypatch):
    """At most ``window`` members are read ahead of the results (Pool.imap read them all)."""
    from cathnet.data import build, sources

    read = [0]
    real = sources._member_bytes
    monkeypatch.setattr(sources, "_member_bytes", lambda tar, member: (read.__setitem__(0, read[0] + 1), real(tar, member))[1])
    jobs, _ = sources.structure_jobs(archives[".tar.gz"], {p.stem for p in CATH.glob("*.pdb")}, "ca", set())
    done = 0
    for _cath_id, result, _ in build._in_order(build._extract, jobs, _SyncPool(), 8):
        done += 1
        assert read[0] - done < 8 and not isinstance(result, str)
    assert done == 40


class _SyncPool:
    """A pool that runs each job at once: only the reading ahead is left to count."""

    def apply_async(self, fn, args):
        result = fn(*args)
        return type("Done", (), {"get": lambda self: result})()


def cath_dataset(tmp_path: Path) -> Path:
    return build_dataset(CATH, tmp_path / "ok.npz", labels=CATH / "labels.csv", n_splits=2).path


def rewrite(src: Path, dst: Path, **changes) -> Path:
    with np.load(src) as z:
        arrays = {k: z[k] for k in z}
    arrays.update(changes)
    np.savez(dst, **arrays)
    return dst


def test_damaged_datasets_are_one_error(tmp_path):
    good = cath_dataset(tmp_path)
    CathData(good)
    blob = good.read_bytes()
    with np.load(good) as z:
        labels, offsets, positions = z["labels"], z["offsets"], z["positions"]
    cases = {
        "truncated": (lambda p: p.write_bytes(blob[: len(blob) // 2]), "cannot read dataset"),
        "labels": (lambda p: rewrite(good, p, labels=labels + 100), "labels outside the classes"),
        "offsets": (lambda p: rewrite(good, p, offsets=offsets[::-1]), "offsets do not partition"),
        "nan": (lambda p: rewrite(good, p, positions=positions * np.nan), "positions are not finite"),
        "meta": (lambda p: rewrite(good, p, meta=np.array("[]")), "format None"),
        "fifo": (lambda p: os.mkfifo(p), "FIFO"),
    }
    for name, (make, expected) in cases.items():
        path = tmp_path / f"{name}.npz"
        make(path)
        with deadline(), pytest.raises(DatasetError) as info:
            CathData(path)
        assert expected in str(info.value) and "\n" not in str(info.value), name
    result = runner.invoke(app, ["evaluate", "cath-arch", "--data", str(tmp_path / "labels.npz")])
    assert result.exit_code == 1 and "labels outside the classes" in result.stderr and result.stderr.count("\n") == 1


# ---------------------------------------------------------------------------- 9. silent garbage


def test_duplicated_atoms_are_dropped_with_a_warning(tmp_path):
    lines = atom_lines()
    s = read_structure(write(tmp_path, "x.pdb", lines + lines[:20]))
    reference = read_structure(GOOD)
    np.testing.assert_array_equal(s.coords, reference.coords)
    assert s.warnings == ("20 duplicated atom(s) (same chain, residue, name and position) ignored; the first of each kept",)


@pytest.mark.parametrize("cut, end, warned", [(True, False, True), (True, True, False), (False, False, False)])
def test_a_file_cut_at_a_line_end(tmp_path, cut, end, warned):
    """A CATH file (no END record) cut after the N of its last residue, or whole; with or
    without an END record."""
    lines = atom_lines(CATH / "1fd3A00.pdb")
    last = [i for i, l in enumerate(lines) if l[22:27] == lines[-1][22:27]]
    kept = lines[: last[0] + 1] if cut else lines
    s = read_structure(write(tmp_path, "x.pdb", kept + ([b"END"] if end else [])))
    assert any("may be truncated" in w for w in s.warnings) == warned


# ---------------------------------------------------------------------------- 10. batches and JSON


@pytest.fixture(scope="module")
def released():
    """The released models, loaded once (the CLI would load them per command)."""
    return {"cath-arch": cathnet.load_model("cath-arch"), "aa-propensity": cathnet.load_model("aa-propensity")}


@pytest.fixture
def cached_models(released, monkeypatch):
    monkeypatch.setattr(predict, "load_model", lambda name, **kwargs: released[name])


def hostile_batch(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    """(good files, bad files): real files made hostile in one way each."""
    lines = atom_lines()
    nan = lines.copy()
    nan[5] = set_field(nan[5], 30, b"     nan")
    latin = [set_field(l, 21, b"\xe9") if l.startswith(b"ATOM") else l for l in lines]
    good = [GOOD, write(tmp_path, "nan.pdb", nan), write(tmp_path, "latin.pdb", latin), DATA / "d1cih_excerpt.pdb"]
    specials = special_files(tmp_path)
    allnan = write(tmp_path, "allnan.pdb", [set_field(l, 30, b"     nan") if l.startswith(b"ATOM") else l for l in lines])
    return good, [allnan, specials["a FIFO"], specials["a character device"], tmp_path / "missing.pdb"]


@pytest.mark.parametrize("task", ["cath", "aa"])
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_bad_files_do_not_cost_the_batch(cached_models, tmp_path, task, fmt):
    good, bad = hostile_batch(tmp_path)
    with deadline(60):
        result = runner.invoke(app, ["predict", "--task", task, *map(str, good + bad), "-f", fmt, "--no-progress"])
    assert result.exit_code == 1
    no_traceback(result)
    errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == len(bad) and all(any(str(b) in l for l in errors) for b in bad)
    assert all(l.startswith(("error: ", "warning: ")) for l in result.stderr.splitlines())
    if fmt == "json":
        rows = strict_json(result.stdout)
        answered = {r["file"] for r in rows if "error" not in r}
        failed = {r["file"] for r in rows if "error" in r}
    else:
        import csv
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        answered = {r["file"] for r in rows if not r["error"]}
        failed = {r["file"] for r in rows if r["error"]}
    assert answered == set(map(str, good))
    assert failed == set(map(str, bad[:3]))  # the missing file is no structure: on stderr only
