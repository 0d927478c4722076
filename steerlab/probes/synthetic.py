"""Synthetic data: the Gaussian teacher-student model of RAPTOR's theory section.

Gao et al., "RAPTOR: Ridge-Adaptive Logistic Probes", analyse ridge logistic
regression (CGMT) when ``x ~ N(0, I_d)`` and the label comes from a teacher
direction ``w*``: ``P(y = 1 | x) = sigmoid(signal * <w*, x>)``, few-shot and
high-dimensional (n comparable to d). The penalty then trades accuracy against the
stability of the learned direction.

Example:
    >>> X, y, w = make_teacher_student(100, 8, seed=0)
    >>> X.shape, y.shape, round(float((w * w).sum()), 6)
    ((100, 8), (100,), 1.0)
"""

from __future__ import annotations

import numpy as np


def make_teacher_student(n: int, d: int, *, signal: float = 5.0, mean_shift: float = 0.0, n_layers: int | None = None,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``(X [n, d] (or [n, n_layers, d]), y [n] in {0, 1}, w_star [d] unit)``.

    Args:
        signal: logit scale of the teacher (large = nearly noiseless labels).
        mean_shift: adds ``(2y - 1) * mean_shift * w_star`` to each x (a class-mean gap, as
            truth directions in LMs show); 0 gives the pure logistic teacher.
        n_layers: stack layers whose signal grows with depth (``signal * (l+1)/n_layers``),
            each with its own noise, for testing per-layer code.
    """
    rng = np.random.default_rng(seed)
    w_star = rng.standard_normal(d)
    w_star /= np.linalg.norm(w_star)
    X = rng.standard_normal((n, d))
    y = (rng.random(n) < 1 / (1 + np.exp(-signal * (X @ w_star)))).astype(np.int64)
    X = X + np.outer((2 * y - 1) * mean_shift, w_star)
    if n_layers is None:
        return X.astype(np.float32), y, w_star
    layers = []
    for layer in range(n_layers):  # same labels; the teacher's share of each layer grows with depth
        strength = (layer + 1) / n_layers
        layers.append(strength * X + np.sqrt(1 - strength ** 2 + 1e-3) * rng.standard_normal((n, d)))
    return np.stack(layers, axis=1).astype(np.float32), y, w_star
