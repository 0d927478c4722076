"""Which layer to probe: Bayesian optimisation over layers (optuna TPE) instead of a full sweep.

Liang & Wang (arXiv 2512.20949) pick the probed layer with Bayesian optimisation: a
surrogate of "layer -> probe performance" fitted on a few initial layers, then a few
guided iterations. Here the surrogate is optuna's TPE sampler (seeded) over the layer's
slot in the captured list (an ordered integer, so neighbouring layers inform each
other), the objective is the validation AUROC of the probe, and a layer asked for twice
is not refitted: ``n_fits`` counts the distinct layers evaluated. :func:`search_layer`
can also run the exhaustive sweep for comparison.

Example:
    >>> import numpy as np
    >>> from steerlab.hallucination.layer_search import search_layer
    >>> quality = {layer: 1 - abs(layer - 13) / 20 for layer in range(20)}      # a planted peak at 13
    >>> result = search_layer(lambda layer: quality[layer], list(range(20)), n_trials=12, seed=0, exhaustive=True)
    >>> result.best_layer == result.exhaustive_best_layer == 13, result.n_fits < 20
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from steerlab.probes.metrics import auroc


@dataclass
class LayerSearchResult:
    """Outcome of :func:`search_layer`.

    Attributes:
        best_layer: the layer with the best finite objective among those the search evaluated.
        best_value: its objective value.
        n_fits: distinct layers the search evaluated (each is one probe fit).
        trials: ``[(layer, value)]`` in trial order (repeats included; trials whose objective was NaN are
            left out, optuna records them as failed).
        exhaustive: ``{layer: value}`` for every layer (None unless ``exhaustive=True``; NaN where the
            objective was NaN).
        exhaustive_best_layer: the best layer of the full sweep (None without it).
    """

    best_layer: int
    best_value: float
    n_fits: int
    trials: list[tuple[int, float]]
    exhaustive: dict[int, float] | None = None
    exhaustive_best_layer: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {"best_layer": self.best_layer, "best_value": round(self.best_value, 4), "n_fits": self.n_fits,
                "n_layers": None if self.exhaustive is None else len(self.exhaustive),
                "trials": [[layer, round(value, 4)] for layer, value in self.trials],
                "exhaustive_best_layer": self.exhaustive_best_layer,
                "exhaustive": None if self.exhaustive is None else
                {str(layer): round(value, 4) for layer, value in self.exhaustive.items()},
                "seconds": {k: round(v, 2) for k, v in self.seconds.items()}}


def search_layer(objective: Callable[[int], float], layers: Sequence[int], *, n_trials: int = 8,
                 n_startup_trials: int = 3, seed: int = 0, exhaustive: bool = False) -> LayerSearchResult:
    """Maximise ``objective(layer)`` over ``layers`` with optuna's TPE sampler.

    Args:
        objective: layer -> value to maximise (e.g. :func:`probe_objective`); called once per distinct layer.
            A non-finite value (e.g. the NaN AUROC of a one-class validation split) never wins: optuna
            records a NaN trial as failed, and the best layer is chosen among finite values only.
        layers: the candidate layers (e.g. the captured ones), in model order.
        n_trials: TPE trials (repeated layers cost no fit).
        n_startup_trials: random trials before TPE models the objective.
        seed: the sampler's seed (the search is deterministic given the objective).
        exhaustive: also evaluate every layer (reusing the search's fits) for comparison.

    Raises:
        ValueError: ``layers`` is empty, or no evaluated layer gave a finite objective value.
    """
    import time

    import optuna

    from steerlab.probes.validation import check_number

    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty: pass the candidate layers, e.g. list(range(model.n_layers)).")
    if not callable(objective):
        raise ValueError(f"objective must be callable (layer -> value), got {type(objective).__name__}: e.g. "
                         "probe_objective(probe, hidden, layers, y_token, answer_index).")
    check_number(n_trials, "n_trials", minimum=1, integer=True)
    check_number(n_startup_trials, "n_startup_trials", minimum=0, integer=True)
    cache: dict[int, float] = {}

    def evaluate(layer: int) -> float:
        if layer not in cache:
            cache[layer] = float(objective(layer))
        return cache[layer]

    start = time.perf_counter()
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(lambda trial: evaluate(layers[trial.suggest_int("slot", 0, len(layers) - 1)]),
                       n_trials=n_trials)
    finally:
        optuna.logging.set_verbosity(verbosity)
    trials = [(layers[t.params["slot"]], float(t.value)) for t in study.trials if t.value is not None]
    best_layer = _best_layer(cache, layers)
    seconds = {"search": time.perf_counter() - start}
    result = LayerSearchResult(best_layer, cache[best_layer], len(cache), trials, seconds=seconds)
    if exhaustive:
        start = time.perf_counter()
        result.exhaustive = {layer: evaluate(layer) for layer in layers}
        result.exhaustive_best_layer = _best_layer(result.exhaustive, layers)
        result.seconds["exhaustive_extra"] = time.perf_counter() - start
    return result


def _best_layer(values: dict[int, float], layers: list[int]) -> int:
    """The layer with the largest finite value (ties: the earliest layer); NaN / inf never win."""
    finite = [layer for layer in values if np.isfinite(values[layer])]
    if not finite:
        raise ValueError(f"The objective was not finite at any evaluated layer ({values}): with probe_objective "
                         "this means a one-class validation split; use more data, another seed or a different "
                         "val_fraction.")
    return max(finite, key=lambda layer: (values[layer], -layers.index(layer)))


def probe_objective(probe: Any, hidden: Any, layers: Sequence[int], y_token: np.ndarray, answer_index: np.ndarray,
                    val_fraction: float = 0.3, seed: int = 0) -> Callable[[int], float]:
    """``layer -> validation AUROC``: fit a clone of ``probe`` on part of the answers, score the rest.

    Args:
        probe: an unfitted token probe (``clone``, ``fit``, ``predict_proba``).
        hidden: ``[n_tokens, n_layers, d]`` hidden states (``GeneratedTokens.hidden`` or
            ``GeneratedTokens.all_layer_features(...)``); array, tensor or nested list.
        layers: ``[n_layers]`` the model layer of each slot of ``hidden`` (``GeneratedTokens.layers``).
        y_token: ``[n_tokens]`` 0/1 labels; answer_index: ``[n_tokens]`` answer ids (the split keeps answers
            whole); arrays or lists.
        val_fraction, seed: the grouped validation split, the same for every layer.

    Raises:
        ValueError: no grouped split puts both classes on both sides (a one-class validation split, where
            AUROC is undefined at every layer).
    """
    from steerlab.probes.splits import group_split
    from steerlab.probes.validation import (ProbeInputError, as_activation_tensor, as_groups, check_01_labels,
                                            check_estimator, check_fraction, check_layer, check_n_groups)

    check_estimator(probe, methods=("clone", "fit", "predict_proba"))
    check_fraction(val_fraction, "val_fraction")
    hidden = as_activation_tensor(hidden)[0].cpu().numpy()
    layers = list(layers)
    if hidden.ndim != 3 or hidden.shape[1] != len(layers):
        raise ProbeInputError(f"hidden must be [n_tokens, n_layers={len(layers)}, d] (one slot per entry of layers), "
                              f"got shape {hidden.shape}: pass GeneratedTokens.hidden with GeneratedTokens.layers.")
    y_token, answer_index = np.asarray(y_token), np.asarray(answer_index)
    if not len(hidden) == len(y_token) == len(answer_index):
        raise ProbeInputError(f"hidden has {len(hidden)} rows, y_token {len(y_token)} and answer_index "
                              f"{len(answer_index)}: pass one label and one answer id per token row.")
    y_token = check_01_labels(y_token, len(hidden), "y_token")
    answer_index = as_groups(answer_index, len(hidden), "answer_index")
    check_n_groups(answer_index, 2, "the grouped validation split (answers are kept whole)")
    try:
        fit_rows, val_rows = group_split(y_token, answer_index, val_fraction, seed)
    except ProbeInputError as error:
        raise ValueError(f"probe_objective: one-class validation split (AUROC undefined at every layer; "
                         f"{int(y_token.sum())} of {len(y_token)} tokens are hallucinated, in "
                         f"{len(np.unique(answer_index[y_token == 1]))} answers). Use more data, another seed or a "
                         f"different val_fraction (now {val_fraction}).") from error

    def objective(layer: int) -> float:
        X = hidden[:, check_layer(layer, layers, len(layers))]
        fitted = probe.clone().fit(X[fit_rows], y_token[fit_rows], groups=answer_index[fit_rows])
        return auroc(y_token[val_rows], fitted.predict_proba(X[val_rows])[:, 1])

    return objective
