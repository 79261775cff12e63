import json
import shutil
import tarfile

import numpy as np
import pytest
from typer.testing import CliRunner

from cathnet.cli import app
from cathnet.data import ARCHITECTURES, CathData, DatasetError, assign_splits, build_dataset, read_labels, sha256
from cathnet.selection import select_atoms
from cathnet.structure import read_structure

from cath_helpers import FIXTURES, N_SPLITS


def _synthetic(seed=0, n_classes=10):
    """Per class: one dominant superfamily (60 domains) and 150 of 1-3 domains."""
    rng = np.random.default_rng(seed)
    sfs, labels = [], []
    for c in range(n_classes):
        sizes = [60, *rng.integers(1, 4, size=150)]
        for s, size in enumerate(sizes):
            sfs += [f"{c}.{s}"] * size
            labels += [c] * size
    return np.array(sfs), np.array(labels)


def test_splits_are_superfamily_disjoint_balanced_and_deterministic():
    sfs, labels = _synthetic()
    splits = assign_splits(sfs, labels, n_splits=10, seed=3)
    for sf in np.unique(sfs):
        assert len(np.unique(splits[sfs == sf])) == 1, sf
    for c in np.unique(labels):
        counts = np.sort(np.bincount(splits[labels == c], minlength=10))
        assert counts[0] > 0
        assert counts[-1] == 60  # the dominant superfamily alone in its split
        assert counts[-2] - counts[0] <= 3  # the others balanced to within one small superfamily
    totals = np.bincount(splits, minlength=10)
    assert totals.max() - totals.min() <= 30  # ties go to the split with fewest domains overall
    assert (assign_splits(sfs, labels, 10, seed=3) == splits).all()
    assert (assign_splits(sfs, labels, 10, seed=4) != splits).any()


def test_splits_need_enough_superfamilies_per_class():
    with pytest.raises(DatasetError, match="class 1 has 2 superfamilies"):
        assign_splits(["a", "b", "c", "d", "e"], [0, 0, 0, 1, 1], n_splits=3)


def test_read_labels_pool_csv_and_cath_domain_list():
    pool = read_labels("cath_id,cath_code,architecture,resolution,pdb_id,sequence\n1abcA00,3.40.50.300,3.40,1.8,1abc,MK\n")
    assert pool[0].cath_id == "1abcA00" and pool[0].architecture == "3.40" and pool[0].superfamily == "3.40.50.300"
    clf = """#--------
# FILE NAME: CathDomainList
1oaiA00     1    10     8    10     1     1     1     1     1    59  1.000
1oksA00     1    10     8    10     1     1     1     2     1    51  1.800
1xyzA01     2    60    40    10     5     1     1     1     1   100  999.000
"""
    reps = read_labels(clf)
    assert [d.cath_id for d in reps] == ["1oaiA00", "1xyzA01"]  # one per S35 cluster, best resolution
    assert reps[1].cath_code == "2.60.40.10" and reps[1].resolution == 999.0
    assert len(read_labels(clf, one_per_s35=False)) == 3
    with pytest.raises(DatasetError, match=r"<clf>:2: not a CATH domain list line"):
        read_labels("# c\n1oaiA00 1 10 8\n", "<clf>")
    with pytest.raises(DatasetError, match="disagrees"):
        read_labels("cath_id,cath_code,architecture,resolution\nx,1.10.8.10,2.40,1.0\n")


def test_build_from_directory(dataset):
    data = CathData(dataset)
    summary = json.loads(dataset.with_suffix(".json").read_text())
    assert summary["sha256"] == sha256(dataset) == data.sha256
    assert len(data) == summary["n_domains"] and data.n_classes == 10 and data.n_channels == 1
    assert data.class_codes == list(ARCHITECTURES) and data.class_names == list(ARCHITECTURES.values())
    assert data.offsets[-1] == len(data.positions) == len(data.channels) == len(data.residue_index)
    assert data.positions.dtype == np.float32 and data.splits.dtype == np.int8
    # superfamily-disjoint, every split holds every class
    for sf in np.unique(data.superfamilies):
        assert len(np.unique(data.splits[data.superfamilies == sf])) == 1
    for s in range(N_SPLITS):
        assert set(data.labels[data.splits == s]) == set(range(10))
    assert sum(map(sum, summary["counts"].values())) == len(data)
    # atoms are the structure's Cα atoms, residue indices increase
    i = 5
    coords, _, _ = select_atoms(read_structure(FIXTURES / f"{data.ids[i]}.pdb"), "ca")
    xyz, channels = data.atoms(i)
    np.testing.assert_array_equal(xyz, coords)
    assert (channels == 0).all()
    lo, hi = data.offsets[i], data.offsets[i + 1]
    assert (np.diff(data.residue_index[lo:hi]) > 0).all()
    assert str(data.cath_codes[0]).startswith(data.class_codes[data.labels[0]])


