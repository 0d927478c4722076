"""``sweep``: every probe method at every layer on the same splits, as a tidy table.

Example:
    >>> from steerlab.probes import make_teacher_student, probe_sweep
    >>> X, y, _ = make_teacher_student(300, 8, n_layers=3, seed=0)       # [n, 3, d]
    >>> result = probe_sweep(X, y, methods=["diff_means", "raptor"], stability_runs=0)
    >>> len(result.to_records()), sorted(result.best_layers())
    (6, ['diff_means', 'raptor'])
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from steerlab.probes.base import LinearProbe
from steerlab.probes.directions import LDA, DiffMeans, PairedPCA
from steerlab.probes.metrics import accuracy, auroc, expected_calibration_error, fit_temperature
from steerlab.probes.raptor import LogisticDirection, RaptorProbe
from steerlab.probes.splits import split
from steerlab.probes.stability import directional_stability
from steerlab.probes.validation import (ProbeInputError, as_activation_tensor, as_groups, check_fraction, check_labels,
                                        check_number)

METHODS: dict[str, type[LinearProbe]] = {
    "raptor": RaptorProbe, "logistic": LogisticDirection, "diff_means": DiffMeans, "mass_mean": DiffMeans,
    "lda": LDA, "pca": PairedPCA,
}

COLUMNS = ("layer", "method", "accuracy", "auroc", "ece", "ece_calibrated", "temperature", "stability",
           "fit_seconds", "C")


def make_probe(method: str | LinearProbe) -> tuple[str, LinearProbe]:
    """``"raptor"`` etc. (see ``METHODS``) or an unfitted probe instance -> ``(name, probe)``."""
    if isinstance(method, LinearProbe):
        return type(method).__name__, method.clone()
    if not isinstance(method, str) or method not in METHODS:
        raise ProbeInputError(f"Unknown method {method!r}: use one of {sorted(METHODS)} or pass a probe instance.")
    return method, METHODS[method]()


def make_probes(methods: Sequence[str | LinearProbe]) -> list[tuple[str, LinearProbe]]:
    """Every method as ``(name, unfitted probe)``, refusing an empty list, unknown names, duplicates and
    invalid probe parameters (checked here, so no method is fitted before a later one is refused)."""
    if isinstance(methods, (str, LinearProbe)):
        methods = [methods]
    probes = [make_probe(method) for method in methods]
    if not probes:
        raise ProbeInputError(f"methods is empty: pass at least one of {sorted(METHODS)} or a probe instance.")
    names = [name for name, _ in probes]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ProbeInputError(f"methods lists {repeated} more than once: each method is one row per layer; pass "
                              "each once (two settings of one class: fit them in separate sweeps).")
    for _, probe in probes:
        probe._check_params()
    return probes


def _check_sweep_params(test_fraction: float, seed: int, stability_runs: int, calibrate: bool,
                        calibration_fraction: float) -> None:
    """Refuse invalid sweep settings before any fit."""
    check_fraction(test_fraction, "test_fraction")
    check_number(seed, "seed", minimum=0, integer=True)
    check_number(stability_runs, "stability_runs", minimum=0, integer=True)
    if calibrate:
        check_fraction(calibration_fraction, "calibration_fraction")


@dataclass
class ProbeSweep:
    """Rows (one per layer and method; keys in ``COLUMNS``), the fitted probes per method
    (``[n_layers]`` probes fitted together) and the split indices used."""

    rows: list[dict[str, Any]]
    probes: dict[str, LinearProbe] = field(repr=False)
    train_index: np.ndarray = field(repr=False)
    test_index: np.ndarray = field(repr=False)

    def to_records(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self.rows]

    def column(self, name: str, method: str | None = None) -> list[Any]:
        return [row[name] for row in self.rows if method is None or row["method"] == method]

    def best_layers(self, metric: str = "accuracy") -> dict[str, int]:
        """Method -> the layer with the highest ``metric`` on the test split (the earliest on ties)."""
        best: dict[str, dict[str, Any]] = {}
        for row in self.rows:
            if row["method"] not in best or row[metric] > best[row["method"]][metric]:
                best[row["method"]] = row
        return {method: row["layer"] for method, row in best.items()}

    def best(self, metric: str = "accuracy") -> list[dict[str, Any]]:
        """The row of each method's best layer."""
        chosen = self.best_layers(metric)
        return [row for row in self.rows if chosen[row["method"]] == row["layer"]]

    def figure(self, metric: str = "accuracy", title: str | None = None):
        from steerlab.probes.figures import layer_metric_figure

        return layer_metric_figure(self, metric=metric, title=title)

    def __repr__(self) -> str:
        shown = ("layer", "method", "accuracy", "auroc", "ece", "stability", "fit_seconds")
        lines = ["  ".join(f"{name:>11}" for name in shown)]
        for row in self.rows:
            lines.append("  ".join(_cell(row[name]) for name in shown))
        lines.append("best layers: " + ", ".join(f"{m}={l}" for m, l in self.best_layers().items()))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{name}</th>" for name in COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{_cell(row.get(name)).strip()}</td>" for name in COLUMNS) + "</tr>"
                       for row in self.rows)
        return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:>11.4g}"
    return f"{'' if value is None else value!s:>11}"


