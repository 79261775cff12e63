"""Equivariance of every layer under the 24 cube rotations, and layer behaviour."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from cathnet import so3
from cathnet.grid import resample_grid, rotate_grid
from cathnet.nn import (
    EquivariantAvgPool,
    EquivariantBatchNorm,
    FieldDropout,
    FieldType,
    Gate,
    GlobalPool,
    NormNonlinearity,
    SE3Conv,
    centre_weights,
    collapse,
)

CUBE = so3.cube_rotations()
T = FieldType.parse("2x0 + 2x1 + 2x2 + 2x3")


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def max_equivariance_error(f, tin, tout, x, rots=CUBE):
    """max_R |f(R·x) - R·f(x)| / |R·f(x)|; tout=None means invariant output (B, k).
    All rotated copies go through ``f`` as one batch (f must act per sample)."""
    with torch.no_grad():
        y = f(x)
        outs = f(torch.cat([tin.transform(x, R) for R in rots])).split(len(x))
    errs = [rel(o, y if tout is None else tout.transform(y, R)) for o, R in zip(outs, rots)]
    return max(errs)


def test_field_type_parse_str_dim():
    t = FieldType([2, 2, 2, 2])
    assert t == FieldType.parse("2x0 + 2x1 + 2x2 + 2x3") == FieldType.parse(str(t))
    assert str(t) == "2x0 + 2x1 + 2x2 + 2x3"
    assert t.dim == 2 * (1 + 3 + 5 + 7)
    assert FieldType.parse("3 + 1x0 + 2x2").multiplicities == (1, 0, 2, 1)
    assert str(FieldType.parse("4x0 + 0x1 + 1x2")) == "4x0 + 1x2"
    assert t.gated() == FieldType([8, 2, 2, 2])
    with pytest.raises(ValueError, match="cannot parse"):
        FieldType.parse("2y1")
    with pytest.raises(ValueError):
        FieldType([1, -1])


def test_representation_is_block_diagonal_wigner():
    R = so3.random_rotation(seed=0)
    rho = FieldType.parse("1x0 + 1x1 + 1x2").representation(R, dtype=torch.float64).numpy()
    assert rho.shape == (9, 9)
    np.testing.assert_allclose(rho[0, 0], 1.0)
    np.testing.assert_allclose(rho[1:4, 1:4], R, atol=1e-12)
    np.testing.assert_allclose(rho[4:, 4:], so3.wigner_D(2, R), atol=1e-12)
    np.testing.assert_allclose(rho[1:4, 4:], 0)


def test_gradient_field_is_an_order_one_field():
    """The convention written once: finite-difference gradient channels (d/dX, d/dY, d/dZ)
    of a scalar grid transform as an l = 1 field (x, y, z) under FieldType.transform."""
    g = torch.Generator().manual_seed(0)
    f = torch.randn(1, 1, 12, 12, 12, generator=g, dtype=torch.float64)

    def grad(s):
        return torch.stack(torch.gradient(s[0, 0]), dim=0)[None]

    vec = FieldType([0, 1])
    for R in CUBE:
        np.testing.assert_allclose(grad(rotate_grid(f, R)), vec.transform(grad(f), R), atol=1e-12)
    # and a steerable 0 -> 1 convolution with a single basis kernel is a smoothed gradient
    conv = SE3Conv(FieldType([1]), vec, 3, bias=False).double()
    with torch.no_grad():
        conv.weight_1_0.fill_(1.0)
    smooth = torch.exp(-torch.linspace(-2, 2, 12, dtype=torch.float64) ** 2)
    s = (smooth[:, None, None] * smooth[None, :, None] * smooth[None, None, :] * torch.arange(12.0).double())[None, None]
    c = torch.nn.functional.cosine_similarity(conv(s)[..., 2:-2, 2:-2, 2:-2].flatten(), grad(s)[..., 2:-2, 2:-2, 2:-2].flatten(), dim=0)
    assert abs(c.item()) > 0.95


@pytest.mark.parametrize("size", [3, 5, 7])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_se3conv_equivariance(size, dtype, tol):
    torch.manual_seed(size)
    t = T if dtype == torch.float32 else FieldType([1, 1, 1, 1])
    conv = SE3Conv(t, t, size).to(dtype)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(1, t.dim, 9, 9, 9, dtype=dtype)
    assert max_equivariance_error(conv, t, t, x) < tol


def test_not_rotating_field_components_fails():
    """Sensitivity: moving voxels without rotating components must break equivariance."""
    torch.manual_seed(0)
    conv = SE3Conv(T, T, 5).double()
    x = torch.randn(1, T.dim, 9, 9, 9, dtype=torch.float64)
    y = conv(x)
    errs = [rel(conv(rotate_grid(x, R)), rotate_grid(y, R)) for R in CUBE[1:]]
    assert min(errs) > 0.1


@pytest.mark.parametrize("size,n", [(4, 10), (3, 9), (5, 11)])
def test_strided_conv_equivariance(size, n):
    torch.manual_seed(1)
    conv = SE3Conv(T, T, size, stride=2, padding=(size - 2) // 2 if size % 2 == 0 else size // 2).double()
    x = torch.randn(1, T.dim, n, n, n, dtype=torch.float64)
    assert max_equivariance_error(conv, T, T, x) < 1e-10


def test_strided_conv_rejects_shifted_windows():
    conv = SE3Conv(T, T, 3, stride=2)
    with pytest.raises(ValueError, match="shifts the grid centre"):
        conv(torch.zeros(1, T.dim, 10, 10, 10))


def test_to_conv3d_matches():
    torch.manual_seed(2)
    conv = SE3Conv(T, FieldType.parse("3x0 + 1x1 + 2x3"), 5)
    x = torch.randn(2, T.dim, 8, 8, 8)
    plain = conv.to_conv3d()
    assert isinstance(plain, nn.Conv3d)
    assert rel(plain(x), conv(x)) < 1e-6


def test_se3conv_type_checks():
    with pytest.raises(TypeError, match="FieldType"):
        SE3Conv([1], T, 3)
    conv = SE3Conv(T, T, 3)
    with pytest.raises(ValueError, match="expects 32 channels"):
        conv(torch.zeros(1, 5, 8, 8, 8))
    with pytest.raises(ValueError, match="no basis kernels"):
        SE3Conv(FieldType([1]), FieldType([0, 0, 0, 1]), 1)


def test_bias_only_on_scalars():
    conv = SE3Conv(T, T, 3)
    assert conv.bias.shape == (2,)
    assert SE3Conv(T, FieldType([0, 2]), 3).bias is None


@pytest.mark.parametrize("layer", ["gate", "norm", "bn", "dropout", "pool2", "pool3"])
def test_layer_equivariance(layer):
    torch.manual_seed(3)
    n = 10
    if layer == "gate":
        f, tin, tout = Gate(T), T.gated(), T
    elif layer == "norm":
        f, tin, tout = NormNonlinearity(T), T, T
        with torch.no_grad():
            f.bias.normal_()
    elif layer == "bn":
        f, tin, tout = EquivariantBatchNorm(T), T, T
        f.train()
        f(torch.randn(4, T.dim, n, n, n, dtype=torch.float64).to(torch.float32))
        f.eval()
    elif layer == "dropout":
        f, tin, tout = FieldDropout(T, 0.5).eval(), T, T
    elif layer == "pool2":
        f, tin, tout = EquivariantAvgPool(2), T, T
    else:
        f, tin, tout = EquivariantAvgPool(3, 2, 1), T, T
        n = 11
    x = torch.randn(2, tin.dim, n, n, n)
    assert max_equivariance_error(f, tin, tout, x) < 1e-5
    assert max_equivariance_error(f.double(), tin, tout, x.double()) < 1e-10


def test_batchnorm_training_mode_is_equivariant_and_normalises():
    torch.manual_seed(4)
    bn = EquivariantBatchNorm(T).double().train()
    x = 3 * torch.randn(4, T.dim, 6, 6, 6, dtype=torch.float64) + 1
    with torch.no_grad():
        y = bn(x)
    assert y[:, :2].mean().abs() < 1e-6
    sq = y[:, 2:8].reshape(4, 2, 3, -1).pow(2).mean(dim=(0, 2, 3))  # l = 1 fields
    np.testing.assert_allclose(sq, 1.0, atol=1e-3)
    R = CUBE[9]
    with torch.no_grad():
        np.testing.assert_allclose(bn(T.transform(x, R)), T.transform(y, R), atol=1e-10)


def test_dropout_drops_whole_fields():
    torch.manual_seed(5)
    d = FieldDropout(T, 0.5).train()
    y = d(torch.ones(64, T.dim, 2, 2, 2))
    sl = T.slices()
    for l in range(4):
        block = y[:, sl[l]].reshape(64, 2, 2 * l + 1, -1)
        per_field = block.amin(dim=(2, 3)) == block.amax(dim=(2, 3))
        assert per_field.all()  # all components and voxels of a field share one fate
    assert 0.3 < (y == 0).float().mean() < 0.7
    assert y.max() == 2.0


def test_global_pool_invariant():
    torch.manual_seed(6)
    x = torch.randn(2, T.dim, 8, 8, 8, dtype=torch.float64)
    p = GlobalPool(T)
    assert p(x).shape == (2, T.n_fields)
    assert max_equivariance_error(p, T, None, x) < 1e-12


def test_centre_pool_invariant_and_sees_the_centre():
    """Means over balls about the grid centre: invariant under the cube rotations (odd and
    even grids), unlike a ball about an off-centre point, and, unlike the global mean, they
    change when the content is translated away from the centre."""
    torch.manual_seed(6)
    for n in (4, 5):
        x = torch.randn(2, T.dim, n, n, n, dtype=torch.float64)
        p = GlobalPool(T, radii=(1.0, 1.8))
        assert p(x).shape == (2, 3 * T.n_fields) and p.out_type == FieldType([3 * T.n_fields])
        assert max_equivariance_error(p, T, None, x) < 1e-12
        assert torch.allclose(p(x)[:, : T.n_fields], GlobalPool(T)(x))  # first block: the global mean
    weights = centre_weights((4, 4, 4), (1.0, 1.8))
    assert weights.flatten(1).sum(1).allclose(torch.ones(3, dtype=torch.float64))
    assert [int((w > 0).sum()) for w in weights] == [64, 8, 32]
    ball = centre_weights((7, 7, 7), (1.0,))[1, :5, :5, :5]  # a ball about voxel (3, 3, 3) of a 5³ grid
    x = torch.randn(2, T.dim, 5, 5, 5, dtype=torch.float64)
    assert max_equivariance_error(lambda x: torch.einsum("bc...,...->bc", x[:, :2], ball), T, None, x) > 1e-3
    bump = torch.zeros(1, T.dim, 6, 6, 6, dtype=torch.float64)
    bump[:, :, 2:4, 2:4, 2:4] = 1.0
    moved = torch.roll(bump, 2, dims=2)
    assert torch.allclose(GlobalPool(T)(bump), GlobalPool(T)(moved))
    p = GlobalPool(T, radii=(1.0,))
    assert not torch.allclose(p(bump), p(moved))
    with pytest.raises(ValueError, match="no voxel"):
        GlobalPool(T, radii=(0.1,))(torch.zeros(1, T.dim, 4, 4, 4))


@pytest.mark.parametrize("size", [3, 5, 7])
def test_deep_stack_equivariance(size):
    """conv → BN → gate → dropout(eval) → pool → conv → global pool, orders up to 3."""
    torch.manual_seed(7)
    tin = FieldType.parse("1x0 + 1x1")
    stack = nn.Sequential(
        SE3Conv(tin, T.gated(), size),
        EquivariantBatchNorm(T.gated()),
        Gate(T),
        FieldDropout(T, 0.3),
        EquivariantAvgPool(2),
        SE3Conv(T, T, size),
        GlobalPool(T),
    )
    stack.train()
    stack(torch.randn(2, tin.dim, 12, 12, 12))
    stack.eval()
    x = torch.randn(2, tin.dim, 12, 12, 12)
    assert max_equivariance_error(stack, tin, None, x) < 1e-5
    assert max_equivariance_error(stack.double(), tin, None, x.double()) < 1e-10
    assert rel(collapse(stack)(x.double()), stack(x.double())) < 1e-10


def test_arbitrary_rotation_error_vs_plain_cnn():
    """Arbitrary rotations of a smooth input sampled analytically (Gaussian blobs at rotated
    centres): the steerable stack's scalar output maps follow the rotation, a plain CNN's of
    the same width do not. Both output maps are compared after trilinear resampling, so the
    interpolation error is the same for both."""
    torch.manual_seed(8)
    n = 20
    r = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    grid = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1)
    centres = torch.randn(5, 3, dtype=torch.float64) * 2.5

    def blobs(c):
        return torch.exp(-((grid[..., None, :] - c) ** 2).sum(-1) / 6).sum(-1)[None, None]

    tin, tout = FieldType([1]), FieldType.parse("4x0 + 2x1 + 2x2")
    se3 = nn.Sequential(SE3Conv(tin, tout.gated(), 5), Gate(tout), SE3Conv(tout, FieldType([4]), 5))
    cnn = nn.Sequential(nn.Conv3d(1, tout.dim, 5, padding=2), nn.ReLU(), nn.Conv3d(tout.dim, 4, 5, padding=2))
    inner = (slice(None), slice(None)) + (slice(6, -6),) * 3
    errs = {"steerable": [], "cnn": []}
    with torch.no_grad():
        for R in so3.random_rotation(3, seed=1):
            x, xr = blobs(centres), blobs(centres @ torch.from_numpy(R).T)
            for name, f in (("steerable", se3.double()), ("cnn", cnn.double())):
                errs[name].append(rel(f(xr)[inner], resample_grid(f(x), R)[inner]))
    e_se3, e_cnn = max(errs["steerable"]), max(errs["cnn"])
    print(f"arbitrary-rotation relative error of output maps: steerable {e_se3:.4f}, plain CNN {e_cnn:.4f}")
    assert e_se3 < 0.05
    assert e_cnn > 5 * e_se3


def test_init_keeps_activation_std_through_10_layers():
    """conv(gain √2) → gate, 10 layers, no batch norm, on a smooth unit-variance input:
    the std stays in a band (printed; without the ReLU-mean correction of the 0 → 0
    kernels it grows about 10x)."""
    torch.manual_seed(9)
    t = FieldType.parse("4x0 + 4x1 + 2x2 + 2x3")
    layers, tin = [], FieldType([1])
    for _ in range(10):
        layers.append(nn.Sequential(SE3Conv(tin, t.gated(), 3, gain=2**0.5), Gate(t)))
        tin = t
    x = torch.nn.functional.avg_pool3d(torch.randn(2, 1, 20, 20, 20), 5, 1)
    x = x / x.std()
    stds = []
    with torch.no_grad():
        for layer in layers:
            x = layer(x)
            stds.append(x.std().item())
    print("per-layer std:", " ".join(f"{s:.3f}" for s in stds))
    assert all(0.2 < s < 3 for s in stds), stds


def test_every_layer_states_its_types():
    t = FieldType.parse("2x0 + 1x1 + 1x2")
    layers = [SE3Conv(t, t.gated(), 3), Gate(t), NormNonlinearity(t), EquivariantBatchNorm(t), FieldDropout(t),
              EquivariantAvgPool(2, field_type=t), GlobalPool(t)]
    for layer in layers:
        assert isinstance(layer.in_type, FieldType) and isinstance(layer.out_type, FieldType), layer
    assert Gate(t).in_type == t.gated() and GlobalPool(t).out_type == FieldType([t.n_fields])
    assert EquivariantAvgPool(2).in_type is None  # acts on any type alike


def test_representation_follows_a_tensor_rotation():
    R = torch.tensor(CUBE[5], dtype=torch.float64)
    rho = T.representation(R)
    assert rho.dtype == torch.float64 and rho.shape == (T.dim, T.dim)
    assert T.representation(CUBE[5]).dtype == torch.float32
    torch.testing.assert_close(rho @ rho.T, torch.eye(T.dim, dtype=torch.float64))
