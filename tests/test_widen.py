"""Function-preserving widening of steerable networks (`cathnet.networks.widen`, `train --init`)."""
import pytest
import torch

from cathnet.networks import build
from cathnet.networks.widen import widen
from cathnet.nn import EquivariantBatchNorm

FRAME = dict(in_channels=17, n_classes=20, in_type="8x0 + 3x1", readout="frame", head_scalars=16)


def _trained_like(net: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """Random weights everywhere, batch-norm statistics from a few batches: no parameter at its initial value."""
    torch.manual_seed(1)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, EquivariantBatchNorm):
                for p in module.parameters():
                    p.uniform_(0.5, 1.5)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(x)
    return net.eval()


def _logits(net, x):
    with torch.no_grad():
        return net.eval()(x)


@pytest.mark.parametrize("narrow,wide", [
    ([[4, 2, 1], [6, 3, 1]], [[5, 3, 2], [8, 4, 2]]),   # every order of every stage wider
    ([[4, 2], [6, 3]], [[4, 2, 1], [6, 3, 2]]),          # an order the narrow network lacks
])
@pytest.mark.parametrize("head", [{}, {"head_scalars": 24, "centre_radii": [1.0]}, {"head_hidden": 12}])
def test_the_widened_network_computes_the_same_logits(narrow, wide, head):
    torch.manual_seed(0)
    x = torch.randn(6, 17, 16, 16, 16)
    small = _trained_like(build("se3-env", widths=narrow, dropout=0.0, **FRAME, **{"centre_radii": head.get("centre_radii", ())}), x)
    big = build("se3-env", widths=wide, dropout=0.0, **{**FRAME, **head})
    before = _logits(big, x)
    widen(small, big)
    a, b = _logits(small, x), _logits(big, x)
    assert (a - b).abs().max() <= 1e-5 * a.abs().max()
    assert (before - a).abs().max() > 0.1 * a.abs().max()  # not the same function by accident


def test_gates_move_with_their_fields_and_new_fields_are_read_as_zero():
    torch.manual_seed(0)
    x = torch.randn(4, 17, 16, 16, 16)
    small = _trained_like(build("se3-env", widths=[[4, 2, 1], [6, 3, 1]], dropout=0.0, **FRAME), x)
    reference = _logits(small, x)
    # copying every tensor into its leading slice puts old gates on new scalars and lets
    # old fields read new ones: a different function
    naive = build("se3-env", widths=[[5, 3, 2], [8, 4, 2]], dropout=0.0, **FRAME)
    state = naive.state_dict()
    with torch.no_grad():
        for key, tensor in small.state_dict().items():
            state[key][tuple(slice(0, n) for n in tensor.shape)] = tensor
    naive.load_state_dict(state)
    assert (_logits(naive, x) - reference).abs().max() > 0.01 * reference.abs().max()
    # the widened network can learn to use its new fields: their zero weights get gradients
    big = build("se3-env", widths=[[5, 3, 2], [8, 4, 2]], dropout=0.0, **FRAME)
    widen(small, big)
    big.train()
    big(x).logsumexp(1).sum().backward()
    w = big.features[3][0].weight_0_1  # stage 2 scalars and gates reading stage 1 vectors
    old_rows = [0, 1, 2, 3, 4, 5, 8, 9, 10, 12]  # 6 scalars, then the gates of 3 (of 4) vectors and 1 (of 2) tensors
    assert (w[old_rows, 2] == 0).all() and w.grad[old_rows, 2].abs().sum() > 0  # vector field 2 is new


def test_a_narrower_or_different_network_is_refused():
    small = build("se3-env", widths=[[4, 2, 1], [6, 3, 1]], **FRAME)
    big = build("se3-env", widths=[[5, 3, 2], [8, 4, 2]], **FRAME)
    with pytest.raises(ValueError, match="not wider"):
        widen(big, small)
    deeper = build("se3-env", widths=[[5, 3, 2], [8, 4, 2]], depth=2, **FRAME)
    with pytest.raises(ValueError, match="features.4.0: .* is not wider"):
        widen(small, deeper)


def test_a_head_mlp_grows_as_the_same_function_and_learns():
    torch.manual_seed(0)
    x = torch.randn(5, 17, 16, 16, 16)
    small = _trained_like(build("se3-env", widths=[[4, 2, 1], [6, 3, 1]], dropout=0.0, head_hidden=8, **FRAME), x)
    reference = _logits(small, x)
    big = build("se3-env", widths=[[5, 3, 2], [8, 4, 2]], dropout=0.0, **{**FRAME, "head_scalars": 20}, head_hidden=12)
    widen(small, big)
    assert (_logits(big, x) - reference).abs().max() <= 1e-5 * reference.abs().max()
    big.train()
    big(x).logsumexp(1).sum().backward()
    out = big.head.mlp[4].weight
    assert (out[:, 8:] == 0).all() and out.grad[:, 8:].abs().sum() > 0  # new hidden units: read as zero, learnable
    with pytest.raises(ValueError, match="head: the head's MLP is narrower"):
        widen(big, build("se3-env", widths=[[5, 3, 2], [8, 4, 2]], **{**FRAME, "head_scalars": 20}, head_hidden=4))
    with pytest.raises(ValueError, match="head.mlp"):  # an MLP head cannot be dropped
        widen(small, build("se3-env", widths=[[5, 3, 2], [8, 4, 2]], **FRAME))
