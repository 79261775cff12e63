"""bf16 autocast: every layer and shipped network runs under it, statistics and weights stay
fp32, equivariance holds to bf16 rounding, and predictions match fp32."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cathnet import load_model, so3
from cathnet.grid import rotate_grid
from cathnet.networks import build
from cathnet.nn import EquivariantBatchNorm, FieldType, Gate, GlobalPool, NormNonlinearity, SE3Conv
from cathnet.precision import PrecisionError, autocast, native_bf16, resolve_precision
from cathnet.train import train

from cath_helpers import tiny_config

CPU = torch.device("cpu")
CATH = sorted((Path(__file__).parent / "data" / "cath").glob("*.pdb"))


def test_resolve_precision():
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("auto", CPU) == ("bf16" if native_bf16(CPU) else "fp32")
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    with pytest.raises(PrecisionError, match="fp16"):
        resolve_precision("fp16", CPU)


def test_layers_run_under_bf16_with_fp32_statistics():
    t = FieldType.parse("4x0 + 2x1 + 2x2")
    conv, bn, gate = SE3Conv(FieldType([2]), t.gated(), 3), EquivariantBatchNorm(t.gated()), Gate(t)
    norm, pool = NormNonlinearity(t), GlobalPool(t)
    x = torch.randn(2, 2, 7, 7, 7)
    with autocast("bf16", CPU):
        h = norm(gate(bn(conv(x))))
        out = pool(h)
    assert h.dtype == torch.bfloat16  # no silent fp32 round trips between convolutions
    assert out.dtype == torch.float32  # invariants pooled in fp32
    out.sum().backward()
    assert conv.weight_0_0.grad is not None and conv.weight_0_0.dtype == torch.float32
    for buf in (bn.running_sq, bn.scalar_bn.running_mean, bn.scalar_bn.running_var):
        assert buf.dtype == torch.float32 and torch.isfinite(buf).all()
    assert not torch.equal(bn.scalar_bn.running_var, torch.ones_like(bn.scalar_bn.running_var))


def test_batch_norm_matches_torch_batch_norm_on_scalars():
    torch.manual_seed(0)
    ours, ref = EquivariantBatchNorm(FieldType([3])), torch.nn.BatchNorm3d(3)
    x = 2 * torch.randn(4, 3, 5, 5, 5) + 1
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.scalar_bn.running_var, ref.running_var)
    torch.testing.assert_close(ours.scalar_bn.running_mean, ref.running_mean)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,grid,channels", [("se3-compact", 26, 3), ("se3-env", 16, 8)])
def test_network_under_bf16_is_invariant_to_bf16_rounding(name, grid, channels):
    torch.manual_seed(0)
    model = build(name, in_channels=channels, n_classes=10, grid_size=grid)
    x = torch.rand(3, channels, grid, grid, grid)
    model.train()
    with autocast("bf16", CPU):
        F.cross_entropy(model(x).float(), torch.tensor([0, 1, 2])).backward()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    model.eval()
    batch = torch.cat([x[:1]] + [rotate_grid(x[:1], R) for R in so3.cube_rotations()[1:]])
    with torch.no_grad(), autocast("bf16", CPU):
        out = model(batch).float()
    with torch.no_grad():
        ref = model(x[:1])
    rel = lambda a, b: ((a - b).norm(dim=-1) / b.norm()).max().item()  # noqa: E731
    assert rel(out[:1], ref) < 5e-2  # bf16 against fp32
    assert rel(out, out[:1]) < 5e-2  # rotated inputs in bf16
    assert rel(out, out[:1]) > 0  # really computed in bf16 (fp32 would be ~1e-7)


@pytest.mark.parametrize("files", [
    CATH[:3],
    # where bf16 is emulated (about 20× slower than fp32 on AVX2-only CPUs: 135 s for all 12)
    # the other 9 run with the slow tests, which CI runs too
    pytest.param(CATH[3:12], marks=() if native_bf16(CPU) else pytest.mark.slow),
], ids=["3 domains", "9 more domains"])
def test_bf16_predictions_match_fp32_on_fixtures(files):
    m32, m16 = load_model("cath-arch", precision="fp32"), load_model("cath-arch", precision="bf16")
    preds32, preds16 = list(m32.predict_many(files)), list(m16.predict_many(files))
    assert [p.architecture for p in preds16] == [p.architecture for p in preds32]
    assert np.abs(np.array([p.probability for p in preds16]) - [p.probability for p in preds32]).max() < 0.02


@pytest.mark.slow
def test_compiled_bf16_training_runs(dataset, tmp_path):
    result = train(replace(tiny_config(dataset, tmp_path), epochs=1, precision="bf16", compile=True))
    metrics = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert np.isfinite(metrics["train_loss"]) and result["best"]["epoch"] == 1
    meta = json.loads((tmp_path / "best.json").read_text())
    assert meta["training"]["compile"] is True and meta["training"]["precision"] == "bf16"
