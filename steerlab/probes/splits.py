"""Seeded splits: stratified by label, or by group so no group is on both sides.

RAPTOR (Gao et al., "RAPTOR: Ridge-Adaptive Logistic Probes") uses stratified 80/20
splits with fixed seeds; grouped splits keep an entity (a city, a person) out of
training when its statements are tested.

Example:
    >>> import numpy as np
    >>> y = np.array([0, 1] * 10)
    >>> train, test = stratified_split(y, test_fraction=0.2, seed=0)
    >>> len(train), len(test), int(y[test].sum())
    (16, 4, 2)
"""

from __future__ import annotations

import numpy as np

from steerlab.probes.validation import ProbeInputError, check_n_groups


def stratified_split(y01: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, test_idx)``; each class contributes ``round(fraction * count)`` (at least 1) to test."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in (0, 1):
        members = rng.permutation(np.flatnonzero(y01 == cls))
        n_test = max(1, int(round(test_fraction * len(members))))
        if len(members) - n_test < 1:
            raise ProbeInputError(f"Class {cls} has {len(members)} examples: too few to split "
                                  f"{1 - test_fraction:.0%}/{test_fraction:.0%} (at least 1 on each side); add "
                                  "examples of that class, or hold out a smaller fraction.")
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def group_split(y01: np.ndarray, groups: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, test_idx)`` with whole groups on one side and both classes on each side."""
    check_n_groups(groups, 2, "a group split")
    unique = np.unique(groups)
    for attempt in range(20):  # retry seeds until both sides hold both classes
        order = np.random.default_rng(seed + 1000 * attempt).permutation(unique)
        n_test_groups = max(1, int(round(test_fraction * len(unique))))
        test_mask = np.isin(groups, order[:n_test_groups])
        if min(np.bincount(y01[test_mask], minlength=2).min(), np.bincount(y01[~test_mask], minlength=2).min()) > 0:
            return np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
    counts = [len(np.unique(groups[y01 == cls])) for cls in (0, 1)]
    raise ProbeInputError(f"No group split puts both classes on both sides (one class after the split; groups "
                          f"holding class 0: {counts[0]}, class 1: {counts[1]}): make sure several groups hold "
                          "each class, or pass groups=None for a stratified split.")


def split(y01: np.ndarray, test_fraction: float, seed: int,
          groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Group split when ``groups`` is given, else stratified."""
    if groups is None:
        return stratified_split(y01, test_fraction, seed)
    return group_split(y01, groups, test_fraction, seed)
