"""Reading structures: formats, conformers, elements, selections and bad input, on real files."""
from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

import gemmi
import numpy as np
import pytest

from cathnet.selection import ELEMENT_CHANNELS, SELECTIONS, select_atoms, selection_mask
from cathnet.structure import Structure, StructureError, parse_residue_ranges, read_structure

DATA = Path(__file__).parent / "data"
CATH = DATA / "cath"


def atom_lines(path: Path, model: int = 1) -> list[str]:
    """ATOM/HETATM records of one model, straight from the file (the test's oracle)."""
    text = (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)).read()
    lines, current = [], 1
    for line in text.splitlines():
        if line.startswith("MODEL"):
            current = int(line[10:14])
        elif line.startswith(("ATOM", "HETATM")) and current == model:
            lines.append(line)
    return lines


def xyz(line: str) -> list[float]:
    return [float(line[30:38]), float(line[38:46]), float(line[46:54])]


def residues(s: Structure) -> list[tuple[str, int, str, str]]:
    first = np.r_[True, np.diff(s.residue_index) != 0]
    return list(zip(s.chain[first].tolist(), s.res_num[first].tolist(), s.icode[first].tolist(), s.res_name[first].tolist()))


def one_letter(s: Structure) -> str:
    return "".join(gemmi.find_tabulated_residue(r[3]).one_letter_code.upper() for r in residues(s))


# ---------------------------------------------------------------------------- CATH files


def test_cath_domains_match_their_labelled_sequences():
    """Every residue once, in order, altloc-only residues included: the sequence of the
    parsed atoms equals CATH's sequence for all 40 domains."""
    rows = list(csv.DictReader(open(CATH / "labels.csv")))
    assert len(rows) == 40
    for row in rows:
        s = read_structure(CATH / f"{row['cath_id']}.pdb")
        assert one_letter(s) == row["sequence"], row["cath_id"]


def test_cath_elements_without_element_column():
    for path in [*sorted(CATH.glob("*.pdb"))[:10], DATA / "cath_2v89A01.pdb", DATA / "cath_2xskA00.pdb"]:
        s = read_structure(path)
        assert set(s.element) <= {"C", "N", "O", "S", "SE", "H"}, path
        expected = np.array(["SE" if n == "SE" else n.lstrip("0123456789")[0] for n in s.atom_name])
        np.testing.assert_array_equal(s.element, expected)
    sec = read_structure(DATA / "cath_2xskA00.pdb")
    assert set(sec.res_name[sec.element == "SE"]) == {"SEC"}
    hydrogens = read_structure(DATA / "cath_2v89A01.pdb")
    assert {"HG21", "HD11"} <= set(hydrogens.atom_name[hydrogens.element == "H"])  # not mercury, not a deuterium


def test_left_justified_names_and_calcium(tmp_path):
    """Without an element column gemmi reads 'CA  ' as calcium: in amino acids we go by the
    name; an ion keeps the PDB column convention."""
    lines = atom_lines(CATH / "3m9qA02.pdb")[:40]
    shifted = [line[:12] + f"{line[12:16].strip():<4}" + line[16:] for line in lines]
    calcium = "HETATM 9001 CA    CA A 301     -20.000  10.000   0.000  1.00 20.00"
    path = tmp_path / "ca.pdb"
    path.write_text("\n".join(shifted + [calcium, "END"]) + "\n")
    gemmi_elements = {a.element.name for r in gemmi.read_pdb(str(path))[0][0] for a in r if r.name != "CA"}
    assert "Ca" in gemmi_elements  # the trap: left-justified CA read as calcium
    s = read_structure(path, keep_hetero=True)
    assert s.element[s.res_name == "CA"].tolist() == ["CA"]
    protein = s.res_name != "CA"
    assert set(s.element[protein]) == {"C", "N", "O"}
    np.testing.assert_array_equal(s.element[protein], [n[0] for n in s.atom_name[protein]])
    ca_coords, _, _ = select_atoms(s, "ca")
    assert len(ca_coords) == (s.atom_name[protein] == "CA").sum()  # calcium is not a Cα
    assert not selection_mask(s, "backbone")[~protein].any()
    assert "CA" not in read_structure(path).res_name  # ions are hetero: dropped by default


