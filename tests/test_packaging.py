"""A built wheel carries the released models: installed outside the source tree, ``cathnet
predict`` finds them from any folder (slow: builds the wheel)."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "3x2hA00.pdb"


@pytest.mark.slow
def test_wheel_ships_the_models_and_predicts_from_anywhere(tmp_path):
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT / "cathnet", source / "cathnet", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", *(p.name for p in ROOT.glob("LICEN[CS]E*"))):
        shutil.copy(ROOT / name, source / name)
    # no build isolation: setuptools comes with torch, and CI may be offline
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("cathnet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for model in ("cath-arch", "aa-propensity"):
        assert {f"cathnet/models/{model}.json", f"cathnet/models/{model}.safetensors"} <= names, model
    assert not any(n.startswith(("tests/", "experiments/", "examples/")) for n in names)

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "domain.pdb").write_bytes(EXAMPLE.read_bytes())
    env = {**os.environ, "PYTHONPATH": str(site)}  # ahead of the editable install of the source tree
    env.pop("CATHNET_MODELS", None)
    where = subprocess.run([sys.executable, "-c", "import cathnet.models as m; print(m.models_dir())"], cwd=work,
                           env=env, check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).resolve() == (site / "cathnet" / "models").resolve()
    result = subprocess.run([sys.executable, "-m", "cathnet", "predict", "domain.pdb", "-f", "json", "--no-progress"],
                            cwd=work, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    codes = json.loads((site / "cathnet" / "models" / "cath-arch.json").read_text())["classes"]["codes"]
    assert row["file"] == "domain.pdb" and row["architecture"] in codes and len(codes) == 10
    assert sorted(p.name for p in work.iterdir()) == ["domain.pdb"]  # nothing written beside the input
