"""Splits and sampling: superfamily-disjoint splits of a dataset, class-stratified training
subsets, and the seeded stream of training items that epochs draw from."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from cathnet.errors import DatasetError, TrainError

__all__ = ["EpochStream", "assign_splits", "stratified_subset"]


def assign_splits(superfamilies: Iterable[str], labels: Iterable, n_splits: int = 10, seed: int = 0) -> np.ndarray:
    """Assign whole superfamilies to ``n_splits`` splits so that every split holds every
    class with close to 1/n_splits of its domains.

    Per class, superfamilies are placed largest first (ties in random order, from
    ``seed``) into the split with the fewest domains of that class (ties: fewest domains
    overall, then random). Raises :class:`DatasetError` if a class has fewer
    superfamilies than splits.
    """
    sfs, labels = np.asarray(list(superfamilies)), np.asarray(list(labels))
    if n_splits < 1:
        raise DatasetError("the number of splits must be at least 1")
    rng = np.random.default_rng(seed)
    out = np.full(len(sfs), -1, dtype=np.int8)
    totals = np.zeros(n_splits, dtype=np.int64)
    for c in np.unique(labels):
        names, inverse, sizes = np.unique(sfs[labels == c], return_inverse=True, return_counts=True)
        if len(names) < n_splits:
            raise DatasetError(f"class {c} has {len(names)} superfamilies, fewer than {n_splits} splits")
        order = rng.permutation(len(names))
        order = order[np.argsort(-sizes[order], kind="stable")]
        counts = np.zeros(n_splits, dtype=np.int64)
        chosen = np.empty(len(names), dtype=np.int8)
        for s in order:
            j = np.lexsort((rng.random(n_splits), totals, counts))[0]
            chosen[s] = j
            counts[j] += sizes[s]
            totals[j] += sizes[s]
        out[labels == c] = chosen[inverse]
    return out


def stratified_subset(items: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Keep ``round(fraction · n_c)`` (at least 1) items of every class c, chosen by a
    seeded per-class permutation, so smaller fractions are subsets of larger ones."""
    if not 0 < fraction <= 1:
        raise TrainError(f"--train-fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return items
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels[items]):
        members = items[labels[items] == c]
        keep.append(members[rng.permutation(len(members))][: max(1, round(fraction * len(members)))])
    return np.sort(np.concatenate(keep))


class EpochStream:
    """An endless stream of seeded passes over the training ``items`` (each a permutation,
    or class-balanced draws with replacement when ``balance``), cut into epochs of
    ``epoch_size`` items (default: one pass)."""

    def __init__(self, items: np.ndarray, labels: np.ndarray, *, seed: int, epoch_size: int | None = None,
                 balance: bool = False):
        self.items, self.labels, self.seed = items, labels, seed
        self.epoch_size, self.balance = epoch_size, balance
        self._cache: tuple[int, np.ndarray] | None = None

    def draw(self, p: int) -> np.ndarray:
        """Items of pass ``p`` over the data."""
        if self._cache is None or self._cache[0] != p:
            rng = np.random.default_rng([self.seed, p, 2])
            if self.balance:
                classes, inverse, counts = np.unique(self.labels[self.items], return_inverse=True, return_counts=True)
                weight = 1.0 / (len(classes) * counts[inverse])
                order = rng.choice(self.items, len(self.items), p=weight / weight.sum())
            else:
                order = rng.permutation(self.items)
            self._cache = (p, order)
        return self._cache[1]

    def epoch(self, epoch: int) -> np.ndarray:
        """Items of 1-based ``epoch``: the next ``epoch_size`` items of the stream."""
        n = len(self.items)
        size = self.epoch_size or n
        start, parts = (epoch - 1) * size, []
        while size > 0:
            p, offset = divmod(start, n)
            part = self.draw(p)[offset: offset + size]
            parts.append(part)
            size, start = size - len(part), start + len(part)
        return np.concatenate(parts)
