"""`cathnet export`: ONNX and TorchScript files that compute what the PyTorch model computes."""
import json
import zipfile

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cathnet import checkpoint, networks
from cathnet.cli import app
from cathnet.export import EXPORT_FORMAT, sidecar_path
from cathnet.predict import load_model
from cathnet.selection import select_atoms
from cathnet.structure import read_structure
from cathnet.voxel import voxelize

from cath_helpers import CATH

CODES = ["1.10", "1.20", "2.30", "2.40", "2.60", "3.10", "3.20", "3.30", "3.40", "3.90"]
GRID = 24  # a small grid keeps the test fast; the layout is the same as at 50³
runner = CliRunner()


@pytest.fixture(scope="module")
def stem(tmp_path_factory):
    """A small se3-compact model (random weights, non-trivial batch-norm statistics) saved
    the way training saves it."""
    torch.manual_seed(0)
    net = networks.build("se3-compact", in_channels=3, n_classes=10, grid_size=GRID)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
            elif hasattr(m, "running_sq"):
                m.running_sq.uniform_(0.5, 2.0)
    meta = {
        "task": "cath",
        "input": {"atoms": "ca-ss", "n_channels": 3, "grid_size": GRID, "voxel_size": 4.0, "sigma": 2.0, "centre": "mean atom position"},
        "classes": {"codes": CODES, "names": [f"class {c}" for c in CODES]},
    }
    stem = tmp_path_factory.mktemp("model") / "tiny"
    checkpoint.save_model(stem, net, meta)
    return stem


@pytest.fixture(scope="module")
def reference(stem):
    """Real protein grids built from the sidecar's parameters alone, and the PyTorch logits."""
    model = load_model(stem)
    grids = []
    for path in CATH[:3]:
        coords, channels, n = select_atoms(read_structure(path), "ca-ss")
        grids.append(voxelize(coords, channels, n, grid_size=GRID, voxel_size=4.0, sigma=2.0)[0])
    x = np.stack(grids).astype(np.float32)
    with torch.no_grad():
        logits = model.network(torch.from_numpy(x)).numpy()
    return model, x, logits


def relative_error(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def export(stem, out, *args):
    result = runner.invoke(app, ["export", str(stem), "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    assert out.exists() and sidecar_path(out).exists()
    return json.loads(sidecar_path(out).read_text())


def check_sidecar(side, out, fmt):
    assert side["format"] == EXPORT_FORMAT and side["export"]["format"] == fmt
    assert side["export"]["file"] == out.name and side["export"]["bytes"] == out.stat().st_size
    assert side["input"]["shape"] == ["batch", 3, GRID, GRID, GRID] and side["input"]["channels"] == ["helix", "strand", "coil"]
    for key in ("atoms", "grid_size", "voxel_size", "sigma", "truncate", "centre"):
        assert key in side["input"]
    assert side["classes"]["codes"] == CODES and side["output"]["shape"] == ["batch", 10]
    assert side["check"]["relative_error"] <= 1e-5
    assert side["source"]["network"]["name"] == "se3-compact"


def test_onnx_matches_pytorch(stem, reference, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'cathnet[export]')")
    onnx = pytest.importorskip("onnx", reason="onnx not installed (pip install 'cathnet[export]')")
    model, x, logits = reference
    out = tmp_path / "tiny.onnx"
    side = export(stem, out)
    check_sidecar(side, out, "onnx")
    assert side["export"]["opset"] >= 17

    proto = onnx.load(str(out))
    assert proto.opset_import[0].version >= 17
    assert {node.domain for node in proto.graph.node} <= {"", "ai.onnx"}  # standard operators only
    assert sum(node.op_type == "Conv" for node in proto.graph.node) == 8  # 7 gated convs + the head's conv
    embedded = json.loads({p.key: p.value for p in proto.metadata_props}["cathnet"])
    assert embedded["classes"]["codes"] == CODES and embedded["input"]["voxel_size"] == 4.0

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"grid": x})  # batch 3 (exported with batch 2: the axis is dynamic)
    assert relative_error(got, logits) <= 1e-5
    (one,) = session.run(None, {"grid": x[:1]})
    assert relative_error(one, logits[:1]) <= 1e-5
    assert [CODES[i] for i in got.argmax(1)] == [p.architecture for p in model.predict_many(CATH[:3])]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_matches_pytorch(stem, reference, tmp_path):
    _, x, logits = reference
    out = tmp_path / "tiny.pt"
    side = export(stem, out)
    check_sidecar(side, out, "torchscript")

    extra = {"cathnet.json": ""}
    loaded = torch.jit.load(str(out), map_location="cpu", _extra_files=extra)
    assert json.loads(extra["cathnet.json"])["classes"]["codes"] == CODES
    with torch.no_grad():
        assert relative_error(loaded(torch.from_numpy(x)).numpy(), logits) <= 1e-5
        assert relative_error(loaded(torch.from_numpy(x[:1])).numpy(), logits[:1]) <= 1e-5
    assert zipfile.is_zipfile(out)


def test_format_option_and_bad_inputs(stem, tmp_path):
    out = tmp_path / "model.bin"
    result = runner.invoke(app, ["export", str(stem), "-o", str(out), "--format", "torchscript", "--no-verify"])
    assert result.exit_code == 0, result.output
    assert json.loads(sidecar_path(out).read_text())["check"] is None

    result = runner.invoke(app, ["export", str(tmp_path / "missing"), "-o", str(tmp_path / "x.pt")])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "missing" in lines[0]
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "x.pt.json").exists()

    result = runner.invoke(app, ["export", "no-such-model", "-o", str(tmp_path / "x.pt")])
    assert result.exit_code == 1 and "unknown model" in result.stderr

    result = runner.invoke(app, ["export", str(stem), "-o", str(tmp_path / "nodir" / "x.pt")])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1

    result = runner.invoke(app, ["export", str(stem), "-o", str(tmp_path / "x.bin")])
    assert result.exit_code == 2  # format cannot be told from the suffix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.bin.json"]  # no temporary files left
