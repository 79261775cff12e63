"""Function-preserving widening of steerable networks (Net2Net's "wider", Chen et al. 2016).

A network with more fields per order starts from a trained narrower one of the same
design and computes exactly the same function: every old weight goes to the place of the
fields it connects, and the weights by which old fields (and the classifier) read a new
field (or a hidden unit of an added MLP head) are zero. The new fields keep their random
initialisation, so gradients reach them at once, and training continues from the narrow
network's accuracy instead of from scratch — capacity at the cost of a warm restart, not
of a full run.

Fields keep their index within their order; new fields come after the old ones. A gated
convolution's output (:meth:`FieldType.gated`) holds its scalars, then one gate per field
of order l > 0: a gate moves with its field.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cathnet.networks.steerable import GatedConv, _Head
from cathnet.nn import EquivariantBatchNorm, FieldType, SE3Conv

__all__ = ["widen"]

FieldMap = dict[int, np.ndarray]  # order l -> new index of every old field of order l


def _fields(old: FieldType, new: FieldType, gates: tuple[FieldType, FieldType] | None = None) -> FieldMap:
    """Where each old field of ``old`` lies in ``new``. ``gates``: the (old, new) types of
    a :class:`Gate` whose input (``old``/``new``, their ``gated()`` types) has scalars
    followed by gates."""
    if len(new.multiplicities) < len(old.multiplicities) or any(
            new.mult(l) < m for l, m in enumerate(old.multiplicities)):
        raise ValueError(f"{new} is not wider than {old}: every order needs at least as many fields")
    out = {l: np.arange(m) for l, m in enumerate(old.multiplicities) if m}
    if gates is not None and old.mult(0):  # old scalars, then the gates of the old fields of order 1, 2, ...
        o, n = gates
        out[0] = np.concatenate([np.arange(o.mult(0))] + [
            n.mult(0) + sum(n.mult(k) for k in range(1, l)) + np.arange(o.mult(l)) for l in range(1, o.lmax + 1)])
    return out


def _high_channels(old: FieldType, new: FieldType) -> np.ndarray:
    """New index, among the channels of the l > 0 fields, of every such old channel (in channel order)."""
    fields, parts = _fields(old, new), []
    for l in range(1, old.lmax + 1):
        if not old.mult(l):
            continue
        start = new.slices()[l].start - new.mult(0)
        parts.append((start + fields[l][:, None] * (2 * l + 1) + np.arange(2 * l + 1)).ravel())
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _high_fields(old: FieldType, fields: FieldMap, new: FieldType) -> np.ndarray:
    """New index, among the l > 0 fields, of every old l > 0 field (norm scales, gates)."""
    offsets = np.cumsum([0] + [new.mult(l) for l in range(1, new.lmax + 1)])
    return np.concatenate([offsets[l - 1] + fields[l] for l in range(1, old.lmax + 1) if old.mult(l)] or [np.zeros(0, int)])


def _place(target: torch.Tensor, old: torch.Tensor, rows: np.ndarray, cols: np.ndarray | None = None) -> None:
    """``target[rows][:, cols] = old``; columns of ``rows`` outside ``cols`` (new inputs) become zero."""
    r, old = torch.as_tensor(rows, device=target.device), old.to(target)  # the narrow network may sit on the CPU
    if cols is None:
        target[r] = old
        return
    target[r] = 0
    target[r[:, None], torch.as_tensor(cols, device=target.device)[None, :]] = old


@torch.no_grad()
def widen(narrow: nn.Module, wide: nn.Module) -> None:
    """Load the trained ``narrow`` network's weights into ``wide`` (same design, at least
    as many fields of every order in every layer) so that ``wide`` computes the same
    logits. Raises ``ValueError`` naming the first tensor that cannot be carried over."""
    old_modules, new_state, old_state = dict(narrow.named_modules()), wide.state_dict(), narrow.state_dict()
    gated: dict[str, tuple[FieldType, FieldType]] = {}  # conv and norm of a gated block -> its gate's (old, new) types
    for name, module in wide.named_modules():
        old = old_modules.get(name)
        if isinstance(module, GatedConv) and isinstance(old, GatedConv):
            gates = (old[2].out_type, module[2].out_type)  # conv, norm, Gate
            gated[f"{name}.0"] = gated[f"{name}.1"] = gates  # type: ignore[assignment]
    done: set[str] = set()
    for name, module in wide.named_modules():
        try:
            _carry(name, module, old_modules.get(name), gated, old_state, new_state, done)
        except (ValueError, RuntimeError, IndexError) as exc:  # a layer of another design or size
            raise ValueError(f"{name}: {exc}") from None
    for key, tensor in old_state.items():
        if key in done:
            continue
        if key not in new_state or new_state[key].shape != tensor.shape:
            raise ValueError(f"cannot carry {key} {tuple(tensor.shape)} over to the wider network")
        new_state[key].copy_(tensor)
    wide.load_state_dict(new_state)


def _carry(name: str, module: nn.Module, old: nn.Module | None, gated: dict, old_state: dict, new_state: dict,
           done: set[str]) -> None:
    """Place the weights of the narrow network's module ``old`` in ``new_state`` at ``module``'s (same name)."""
    if isinstance(module, SE3Conv) and isinstance(old, SE3Conv):
        outs = _fields(old.out_type, module.out_type, gated.get(name))
        ins = _fields(old.in_type, module.in_type)
        for j, l in module.pairs:
            key = f"{name}.weight_{j}_{l}"
            if (j, l) in old.pairs:
                _place(new_state[key], old_state[key], outs[j], ins[l])
                done.add(key)
            elif j in outs:  # an order the narrow network lacks: its old fields must not read it
                new_state[key][torch.as_tensor(outs[j], device=new_state[key].device)] = 0
        if old.bias is not None:
            _place(new_state[f"{name}.bias"], old_state[f"{name}.bias"], outs[0])
            done.add(f"{name}.bias")
    elif isinstance(module, EquivariantBatchNorm) and isinstance(old, EquivariantBatchNorm):
        fields = _fields(old.field_type, module.field_type, gated.get(name))
        for leaf in old.scalar_bn.state_dict() if old.scalar_bn is not None else ():
            key = f"{name}.scalar_bn.{leaf}"
            if old_state[key].dim():
                _place(new_state[key], old_state[key], fields[0])
            else:  # num_batches_tracked
                new_state[key].copy_(old_state[key])
            done.add(key)
        for leaf in ("running_sq", "weight"):
            key = f"{name}.{leaf}"
            if key in old_state:
                _place(new_state[key], old_state[key], _high_fields(old.field_type, fields, module.field_type))
                done.add(key)
    elif isinstance(module, _Head) and isinstance(old, _Head):
        n_old, n_new = old.pool.field_type.n_fields, module.pool.field_type.n_fields
        blocks = module.pool.out_features // n_new  # the mean, then one per ball
        if old.pool.out_features != blocks * n_old:
            raise ValueError("the head pools over other balls (centre_radii)")
        cols = np.concatenate([b * n_new + np.arange(n_old) for b in range(blocks)])
        if module.n_frame:
            t_old: FieldType = old.conv[0].in_type  # type: ignore[assignment]  # the head's SE3Conv
            t_new: FieldType = module.conv[0].in_type  # type: ignore[assignment]
            cols = np.concatenate([cols, blocks * n_new + _high_channels(t_old, t_new)])
        key = f"{name}.classifier.1"
        _place(new_state[f"{key}.weight"], old_state[f"{key}.weight"], np.arange(len(old_state[f"{key}.bias"])), cols)
        new_state[f"{key}.bias"].copy_(old_state[f"{key}.bias"])
        done.update((f"{key}.weight", f"{key}.bias"))
        if module.mlp is not None:
            _carry_mlp(f"{name}.mlp", old.mlp, cols, old_state, new_state, done)


def _carry_mlp(key: str, old: nn.Module | None, cols: np.ndarray, old_state: dict, new_state: dict,
               done: set[str]) -> None:
    """The head's MLP (dropout, linear ``.1``, ReLU, dropout, linear ``.4``): old hidden units
    keep their weights (reading the old features at ``cols``); the output reads new hidden
    units, or the whole MLP when the narrow head has none, with zero weights."""
    hidden = old[1].out_features if old is not None else 0  # type: ignore[index]
    if hidden > new_state[f"{key}.1.bias"].numel():
        raise ValueError("the head's MLP is narrower than the trained one's (head_hidden)")
    if not hidden:
        new_state[f"{key}.4.weight"].zero_()
        new_state[f"{key}.4.bias"].zero_()
        return
    units = np.arange(hidden)
    _place(new_state[f"{key}.1.weight"], old_state[f"{key}.1.weight"], units, cols)
    _place(new_state[f"{key}.1.bias"], old_state[f"{key}.1.bias"], units)
    n_classes = new_state[f"{key}.4.bias"].numel()
    _place(new_state[f"{key}.4.weight"], old_state[f"{key}.4.weight"], np.arange(n_classes), units)
    new_state[f"{key}.4.bias"].copy_(old_state[f"{key}.4.bias"])
    done.update(f"{key}.{i}.{leaf}" for i in (1, 4) for leaf in ("weight", "bias"))
