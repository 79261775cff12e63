"""Network registry: every model maps (B, C, X, Y, Z) voxel grids to logits (B, n_classes).

``build(name, in_channels=..., n_classes=..., **kwargs)`` returns the model with a
``config`` dict (``{"name": ..., "in_channels": ..., "n_classes": ..., **kwargs}``) from
which :func:`from_config` rebuilds it, e.g. when loading a checkpoint.
``build("ensemble", in_channels=..., n_classes=..., members=[config, ...])`` averages the
class probabilities of trained networks (:mod:`cathnet.networks.ensemble`).
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from cathnet.networks import cnn, ensemble, steerable

__all__ = ["NETWORKS", "EQUIVARIANT", "GRID_SIZED", "available", "build", "from_config", "is_equivariant", "n_parameters",
           "reads_frame"]

#: name -> constructor(in_channels, n_classes, **kwargs)
NETWORKS: dict[str, Callable[..., nn.Module]] = {
    "cnn-resnet34": cnn.resnet34,
    "cnn-compact": cnn.compact,
    "se3resnet34": steerable.se3resnet34,
    "se3-compact": steerable.se3_compact,
    "cnn-env": cnn.env,
    "se3-env": steerable.se3_env,
}

#: SE(3)-equivariant networks: rotation augmentation is off by default when training them.
EQUIVARIANT: frozenset[str] = frozenset({"se3resnet34", "se3-compact", "se3-env"})

#: Networks whose layout depends on the input grid (a ``grid_size`` keyword; training passes it).
GRID_SIZED: frozenset[str] = frozenset({"se3resnet34", "se3-compact", "se3-env"})


def available() -> list[str]:
    """Registered network names, sorted."""
    return sorted(NETWORKS)


def build(name: str, *, in_channels: int, n_classes: int, **kwargs: Any) -> nn.Module:
    """Instantiate network ``name``; unknown names raise ``KeyError`` listing the choices."""
    if name not in NETWORKS and name != "ensemble":
        raise KeyError(f"unknown network {name!r}; available: {', '.join(available())}")
    model = (ensemble.ensemble if name == "ensemble" else NETWORKS[name])(in_channels, n_classes, **kwargs)
    model.config = {"name": name, "in_channels": in_channels, "n_classes": n_classes, **kwargs}
    return model


def from_config(config: dict[str, Any]) -> nn.Module:
    """Rebuild a network from its ``config`` dict (lists become tuples, as JSON loses them;
    an ensemble's member configs stay dicts)."""
    if config["name"] == "ensemble":
        return build("ensemble", **{k: v for k, v in config.items() if k != "name"})
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k != "name"}
    return build(config["name"], **kwargs)


def is_equivariant(config: dict[str, Any]) -> bool:
    """Whether the network of ``config`` is SE(3)-equivariant (an ensemble: all its members)."""
    if config["name"] == "ensemble":
        return all(is_equivariant(m) for m in config["members"])
    return config["name"] in EQUIVARIANT


def reads_frame(config: dict[str, Any]) -> str | None:
    """How the network of ``config`` reads field components in the input's frame: "frame"
    (a frame that rotates with the structure: a residue's backbone), "axes" (principal axes,
    up to their signs), or None (invariants only). An ensemble: its members' (one kind)."""
    if config["name"] == "ensemble":
        kinds = {reads_frame(m) for m in config["members"]} - {None}
        return kinds.pop() if kinds else None
    readout = config.get("readout", "invariant")
    return None if readout == "invariant" else readout


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
