"""Reproducible train/validation/test splits, stratified by class for classification."""

from __future__ import annotations

import numpy as np

from bigmodel.errors import DataError

SPLITS = ("train", "validation", "test")


def _split_sizes(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Rows per non-empty split: largest-remainder rounding, then at least one row each."""
    names = [s for s in SPLITS if fractions[s] > 0]
    if n < len(names):
        raise DataError(f"only {n} usable row(s), too few for {len(names)} non-empty splits "
                        f"({', '.join(names)})")
    ideal = np.array([n * fractions[s] for s in names])
    counts = np.floor(ideal).astype(np.int64)
    for i in np.argsort(-(ideal - counts), kind="stable")[: n - int(counts.sum())]:
        counts[i] += 1
    for i in range(len(names)):
        while counts[i] == 0:
            counts[int(np.argmax(counts))] -= 1
            counts[i] += 1
    return dict(zip(names, (int(c) for c in counts), strict=True))


def _allocate(class_sizes: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Class x split row counts whose row sums are the class sizes and column sums the split sizes."""
    ideal = np.outer(class_sizes, targets) / class_sizes.sum()
    alloc = np.floor(ideal).astype(np.int64)
    remainder = ideal - alloc
    class_need = class_sizes - alloc.sum(axis=1)
    split_need = targets - alloc.sum(axis=0)
    # Largest remainders first keeps each class close to its proportional share in every split.
    for flat in np.argsort(-remainder, axis=None, kind="stable"):
        c, s = divmod(int(flat), len(targets))
        if class_need[c] > 0 and split_need[s] > 0 and remainder[c, s] > 0:
            alloc[c, s] += 1
            class_need[c] -= 1
            split_need[s] -= 1
    for c in range(len(class_sizes)):
        while class_need[c] > 0:  # both needs have equal totals, so some split still needs a row
            s = int(np.argmax(split_need))
            alloc[c, s] += 1
            class_need[c] -= 1
            split_need[s] -= 1
    return alloc


def split_rows(positions: np.ndarray, y: np.ndarray, stratify: bool, fractions: dict[str, float],
                seed: int) -> dict[str, np.ndarray]:
    """Shuffled row positions per non-empty split, stratified by class index when asked."""
    sizes = _split_sizes(len(positions), fractions)
    names = list(sizes)
    rng = np.random.default_rng(seed)
    if not stratify:
        order = rng.permutation(positions)
        bounds = np.cumsum([sizes[s] for s in names])[:-1]
        return dict(zip(names, np.split(order, bounds), strict=True))
    # One stable sort groups the rows by class (each in its original order): O(n log n) for any number
    # of classes, where a mask per class would be O(n * classes).
    by_class = np.argsort(y, kind="stable")
    _, starts = np.unique(y[by_class], return_index=True)
    groups = np.split(positions[by_class], starts[1:])
    alloc = _allocate(np.array([len(g) for g in groups]), np.array([sizes[s] for s in names]))
    parts: dict[str, list[np.ndarray]] = {s: [] for s in names}
    for group, counts in zip(groups, alloc, strict=True):
        chunks = np.split(rng.permutation(group), np.cumsum(counts)[:-1])
        for name, chunk in zip(names, chunks, strict=True):
            parts[name].append(chunk)
    # Shuffle again so a split is not ordered by class.
    return {s: rng.permutation(np.concatenate(parts[s])) for s in names}
