"""The RAPTOR protocol as the authors' code runs it: scikit-learn, one layer at a time.

Gao et al., "RAPTOR: Ridge-Adaptive Logistic Probes" (arXiv 2602.00158). This is the
reference :class:`steerlab.probes.RaptorProbe` is measured against (exactness and speed);
it follows the protocol as ``shared/reference/methods.md`` records it from their code:

* stratified split 80/20 train/test, then the train part 80/20 into train/validation
  (64/16/20 overall, fixed seeds): :func:`raptor_split`;
* ``StandardScaler`` fitted on the train part only;
* 100 values of C, log-spaced 1e-4..1e2 (``GRID``); one ``LogisticRegression(warm_start=True)``
  (lbfgs, L2) refitted at each C in increasing order, so each fit starts from the last;
* C chosen by validation accuracy, ties to the smallest C (strongest ridge);
* refit at the chosen C on train+validation, **keeping the scaler fitted on the train part**
  (``refit_scaler="train"``; ``"train+val"`` refits the scaler too, as RaptorProbe used to);
* weights folded back to raw activation space: ``w_raw = w_std / sigma``, ``b_raw = b_std - w_raw . mu``.

Not recorded in methods.md, so scikit-learn's defaults are used: ``tol=1e-4``,
``max_iter=100`` per fit, and a fresh (cold-started) model for the refit. Inputs keep
their dtype (float32 activations are fitted in float32, as scikit-learn does).

API (importable from other benchmarks: ``sys.path`` holds ``benchmarks/`` when a script
there runs, or ``from benchmarks.raptor_reference import ...`` from the repository root):

* :func:`raptor_split` ``(y, seed) -> (train, val, test)`` index arrays;
* :func:`fit_reference` one layer on given train/validation rows -> :class:`ReferenceFit`;
* :func:`reference_protocol` the whole protocol on ``X [n, d]`` or ``[n, n_layers, d]`` ->
  :class:`ReferenceResult` (per-layer chosen C, validation and test accuracy, directions, seconds).

Example:
    >>> import numpy as np
    >>> from steerlab.probes import make_teacher_student
    >>> X, y, _ = make_teacher_student(300, 10, n_layers=2, seed=0)
    >>> result = reference_protocol(X, y, Cs=np.logspace(-4, 2, 10))
    >>> result.C.shape, result.test_accuracy.shape, result.fits[1].coef.shape
    ((2,), (2,), (10,))
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

GRID = np.logspace(-4, 2, 100)


def raptor_split(y: np.ndarray, seed: int = 0, test_size: float = 0.2, val_size: float = 0.2
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train, val, test)`` row indices: stratified ``test_size`` test split, then a stratified
    ``val_size`` validation split of the rest (scikit-learn's ``train_test_split``, seed ``seed`` for both)."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    fit, test = train_test_split(rows, test_size=test_size, stratify=y, random_state=seed)
    train, val = train_test_split(fit, test_size=val_size, stratify=y[fit], random_state=seed)
    return np.sort(train), np.sort(val), np.sort(test)


@dataclass
class ReferenceFit:
    """One layer of the reference protocol.

    C: the chosen C; val_accuracy: ``[K]`` along the grid; n_iter: ``[K]`` lbfgs iterations per grid
    fit; coef ``[d]`` / intercept: the refit, raw activation space; coef_std / intercept_std: the
    refit in the scaler's coordinates; mean / scale ``[d]``: the scaler of the refit; seconds: wall time.
    """

    C: float
    val_accuracy: np.ndarray
    n_iter: np.ndarray
    coef: np.ndarray
    intercept: float
    coef_std: np.ndarray = field(repr=False)
    intercept_std: float = 0.0
    mean: np.ndarray = field(default=None, repr=False)
    scale: np.ndarray = field(default=None, repr=False)
    refit_n_iter: int = 0
    seconds: float = 0.0

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Raw-space logits ``[n]`` of ``X [n, d]``."""
        return np.asarray(X, dtype=np.float64) @ self.coef + self.intercept

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Accuracy on ``X [n, d]`` with 0/1 labels."""
        return float(((self.decision_function(X) > 0) == (np.asarray(y) == 1)).mean())


def fit_reference(X: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, Cs: np.ndarray = GRID, *,
                  refit_scaler: str = "train", tol: float = 1e-4, max_iter: int = 100) -> ReferenceFit:
    """The protocol on one layer ``X [n, d]`` (labels 0/1): grid on ``train``, C by accuracy on ``val``, refit
    on ``train`` + ``val``. ``Cs`` is walked in increasing order (the warm-start order)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if refit_scaler not in ("train", "train+val"):
        raise ValueError(f"refit_scaler={refit_scaler!r}: use 'train' (the authors' code) or 'train+val'.")
    start = time.perf_counter()
    Cs = np.sort(np.asarray(Cs, dtype=np.float64))
    y = np.asarray(y)
    scaler = StandardScaler().fit(X[train])
    X_train, X_val = scaler.transform(X[train]), scaler.transform(X[val])
    model = LogisticRegression(warm_start=True, tol=tol, max_iter=max_iter)
    val_accuracy, n_iter = np.empty(len(Cs)), np.empty(len(Cs), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the authors' loop runs on regardless
        for j, C in enumerate(Cs):
            model.set_params(C=C).fit(X_train, y[train])
            val_accuracy[j] = model.score(X_val, y[val])
            n_iter[j] = model.n_iter_[0]
        best = Cs[int(np.argmax(val_accuracy))]  # first maximum of an ascending grid: the smallest C
        fit_rows = np.sort(np.concatenate([train, val]))
        if refit_scaler == "train+val":
            scaler = StandardScaler().fit(X[fit_rows])
        final = LogisticRegression(C=best, tol=tol, max_iter=max_iter).fit(scaler.transform(X[fit_rows]), y[fit_rows])
    coef_std, intercept_std = final.coef_[0].astype(np.float64), float(final.intercept_[0])
    mean, scale = scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64)
    coef = coef_std / scale
    return ReferenceFit(float(best), val_accuracy, n_iter, coef, intercept_std - float(coef @ mean), coef_std,
                        intercept_std, mean, scale, int(final.n_iter_[0]), time.perf_counter() - start)


