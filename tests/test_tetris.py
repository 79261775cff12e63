"""The 3D Tetris experiment: shapes, exact invariance, chirality, 100 % on rotated shapes."""
import itertools

import pytest
import torch
from typer.testing import CliRunner

from cathnet import so3
from cathnet.grid import rotate_grid
from cathnet.tetris import (
    SHAPES,
    PlainTetrisNet,
    SteerableTetrisNet,
    count_parameters,
    cube_rotated,
    render_shape,
    run_tetris,
    tetris_dataset,
)

CUBE = so3.cube_rotations()


@pytest.fixture(autouse=True)
def one_thread():
    """Deterministic and immune to other jobs on the two shared cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_shapes_are_tetrominoes():
    assert len(SHAPES) == 8
    for name, cubes in SHAPES.items():
        assert len(set(cubes)) == 4, name
        # connected through faces
        seen, todo = {cubes[0]}, [cubes[0]]
        while todo:
            c = todo.pop()
            for d in cubes:
                if d not in seen and sum(abs(a - b) for a, b in zip(c, d)) == 1:
                    seen.add(d)
                    todo.append(d)
        assert len(seen) == 4, name


def test_no_two_shapes_are_rotations_of_each_other():
    x, _ = tetris_dataset()
    for a, b in itertools.combinations(range(len(x)), 2):
        for R in CUBE:
            assert not torch.allclose(rotate_grid(x[a, 0], R), x[b, 0], atol=1e-3), (a, b)


def test_chiral_pair_are_mirror_images():
    x, _ = tetris_dataset()
    names = list(SHAPES)
    c1, c2 = x[names.index("chiral_1"), 0], x[names.index("chiral_2"), 0]
    torch.testing.assert_close(c1.flip(1), c2)  # y -> -y about the grid centre


@pytest.mark.parametrize("k", [1, 5, 17])
def test_rendering_is_centred_so_cube_rotations_are_exact(k):
    cubes = SHAPES["L"]
    rotated_render = render_shape(cubes, rotation=CUBE[k])
    torch.testing.assert_close(rotate_grid(torch.from_numpy(render_shape(cubes)), CUBE[k]), torch.from_numpy(rotated_render))


def test_shapes_fit_in_the_grid():
    x, _ = tetris_dataset()
    border = torch.cat([x[..., 0, :, :].flatten(1), x[..., -1, :, :].flatten(1)], 1)
    assert border.max() < 0.05 * x.max()


def test_cube_rotated_test_set():
    x, y = tetris_dataset()
    xr, yr = cube_rotated(x, y, per_shape=3, seed=1)
    assert xr.shape == (24, *x.shape[1:]) and yr.tolist() == [i for i in range(8) for _ in range(3)]
    xr2, _ = cube_rotated(x, y, per_shape=3, seed=1)
    torch.testing.assert_close(xr, xr2)


def test_steerable_net_is_exactly_invariant_to_cube_rotations():
    torch.manual_seed(0)
    net = SteerableTetrisNet().eval()
    x, _ = tetris_dataset()
    with torch.no_grad():
        ref = net(x)
        for R in CUBE[1:6]:
            torch.testing.assert_close(net(rotate_grid(x, R)), ref, atol=1e-4, rtol=1e-4)


def test_chirality_needs_fields_of_order_above_zero():
    """Scalar-only steerable layers have isotropic kernels and are blind to handedness;
    with l = 1, 2 fields the network can tell the mirror pair apart."""
    x, _ = tetris_dataset()
    names = list(SHAPES)
    pair = x[[names.index("chiral_1"), names.index("chiral_2")]]

    def invariants(net):
        with torch.no_grad():
            f = net.eval().pool(net.features(pair))
        return ((f[0] - f[1]).abs().max() / f.abs().max()).item()

    torch.manual_seed(0)
    assert invariants(SteerableTetrisNet(types=("8x0", "8x0", "8x0"))) < 1e-6  # float noise only
    torch.manual_seed(0)
    assert invariants(SteerableTetrisNet()) > 1e-4  # already at initialisation


def test_baseline_has_a_similar_parameter_count():
    a, b = count_parameters(SteerableTetrisNet()), count_parameters(PlainTetrisNet())
    assert 0.75 < a / b < 1.33


def test_steerable_net_is_perfect_on_rotated_shapes():
    results = {r.model: r for r in run_tetris(seed=0, steps=120, per_shape=6)}
    steerable, cnn = results["steerable"], results["cnn"]
    assert steerable.canonical_accuracy == 1.0
    assert steerable.rotated_accuracy == 1.0
    assert cnn.canonical_accuracy == 1.0  # the baseline does learn the training set
    assert 0.0 <= cnn.rotated_accuracy <= 1.0
    assert abs(steerable.parameters - cnn.parameters) < 0.25 * cnn.parameters


def test_run_is_deterministic():
    a = run_tetris(seed=3, steps=3, per_shape=1, models=("steerable", "cnn"))
    b = run_tetris(seed=3, steps=3, per_shape=1, models=("steerable", "cnn"))
    assert [(r.final_loss, r.rotated_accuracy) for r in a] == [(r.final_loss, r.rotated_accuracy) for r in b]
    with pytest.raises(ValueError, match="multiple of 4"):
        run_tetris(size=18, steps=1)


def test_cli_smoke():
    import cathnet.cli.tetris  # noqa: F401  (registers the command)
    from cathnet.cli.app import app

    r = CliRunner().invoke(app, ["tetris", "--steps", "2", "--rotations", "1", "--arbitrary", "1"])
    assert r.exit_code == 0, r.output
    assert "steerable" in r.output and "cnn" in r.output and "90° rot." in r.output
    r = CliRunner().invoke(app, ["tetris", "--size", "18"])
    assert r.exit_code != 0