def test_altloc_only_b_and_highest_occupancy():
    s = read_structure(CATH / "3m9qA02.pdb")
    raw = atom_lines(CATH / "3m9qA02.pdb")
    only_b = {int(l[22:26]) for l in raw if l[16] == "B"} - {int(l[22:26]) for l in raw if l[16] in " A"}
    assert only_b == {85, 90, 91}
    for num in only_b:  # present, every atom once, at the B coordinates
        b = [l for l in raw if int(l[22:26]) == num]
        sel = s.res_num == num
        assert s.atom_name[sel].tolist() == [l[12:16].strip() for l in b]
        np.testing.assert_allclose(s.coords[sel], [xyz(l) for l in b], atol=1e-3)
    # residue 92: A (occupancy 1.00) beats B (0.00)
    ca = (s.res_num == 92) & (s.atom_name == "CA")
    np.testing.assert_allclose(s.coords[ca][0], [-14.063, 20.758, 15.335], atol=1e-3)


def best_conformers(path: Path, skip=()) -> dict[tuple, str]:
    """Oracle: per (chain, residue, icode, atom name) the first record of highest occupancy."""
    best: dict[tuple, str] = {}
    for line in atom_lines(path):
        if (line[17:20], int(line[22:26])) in skip:
            continue
        key = (line[21], int(line[22:26]), line[26].strip(), line[12:16].strip())
        if key not in best or float(line[54:60]) > float(best[key][54:60]):
            best[key] = line
    return best


@pytest.mark.parametrize("name, skip", [
    ("1ejg.pdb", {("SER", 22), ("ILE", 25)}),  # microheterogeneity: PRO 22 (0.57) beats SER 22 (0.33)
    ("cath_2xusA00.pdb", ()),  # CYS 60: B (0.75) beats A (0.25); GLU 68: a 0.50/0.50 tie keeps A
    ("cath/3m9qA02.pdb", ()),
])
def test_conformers_against_raw_records(name, skip):
    s = read_structure(DATA / name)
    best = best_conformers(DATA / name, skip)
    keys = list(zip(s.chain.tolist(), s.res_num.tolist(), s.icode.tolist(), s.atom_name.tolist()))
    assert len(set(keys)) == len(keys) == len(best)
    np.testing.assert_allclose(s.coords, [xyz(best[k]) for k in keys], atol=1e-3)
    assert [best[k][16] for k in keys] == [best[k][16] for k in best]


def test_highest_occupancy_wins_over_the_first():
    s = read_structure(DATA / "cath_2xusA00.pdb")
    sg = (s.res_num == 60) & (s.atom_name == "SG")
    np.testing.assert_allclose(s.coords[sg][0], [-30.847, 15.584, 28.969], atol=1e-3)  # altloc B
    cd = (s.res_num == 68) & (s.atom_name == "CD")
    np.testing.assert_allclose(s.coords[cd][0], [-33.944, 17.613, 19.263], atol=1e-3)  # tie: A
    crambin = read_structure(DATA / "1ejg.pdb")
    assert [r[3] for r in residues(crambin)][21:25] == ["PRO", "GLU", "ALA", "LEU"] and len(residues(crambin)) == 46


# ---------------------------------------------------------------------------- formats


def test_pdb_and_mmcif_agree():
    pdb, cif = read_structure(DATA / "1A8O.pdb"), read_structure(DATA / "1A8O.cif")
    for field in ("coords", "element", "atom_name", "res_name", "res_num", "icode", "chain"):
        np.testing.assert_array_equal(getattr(pdb, field), getattr(cif, field), err_msg=field)
    assert residues(pdb)[0][3] == "MSE" and "SE" in pdb.element  # HETATM MSE inside the chain is protein
    assert "HOH" not in pdb.res_name
    with_water = read_structure(DATA / "1A8O.cif", keep_water=True)
    assert (with_water.res_name == "HOH").sum() == 88


