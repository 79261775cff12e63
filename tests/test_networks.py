"""Every shipped network: invariance of its logits under the 24 cube rotations."""
import pytest
import torch

from cathnet import so3
from cathnet.grid import rotate_grid
from cathnet.networks import EQUIVARIANT, build, from_config, n_parameters
from cathnet.nn import collapse

CUBE = so3.cube_rotations()


def _rotations_error(model, x):
    """max over the 24 cube rotations of |f(R x) - f(x)| / |f(x)|, one batched forward."""
    batch = torch.cat([rotate_grid(x, R) for R in CUBE])
    with torch.no_grad():
        out = model(batch)
    ref = out[:1]
    return ((out - ref).norm(dim=1) / ref.norm()).max().item()


def _input(grid, channels=1, seed=0):
    """A protein-like input: Gaussian density of a random 3.8 Å-step chain, 2 Å voxels."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.nn.functional.normalize(torch.randn(80, 3, generator=g), dim=1) * 1.9
    chain = torch.cumsum(steps, 0)
    chain = (chain - chain.mean(0)) * (grid / 50)
    r = torch.arange(grid, dtype=torch.float32) - (grid - 1) / 2
    p = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 1, 3)
    density = torch.exp(-((p - chain) ** 2).sum(-1) / 0.5).sum(-1).reshape(1, 1, grid, grid, grid)
    return density.repeat(1, channels, 1, 1, 1) * torch.linspace(1, 2, channels).view(1, -1, 1, 1, 1)


def _warm(model, grid, channels=1):
    model.train()
    with torch.no_grad():
        model(torch.cat([_input(grid, channels, seed) for seed in (1, 2, 3)]))
    return model.eval()


@pytest.mark.parametrize(
    "name,kwargs,grid",
    [
        # the released se3-compact is also checked in test_predict
        pytest.param("se3-compact", {}, 50, marks=pytest.mark.slow),
        ("se3-compact", {"in_type": "1x0 + 1x1"}, 50),
        pytest.param("se3resnet34", {"grid_size": 14}, 14, marks=pytest.mark.slow),
        ("se3-env", {}, 16),
        ("se3-env", {"centre_radii": [1.0, 1.8]}, 16),
        ("se3-env", {"head_hidden": 8}, 16),  # an MLP head reads the same invariants
    ],
)
def test_shipped_networks_are_invariant_to_cube_rotations(name, kwargs, grid):
    torch.manual_seed(0)
    channels = 4 if "in_type" in kwargs else 1
    model = _warm(build(name, in_channels=channels, n_classes=10, **kwargs), grid, channels)
    x = _input(grid, channels)
    if channels == 4:  # a vector field must also rotate its components
        from cathnet.nn import FieldType

        t = FieldType.parse(kwargs["in_type"])
        batch = torch.cat([t.transform(x, R) for R in CUBE])
        with torch.no_grad():
            out = model(batch)
        err = ((out - out[:1]).norm(dim=1) / out[:1].norm()).max().item()
    else:
        err = _rotations_error(model, x)
    assert err < 1e-5, err
    collapsed = collapse(model)
    with torch.no_grad():
        a, b = collapsed(x), model(x)
    assert ((a - b).norm() / b.norm()).item() < 1e-5
    assert name in EQUIVARIANT


def test_plain_cnn_is_not_invariant():
    """Sensitivity: relative to how much the logits differ between two chains, a plain CNN's
    logits move under cube rotations, the steerable network's do not."""
    x, y = _input(50, seed=4), _input(50, seed=5)
    for name, bound in (("cnn-compact", None), ("se3-compact", 1e-4)):
        torch.manual_seed(0)
        model = _warm(build(name, in_channels=1, n_classes=10), 50)
        with torch.no_grad():
            out = model(torch.cat([y] + [rotate_grid(x, R) for R in CUBE]))
        spread = (out[1] - out[0]).norm().item()
        moved = (out[2:] - out[1]).norm(dim=1).max().item()
        ratio = moved / spread
        print(f"{name}: rotation change / input change = {ratio:.2e}")
        if bound is None:
            assert ratio > 0.05
        else:
            assert ratio < bound


def test_parameter_counts_and_config_round_trip():
    m = build("se3resnet34", in_channels=1, n_classes=10)
    n = n_parameters(m)
    print(f"se3resnet34: {n:,} parameters (paper: 143,560)")
    assert 120_000 < n < 250_000
    assert abs(n_parameters(build("cnn-resnet34", in_channels=1, n_classes=10)) - 15.9e6) < 0.1e6
    c = build("se3-compact", in_channels=1, n_classes=10, dropout=0.2)
    assert n_parameters(from_config(c.config)) == n_parameters(c)


def test_bad_input_type():
    with pytest.raises(ValueError, match="in_type"):
        build("se3-compact", in_channels=1, n_classes=10, in_type="1x0 + 1x1")