def probe_sweep(activations: Any, labels: Any, methods: Sequence[str | LinearProbe] = ("raptor", "diff_means", "lda", "logistic"),
          groups: Any = None, test_fraction: float = 0.2, seed: int = 0, stability_runs: int = 5,
          calibrate: bool = True, calibration_fraction: float = 0.2) -> ProbeSweep:
    """Fit each method at every layer on one train split, score on one test split.

    Args:
        activations: ``Activations`` or an array ``[n, n_layers, d]`` (``[n, d]`` = one layer).
        labels: ``[n]`` binary labels.
        methods: names from ``METHODS`` or unfitted probes.
        groups: ``[n]`` group ids: the test split (and RAPTOR's validation split) keeps groups whole.
        test_fraction, seed: the shared split.
        stability_runs: RAPTOR stability runs per method on the training split (0 skips).
        calibrate: hold out ``calibration_fraction`` of the training split to fit a temperature per
            layer and report ``ece_calibrated`` (temperature scaling) beside the raw ``ece``.
    Returns:
        :class:`ProbeSweep`; ``fit_seconds`` is a method's batched all-layer fit time divided by the layers.
    """
    probes_to_fit = make_probes(methods)
    _check_sweep_params(test_fraction, seed, stability_runs, calibrate, calibration_fraction)
    values, info = as_activation_tensor(activations)
    if values.ndim == 2:
        values = values[:, None]
    layers = info.layers or list(range(values.shape[1]))
    y01, _ = check_labels(labels, len(values))
    groups = as_groups(groups, len(values))
    train, test = split(y01, test_fraction, seed, groups)
    fit_part, calibration = train, np.array([], dtype=int)
    if calibrate:
        inner_fit, inner_cal = split(y01[train], calibration_fraction, seed + 1, None if groups is None else groups[train])
        fit_part, calibration = train[inner_fit], train[inner_cal]
    rows, probes = [], {}
    for name, probe in probes_to_fit:
        fit_groups = None if groups is None else groups[fit_part]
        start = time.perf_counter()
        probe.fit(values[fit_part], y01[fit_part], fit_groups)
        seconds = (time.perf_counter() - start) / len(layers)
        probe._record_source(replace(info, layers=layers))
        probes[name] = probe
        test_scores = probe.decision_function(values[test])  # [n_test, L]
        calibration_scores = probe.decision_function(values[calibration]) if calibrate else None
        stability = (directional_stability(probe, values[train], y01[train], runs=stability_runs, seed=seed,
                                           groups=None if groups is None else groups[train]).stability
                     if stability_runs >= 2 else np.full(len(layers), np.nan))
        chosen_C = getattr(probe, "C_", None)
        for slot, layer in enumerate(layers):
            scores = test_scores[:, slot]
            temperature = fit_temperature(y01[calibration], calibration_scores[:, slot]) if calibrate else None
            rows.append({
                "layer": layer, "method": name, "accuracy": accuracy(y01[test], scores),
                "auroc": auroc(y01[test], scores), "ece": expected_calibration_error(y01[test], scores),
                "ece_calibrated": expected_calibration_error(y01[test], scores / temperature) if calibrate else None,
                "temperature": temperature, "stability": float(np.atleast_1d(stability)[slot]),
                "fit_seconds": seconds, "C": float(chosen_C[slot]) if chosen_C is not None else None,
            })
        probe.metrics_ = {**probe.metrics_, "test_accuracy": np.array(
            [r["accuracy"] for r in rows if r["method"] == name]), "test_auroc": np.array(
            [r["auroc"] for r in rows if r["method"] == name])}
    return ProbeSweep(rows, probes, train, test)