def test_pqr_column_aligned_and_whitespace():
    pqr, pdb = read_structure(DATA / "1A80.pqr"), read_structure(DATA / "1A8O.pdb")
    assert pqr.chains() == [""]
    ca_pqr = {n: c for n, c in zip(pqr.res_num[pqr.atom_name == "CA"], pqr.coords[pqr.atom_name == "CA"])}
    ca_pdb = {n: c for n, c in zip(pdb.res_num[pdb.atom_name == "CA"], pdb.coords[pdb.atom_name == "CA"])}
    common = sorted(set(ca_pqr) & set(ca_pdb))
    assert len(common) >= 60
    np.testing.assert_allclose([ca_pqr[n] for n in common], [ca_pdb[n] for n in common], atol=1e-3)
    adk = read_structure(DATA / "adk_open.pqr.gz")  # tokens, not columns: "ATOM 1 N MET 1 -11.921 ..."
    assert len(residues(adk)) == 214 and "HSD" in adk.res_name
    first = gzip.open(DATA / "adk_open.pqr.gz", "rt").read().split("\nATOM", 1)[1].split()
    assert adk.atom_name[0] == first[1] and adk.res_name[0] == first[2]
    np.testing.assert_allclose(adk.coords[0], [float(v) for v in first[4:7]], atol=1e-3)
    assert set(adk.element) == {"C", "H", "N", "O", "S"}


def test_gzip_insertion_codes_and_bytes():
    s = read_structure(DATA / "1osm.pdb.gz")
    raw = atom_lines(DATA / "1osm.pdb.gz")
    assert len(s) == len(raw)
    assert (s.icode != "").sum() == sum(l[26] != " " for l in raw) > 0
    key = [(l[21], int(l[22:26]), l[26].strip()) for l in raw]
    assert s.residue_index[-1] + 1 == len(dict.fromkeys(key))
    same = read_structure("1osm.pdb", data=gzip.decompress((DATA / "1osm.pdb.gz").read_bytes()))
    np.testing.assert_array_equal(same.coords, s.coords)
    ksk = read_structure(DATA / "cath_1kskA01.pdb")  # CATH numbering 1A, 1B, 1C, 2, ...
    assert residues(ksk)[:4] == [("A", 1, "A", "GLY"), ("A", 1, "B", "SER"), ("A", 1, "C", "HIS"), ("A", 2, "", "ARG")]


def test_models():
    path = DATA / "2k39_3models.pdb"
    first = read_structure(path)
    assert read_structure(path, model=1).coords.tolist() == first.coords.tolist()
    for model in (2, 3):
        s = read_structure(path, model=model)
        np.testing.assert_array_equal(s.atom_name, first.atom_name)
        np.testing.assert_allclose(s.coords, [xyz(l) for l in atom_lines(path, model)], atol=1e-3)
        assert not np.allclose(s.coords, first.coords)
    with pytest.raises(StructureError, match="model 4 not found: the file has 3"):
        read_structure(path, model=4)


def test_hybrid36_serials():
    s = read_structure(DATA / "4v8r_h36_excerpt.pdb")
    raw = atom_lines(DATA / "4v8r_h36_excerpt.pdb")
    assert any(l[6:11] == "A0000" for l in raw)
    assert len(s) == len(raw) == 135 and s.chains() == ["Bb"]
    np.testing.assert_allclose(s.coords, [xyz(l) for l in raw], atol=1e-3)


def test_chains_residue_ranges_hetero_and_nucleic_acids():
    rnase = DATA / "rnase_frag.pdb"
    assert read_structure(rnase).chains() == ["A", "B"]
    assert set(read_structure(rnase, keep_hetero=True).res_name) - set(read_structure(rnase).res_name) == {"SO4"}
    assert read_structure(rnase, keep_water=True).chains() == ["A", "B", "W"]
    b = read_structure(rnase, chains=["B"])
    assert b.chains() == ["B"] and len(b) == (read_structure(rnase).chain == "B").sum()
    with pytest.raises(StructureError, match=r"chain C not found \(chains: A, B, W\)"):
        read_structure(rnase, chains=["C"])
    sel = read_structure(rnase, residues="B:5-12,A:90")
    assert [(c, n) for c, n, _, _ in residues(sel)] == [("A", 90)] + [("B", n) for n in range(5, 13)]
    pfe = DATA / "1pfe.cif.gz"  # echinomycin (D-amino acids) bound to DNA
    assert [r[3] for r in residues(read_structure(pfe))] == ["DSN", "ALA", "N2C", "MVA", "DSN", "ALA", "NCY", "MVA"]
    assert "DG" in read_structure(pfe, keep_hetero=True).res_name


