"""Ensembles: K trained networks on the same input, class probabilities averaged.

The ensemble's output is ``log(mean_k softmax(f_k(x)))``, a valid logit vector whose
softmax is the members' mean probability, so training-free code (prediction, evaluation,
export, collapse) treats it like any single network. Its ``config`` lists the members'
configs; the weights are the members' under ``members.<k>.``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["Ensemble", "ensemble"]


class Ensemble(nn.Module):
    """Mean of the members' class probabilities, as logits (log of the mean)."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.stack([torch.log_softmax(m(x).float(), dim=1) for m in self.members])
        return torch.logsumexp(logp, dim=0) - math.log(len(self.members))


def ensemble(in_channels: int, n_classes: int, members: Sequence[dict[str, Any]] = ()) -> Ensemble:
    """An ensemble of networks given by their registry configs (each with the same
    ``in_channels`` and ``n_classes``)."""
    from cathnet.networks import from_config

    built = []
    for config in members:
        if config.get("in_channels") != in_channels or config.get("n_classes") != n_classes:
            raise ValueError(f"ensemble member {config.get('name')!r} does not map {in_channels} channels to {n_classes} classes")
        built.append(from_config(config))
    return Ensemble(built)