@dataclass
class ReferenceResult:
    """The protocol on every layer: ``fits`` (one :class:`ReferenceFit` per layer), ``C`` / ``val_accuracy`` /
    ``test_accuracy`` ``[n_layers]``, the split (``train``, ``val``, ``test`` row indices), ``seconds`` in all."""

    fits: list[ReferenceFit]
    C: np.ndarray
    val_accuracy: np.ndarray
    test_accuracy: np.ndarray
    train: np.ndarray = field(repr=False)
    val: np.ndarray = field(repr=False)
    test: np.ndarray = field(repr=False)
    seconds: float = 0.0

    @property
    def best_layer(self) -> int:
        """Slot of the layer with the best validation accuracy (ties: the first)."""
        return int(np.argmax(self.val_accuracy))


def reference_protocol(X: np.ndarray, y: np.ndarray, *, seed: int = 0, layers: list[int] | None = None,
                       Cs: np.ndarray = GRID, refit_scaler: str = "train", tol: float = 1e-4, max_iter: int = 100,
                       split: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> ReferenceResult:
    """The whole protocol on ``X [n, d]`` or ``[n, n_layers, d]`` (only ``layers`` slots, if given) and labels ``y``
    (two classes, mapped to 0/1 in sorted order). ``split`` overrides :func:`raptor_split` ``(y, seed)``."""
    X = np.asarray(X)
    X3 = X[:, None] if X.ndim == 2 else X
    classes = np.unique(y)
    if len(classes) != 2:
        raise ValueError(f"y has {len(classes)} classes: the protocol needs exactly two.")
    y01 = (np.asarray(y) == classes[1]).astype(np.int64)
    train, val, test = split if split is not None else raptor_split(y01, seed)
    slots = range(X3.shape[1]) if layers is None else layers
    start = time.perf_counter()
    fits = [fit_reference(X3[:, slot], y01, train, val, Cs, refit_scaler=refit_scaler, tol=tol, max_iter=max_iter)
            for slot in slots]
    return ReferenceResult(fits, np.array([f.C for f in fits]), np.array([f.val_accuracy.max() for f in fits]),
                           np.array([f.score(X3[test, slot], y01[test]) for f, slot in zip(fits, slots)]),
                           train, val, test, time.perf_counter() - start)