def test_residue_range_order_with_insertion_codes():
    ksk = DATA / "cath_1kskA01.pdb"
    assert [(n, i) for _, n, i, _ in residues(read_structure(ksk, residues="1-1B"))] == [(1, "A"), (1, "B")]
    assert [(n, i) for _, n, i, _ in residues(read_structure(ksk, residues="A:1B-3"))] == [(1, "B"), (1, "C"), (2, ""), (3, "")]
    assert parse_residue_ranges("A:-3-5B, 7") == [("A", (-3, ""), (5, "B")), (None, (7, ""), (7, ""))]
    for bad in ("A:", "5-3", "x-y", "1-2-3", ""):
        with pytest.raises(ValueError, match="bad residue range"):
            read_structure(DATA / "1A8O.pdb", residues=bad)


# ---------------------------------------------------------------------------- API


def test_structure_api():
    s = read_structure(DATA / "rnase_frag.pdb")
    assert s.coords.dtype == np.float32 and s.coords.shape == (len(s), 3) and s.res_num.dtype == np.int32
    assert all(a.shape == (len(s),) for a in (s.element, s.atom_name, s.res_name, s.res_num, s.icode, s.chain))
    ri = s.residue_index
    assert ri[0] == 0 and set(np.diff(ri)) <= {0, 1} and ri[-1] + 1 == len(residues(s))
    sub = s.subset(s.chain == "A")
    assert len(sub) == (s.chain == "A").sum() and sub.chains() == ["A"] and sub.path == s.path
    assert sub.residue_index[-1] + 1 == len(residues(sub))


def test_selections():
    s = read_structure(DATA / "cath_2v89A01.pdb")  # has hydrogens
    n_res = s.residue_index[-1] + 1
    ca, ch, n = select_atoms(s, "ca")
    assert (len(ca), n, ch.tolist()) == (n_res, 1, [0] * n_res) and ca.dtype == np.float32
    bb, ch, n = select_atoms(s, "backbone")
    assert n == 1 and len(bb) == np.isin(s.atom_name, ["N", "CA", "C", "O"]).sum()
    heavy, ch, n = select_atoms(s, "heavy")
    assert n == len(ELEMENT_CHANNELS) == 5 and ch.dtype == np.int64
    assert len(heavy) == (s.element != "H").sum() < len(s)
    element = s.element[s.element != "H"]
    for c, symbol in enumerate(("C", "N", "O", "S")):
        assert ((ch == c) == (element == symbol)).all()
    _, ch, _ = select_atoms(read_structure(DATA / "cath_2xskA00.pdb"), "heavy")
    se = read_structure(DATA / "cath_2xskA00.pdb").element
    assert (ch[se[se != "H"] == "SE"] == ELEMENT_CHANNELS.index("S")).all()  # selenium counts as sulfur
    assert SELECTIONS == ("ca", "ca-ss", "backbone", "heavy")
    with pytest.raises(ValueError):
        select_atoms(s, "sidechain")


# ---------------------------------------------------------------------------- bad input


BAD = {
    "missing.pdb": "no such file",
    "empty.pdb": "empty file",
    "garbage.pdb": "binary data",
    "text.pdb": "no atom records",
    "1osm_truncated.pdb.gz": "corrupt or truncated gzip data",
    "1ubi_truncated.pdb": "line 469",
    "2zmm_ligand.pdb": "no protein atoms",
    "folder.pdb": "is a directory",
}


def make_bad(tmp_path: Path, name: str) -> Path:
    """A bad input ``name`` in tmp_path: real truncated/ligand files copied, the rest made here."""
    path = tmp_path / name
    if (DATA / name).exists():
        path.write_bytes((DATA / name).read_bytes())
    elif name == "empty.pdb":
        path.write_bytes(b"")
    elif name == "garbage.pdb":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif name == "text.pdb":
        path.write_text("these are not the atoms\nyou are looking for\n")
    elif name == "folder.pdb":
        path.mkdir()
    return path


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_raises_one_line(tmp_path, name):
    path = make_bad(tmp_path, name)
    with pytest.raises(StructureError) as info:
        read_structure(path)
    assert info.value.path == str(path) and BAD[name] in info.value.reason
    assert str(info.value) == f"{path}: {info.value.reason}" and "\n" not in str(info.value)


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "locked.pdb"
    path.write_bytes((CATH / "3m9qA02.pdb").read_bytes())
    if os.geteuid() != 0:  # root reads anything: simulate the permission error there
        path.chmod(0)
    else:
        real = os.open
        monkeypatch.setattr(os, "open", lambda p, *a: (_ for _ in ()).throw(PermissionError(13, "denied"))
                            if str(p) == str(path) else real(p, *a))
    with pytest.raises(StructureError, match="permission denied"):
        read_structure(path)
