"""Atomic writes (cathnet.fileio): all or nothing, no temporary files left, ordinary mode."""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest

from cathnet.fileio import atomic_file, atomic_save_npz, atomic_write, write_json


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_write_replaces(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["x.bin"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600
    write_json(tmp_path / "x.json", {"a": [1, 2]})
    assert (tmp_path / "x.json").read_text() == '{\n "a": [\n  1,\n  2\n ]\n}\n'
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": [1, 2]}
    assert sorted(os.listdir(tmp_path)) == ["x.bin", "x.json"]


def test_exception_keeps_old_file(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):  # BaseException too
        with atomic_file(target) as f:
            f.write(b"half")
            assert len(os.listdir(tmp_path)) == 2  # the temporary file, next to the target
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.bin"]
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "new.bin") as f:
            raise RuntimeError
    assert os.listdir(tmp_path) == ["x.bin"]  # no target created either


def test_atomic_save_npz(tmp_path, monkeypatch):
    target = tmp_path / "x"  # saved to exactly this name, no ".npz" appended
    arrays = {"a": np.arange(1000), "s": np.array(["x", "yz"]), "meta": np.array('{"k": 1}')}
    atomic_save_npz(target, compress=True, **arrays)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    assert target.read_bytes() == buffer.getvalue()  # byte-reproducible, same as a save to memory
    atomic_save_npz(target, a=np.arange(3))
    assert np.load(target)["a"].tolist() == [0, 1, 2] and os.listdir(tmp_path) == ["x"]

    def disk_full(f, **arrays):
        f.write(b"PK half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError):
        atomic_save_npz(target, a=np.arange(4))  # fails mid-write: the old file stays, no temp file
    assert np.load(target)["a"].tolist() == [0, 1, 2] and os.listdir(tmp_path) == ["x"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()