def test_build_from_tar_matches_directory_and_reports_bad_files(dataset, tmp_path):
    src = tmp_path / "pool"
    shutil.copytree(FIXTURES, src / "pdb")
    shutil.move(src / "pdb" / "labels.csv", src / "labels.csv")
    bad = sorted((src / "pdb").glob("*.pdb"))[0]
    bad.write_text("ATOM      1  CA  GLY A   1     garbage\n")
    archive = tmp_path / "pool.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(src / "labels.csv", "labels.csv")
        tar.add(src / "pdb", "pdb")
    errors = []
    result = build_dataset(archive, tmp_path / "t.npz", n_splits=N_SPLITS - 1, workers=2, on_error=lambda i, m: errors.append(i))
    assert errors == [bad.stem] and list(result.summary["skipped"]["unreadable"]) == [bad.stem]
    from_tar = CathData(tmp_path / "t.npz")
    from_dir = CathData(dataset)
    keep = from_dir.ids != bad.stem
    assert (from_tar.ids == from_dir.ids[keep]).all()
    np.testing.assert_array_equal(from_tar.positions, from_dir.positions[np.repeat(keep, np.diff(from_dir.offsets))])


def test_build_from_cath_domain_list_and_extensionless_files(dataset, tmp_path):
    rows = [line.split(",") for line in (FIXTURES / "labels.csv").read_text().splitlines()[1:]]
    lines = ["# CATH domain list: id C A T H S35 S60 S95 S100 count length resolution"]
    for s35, (cath_id, code, _, resolution, *_rest) in enumerate(rows):
        shutil.copy(FIXTURES / f"{cath_id}.pdb", tmp_path / cath_id)  # CATH's own files have no suffix
        lines.append(f"{cath_id} {' '.join(code.split('.'))} {s35 + 1} 1 1 1 1 100 {resolution}")
    lines.append("9xyzA00 4 10 10 10 1 1 1 1 1 50 2.0")  # class 4: not one of the ten architectures
    (tmp_path / "CathDomainList.txt").write_text("\n".join(lines) + "\n")
    result = build_dataset(tmp_path, tmp_path / "clf.npz", labels=tmp_path / "CathDomainList.txt", n_splits=N_SPLITS)
    assert result.summary["n_domains"] == len(rows) and result.summary["skipped"]["other_architecture"] == 1
    clf, pool = CathData(tmp_path / "clf.npz"), CathData(dataset)
    by_id = {str(i): k for k, i in enumerate(pool.ids)}
    for k, cath_id in enumerate(clf.ids):
        j = by_id[str(cath_id)]
        np.testing.assert_array_equal(clf.atoms(k)[0], pool.atoms(j)[0])
        assert clf.labels[k] == pool.labels[j] and clf.superfamilies[k] == pool.superfamilies[j]


def test_max_radius_drops_large_domains(tmp_path):
    full = build_dataset(FIXTURES, tmp_path / "a.npz", labels=FIXTURES / "labels.csv", n_splits=2)
    data = CathData(tmp_path / "a.npz")
    radius = [np.linalg.norm(x - x.mean(0), axis=1).max() for x in (data.atoms(i)[0] for i in range(len(data)))]
    cut = float(np.sort(radius)[-3])  # drop the three largest
    small = build_dataset(FIXTURES, tmp_path / "b.npz", labels=FIXTURES / "labels.csv", n_splits=2, max_radius=cut - 1e-3)
    assert len(small.summary["skipped"]["too_large"]) == 3
    assert small.summary["n_domains"] == full.summary["n_domains"] - 3


def test_cli_build_prints_table_and_reports_errors(tmp_path):
    runner = CliRunner()
    out = tmp_path / "c.npz"
    r = runner.invoke(app, ["dataset", "build", "--labels", str(FIXTURES / "labels.csv"), "--pdb", str(FIXTURES),
                            "-o", str(out), "--splits", "3", "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "3-Layer (aba) Sandwich" in r.output and "superfamilies" in r.output
    assert out.exists() and out.with_suffix(".json").exists()
    r = runner.invoke(app, ["dataset", "build", "--labels", str(FIXTURES / "labels.csv"), "--pdb", str(tmp_path / "nope"), "-o", str(out)])
    assert r.exit_code == 1 and "nope: no such file or directory" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["dataset", "build", "--labels", str(FIXTURES / "labels.csv"), "--pdb", str(FIXTURES),
                            "-o", str(out), "--splits", "5"])
    assert r.exit_code == 1 and "fewer than 5 splits" in r.output
    r = runner.invoke(app, ["dataset", "build", "--pdb", str(FIXTURES)])
    assert r.exit_code == 2
