"""Input checks shared by every probe: clear errors that name the problem and the fix.

One function per concern, used by every probe-stage entry point before any fitting:

* data: :func:`as_activation_tensor` (an ``Activations`` object, a numpy array, a torch
  tensor or nested lists, ``[n, d]`` or ``[n, n_layers, d]``), :func:`as_activation_matrix`
  (one layer, ``[n, d]``), :func:`check_labels` (any two classes), :func:`check_01_labels`
  (0/1 labels, 1 = the positive class), :func:`check_scores` (finite scores or targets),
  :func:`as_groups`, :func:`check_n_groups`, :func:`check_min_per_class`;
* fitted state: :func:`check_fitted`, :func:`check_width`, :func:`check_layer`;
* parameters (checked at fit time, ``__init__`` only stores them): :func:`check_number`,
  :func:`check_fraction`, :func:`check_Cs`, :func:`check_shrinkage`, :func:`check_choice`,
  :func:`check_estimator`.

Example:
    >>> import numpy as np
    >>> X, info = as_activation_tensor(np.zeros((4, 3)))
    >>> tuple(X.shape), info.layers
    ((4, 3), None)
    >>> check_labels([0, 1, 1], n_rows=2)
    Traceback (most recent call last):
    ...
    steerlab.probes.validation.ProbeInputError: X has 2 rows but y has 3 labels: pass one label per row of X.
    >>> check_fraction(1.5, "val_fraction")
    Traceback (most recent call last):
    ...
    steerlab.probes.validation.ProbeInputError: val_fraction=1.5 must be a number strictly between 0 and 1 (e.g. 0.2).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.exceptions import NotFittedError as SklearnNotFittedError


class ProbeInputError(ValueError):
    """Data or a parameter a probe cannot use; the message says what is wrong and how to fix it."""


class NotFittedError(SklearnNotFittedError, RuntimeError):
    """A fitted-only method was called before ``fit``: scikit-learn's ``NotFittedError`` (so
    ``except sklearn.exceptions.NotFittedError`` catches it); ``RuntimeError`` is kept for callers
    that caught the earlier type."""


@dataclass(frozen=True)
class ActivationInfo:
    """Where activations came from (all None for a plain array)."""

    layers: list[int] | None = None
    site: str | None = None
    model_name: str | None = None
    position: Any = None
    model_provenance: dict[str, Any] | None = None  # a GGUF-converted model's source file, sha256, quantisation


# ---------------------------------------------------------------- data


def _numeric_array(values: Any, name: str) -> np.ndarray:
    """``values`` as a numpy array of numbers (bool, int or float); strings, objects and ragged lists refused."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError) as error:  # ragged nested lists
        raise ProbeInputError(f"{name} is ragged or not array-like ({error}): pass a rectangular array, "
                              "every row of the same length.") from error
    kind = array.dtype.kind
    if kind in "biuf":
        return array
    example = array.reshape(-1)[0] if array.size else None
    if kind == "O":
        try:
            return array.astype(np.float64)
        except (TypeError, ValueError) as error:
            raise ProbeInputError(f"{name} holds non-numeric or ragged values (dtype object, e.g. {example!r}): "
                                  "pass a rectangular float array, e.g. np.asarray(X, dtype=np.float32).") from error
    if kind in "USa":
        raise ProbeInputError(f"{name} holds strings (dtype {array.dtype}, e.g. {example!r}), not numbers: pass "
                              "activations (e.g. from steerlab.capture), or convert numeric text with "
                              f"np.asarray({name}, dtype=float).")
    raise ProbeInputError(f"{name} has dtype {array.dtype} ({'complex' if kind == 'c' else 'not real numbers'}): "
                          f"pass real-valued floats, e.g. np.asarray({name}, dtype=np.float32).")


def _as_tensor(X: Any, name: str) -> torch.Tensor:
    """``X`` (tensor, array, nested lists) as a torch tensor of real numbers."""
    if isinstance(X, torch.Tensor):
        tensor = X.detach()
        if tensor.is_complex():
            raise ProbeInputError(f"{name} has dtype {tensor.dtype} (complex): pass real-valued floats.")
        return tensor
    return torch.as_tensor(_numeric_array(X, name))


def _check_finite(values: torch.Tensor | np.ndarray, name: str, fix: str) -> None:
    """Refuse NaN / inf, naming the first bad rows."""
    if isinstance(values, np.ndarray):
        values = torch.as_tensor(values)
    # a finite sum means every value is finite (NaN and inf propagate through a sum), and costs one
    # pass without a mask: 40x faster than isfinite on 7B-sized activations; an overflowing sum of
    # finite values falls through to the exact check
    if values.is_floating_point() and not torch.isfinite(values.sum()):
        bad = ~torch.isfinite(values)
        if bad.any():
            rows = torch.nonzero(bad.reshape(len(values), -1).any(1)).flatten()[:5].tolist()
            raise ProbeInputError(f"{name} holds NaN or inf values (first bad rows: {rows}): {fix}")


def as_activation_tensor(X: Any, dtype: torch.dtype | str = torch.float32) -> tuple[torch.Tensor, ActivationInfo]:
    """``X`` as a finite float tensor ``[n, d]`` or ``[n, n_layers, d]``, plus its provenance."""
    info = ActivationInfo()
    if hasattr(X, "values") and hasattr(X, "layers") and hasattr(X, "site"):  # an Activations object
        info = ActivationInfo(list(X.layers), X.site, getattr(X, "model_name", None), getattr(X, "position", None),
                              getattr(X, "model_provenance", None))
        X = X.values
    if X is None:
        raise ProbeInputError("X is None: pass activations [n, d] or [n, n_layers, d].")
    tensor = _as_tensor(X, "X")
    if tensor.ndim not in (2, 3):
        hint = ("for one example use X.reshape(1, -1)" if tensor.ndim == 1
                else "e.g. X.reshape(len(X), -1) for one feature vector per row")
        raise ProbeInputError(f"X must be [n, d] or [n, n_layers, d], got shape {tuple(tensor.shape)} "
                              f"(ndim={tensor.ndim}): reshape it, {hint}.")
    if tensor.shape[0] == 0:
        raise ProbeInputError("X has no rows: pass at least a few examples of each class.")
    if 0 in tensor.shape[1:]:
        raise ProbeInputError(f"X has shape {tuple(tensor.shape)}: no features (d=0) or no layers; pass the "
                              "captured activations.")
    tensor = tensor.to(torch_dtype(dtype))
    _check_finite(tensor, "X", "drop or repair those rows (e.g. recapture in float32; bfloat16/float16 "
                               "activations can overflow).")
    return tensor, info


def as_activation_matrix(X: Any, dtype: torch.dtype = torch.float32,
                         hint: str = "select one layer, e.g. X[:, layer_slot] or acts.layer(l)") -> torch.Tensor:
    """One layer's rows: ``X`` as a finite float tensor ``[n, d]`` (``hint`` says how to get there from 3-D)."""
    tensor, _ = as_activation_tensor(X, dtype)
    if tensor.ndim != 2:
        raise ProbeInputError(f"X must be one layer's rows [n, d], got shape {tuple(tensor.shape)}: {hint}.")
    return tensor


def _label_array(y: Any, name: str) -> np.ndarray:
    """``y`` as a 1-D numpy array (tensors moved to the CPU)."""
    if y is None:
        raise ProbeInputError(f"{name} is None: pass one label per row.")
    labels = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    if labels.ndim != 1:
        fix = f"flatten it with {name}.ravel()" if labels.ndim == 2 and 1 in labels.shape else "pass one label per row"
        raise ProbeInputError(f"{name} must be one label per row ([n]), got shape {labels.shape}: {fix}.")
    return labels


def _check_length(values: np.ndarray, n_rows: int | None, name: str) -> None:
    """Refuse ``values`` whose length differs from the ``n_rows`` of X."""
    if n_rows is not None and len(values) != n_rows:
        raise ProbeInputError(f"X has {n_rows} rows but {name} has {len(values)} labels: pass one label per row of X.")


def _check_label_values(labels: np.ndarray, name: str) -> None:
    """Refuse NaN / inf and non-integer (soft) float labels."""
    if labels.dtype.kind == "f":
        _check_finite(labels, name, "drop those rows or give them a class.")
        soft = labels != np.round(labels)
        if soft.any():
            raise ProbeInputError(f"{name} must hold class labels (e.g. 0/1), got non-integer values such as "
                                  f"{labels[soft][:3].tolist()}: threshold soft labels first, e.g. "
                                  "(p > 0.5).astype(int).")


def check_labels(y: Any, n_rows: int, classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Binary labels as ``(y01 [n] int64, classes [2])``; ``classes`` given means "map onto these".

    Any two classes work (0/1, bools, two strings); ``classes[1]`` (the larger) is the positive one.
    """
    labels = _label_array(y, "y")
    _check_length(labels, n_rows, "y")
    _check_label_values(labels, "y")
    if classes is None:
        try:
            classes = np.unique(labels)
        except TypeError as error:  # e.g. None beside strings
            raise ProbeInputError(f"y mixes label types ({sorted({type(v).__name__ for v in labels})}): pass "
                                  "labels of one type, e.g. 0/1 ints.") from error
        if len(classes) < 2:
            raise ProbeInputError(f"y has only one class ({classes.tolist()}): a probe needs examples of both "
                                  "classes, e.g. true AND false statements.")
        if len(classes) > 2:
            raise ProbeInputError(f"y has {len(classes)} classes {classes.tolist()[:6]}: probes here are binary "
                                  "(expected two classes, e.g. 0/1); fit one probe per class against the rest.")
    unknown = ~np.isin(labels, classes)
    if unknown.any():
        raise ProbeInputError(f"y holds labels {np.unique(labels[unknown]).tolist()} not seen in fit "
                              f"(classes {classes.tolist()}).")
    return (labels == classes[1]).astype(np.int64), classes


def check_01_labels(y: Any, n_rows: int | None = None, name: str = "y") -> np.ndarray:
    """Labels that must be 0/1 (1 = positive, e.g. hallucinated) as int64 ``[n]``; bools count as 0/1."""
    labels = _label_array(y, name)
    _check_length(labels, n_rows, name)
    if labels.dtype.kind == "b":
        return labels.astype(np.int64)
    if labels.dtype.kind not in "iuf":
        example = labels[0] if len(labels) else None
        raise ProbeInputError(f"{name} holds {labels.dtype} values (e.g. {example!r}), but 0/1 ints are expected "
                              f"(1 = positive/hallucinated): map them, e.g. ({name} == {example!r}).astype(int).")
    _check_label_values(labels, name)
    other = ~np.isin(labels, (0, 1))
    if other.any():
        raise ProbeInputError(f"{name} must hold 0/1 labels (1 = positive/hallucinated), got values "
                              f"{np.unique(labels[other]).tolist()[:6]}: map them onto 0/1 (binary labels only).")
    return labels.astype(np.int64)


def check_scores(scores: Any, n_rows: int | None = None, name: str = "scores", allow_empty: bool = False
                 ) -> np.ndarray:
    """Finite float64 scores (or regression targets) ``[n]``, one per row (empty refused unless ``allow_empty``)."""
    if scores is None:
        raise ProbeInputError(f"{name} is None: pass one score per row.")
    values = _numeric_array(scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, name)
    if values.ndim != 1:
        raise ProbeInputError(f"{name} must be one number per row ([n]), got shape {values.shape}: pass e.g. "
                              "probe.predict_proba(X)[:, 1] or decision_function(X) of one layer.")
    if n_rows is not None and len(values) != n_rows:
        raise ProbeInputError(f"The labels have {n_rows} entries but {name} has {len(values)}: pass one score per "
                              "labelled row.")
    if len(values) == 0 and not allow_empty:
        raise ProbeInputError(f"{name} is empty: score at least one example of each class.")
    values = values.astype(np.float64)
    _check_finite(values, name, "a probe gave NaN (diverged or fitted on bad data): repair those rows or refit.")
    return values


def check_scored_labels(y01: Any, scores: Any, name: str = "scores", allow_empty: bool = False
                        ) -> tuple[np.ndarray, np.ndarray]:
    """``(y01 int64 [n], scores float64 [n])`` for metrics: 0/1 labels and finite scores of the same length."""
    labels = check_01_labels(y01, name="y01")
    return labels, check_scores(scores, len(labels), name, allow_empty)


def check_min_per_class(y01: np.ndarray, needed: int, why: str, fix: str = "add examples of the rarer class") -> None:
    """Refuse data with fewer than ``needed`` examples of a class (``why`` names the split, ``fix`` the way out)."""
    counts = np.bincount(y01, minlength=2)
    if counts.min() < needed:
        raise ProbeInputError(f"{why} needs at least {needed} examples of each class, got {counts.tolist()} "
                              f"(class 0, class 1): {fix}.")


def as_groups(groups: Sequence[Any] | None, n_rows: int, name: str = "groups") -> np.ndarray | None:
    """Group ids as a 1-D array (no NaN, one type), checked against the number of rows."""
    if groups is None:
        return None
    values = np.asarray(groups.detach().cpu() if isinstance(groups, torch.Tensor) else groups)
    if values.ndim != 1:
        raise ProbeInputError(f"{name} must be one id per row ([n]), got shape {values.shape}.")
    if len(values) != n_rows:
        raise ProbeInputError(f"X has {n_rows} rows but {name} has {len(values)} entries: pass one group per row.")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ProbeInputError(f"{name} holds NaN or inf ids: give every row a group id (e.g. its entity or answer).")
    try:
        np.unique(values)
    except TypeError as error:
        raise ProbeInputError(f"{name} mixes id types or holds None: pass one id type, e.g. ints.") from error
    return values


def check_n_groups(groups: np.ndarray, needed: int, why: str) -> None:
    """Refuse ``groups`` with fewer than ``needed`` distinct ids (``why`` names the split)."""
    found = len(np.unique(groups))
    if found < needed:
        raise ProbeInputError(f"groups has {found} distinct value{'s' if found != 1 else ''}: {why} needs at least "
                              f"{needed} groups; pass more groups, or groups=None for a stratified split.")


# ---------------------------------------------------------------- fitted state


def check_fitted(estimator: Any, attribute: str, fit_call: str = "fit(X, y)") -> None:
    """Raise :class:`NotFittedError` when ``estimator`` lacks the fitted ``attribute`` (or it is None)."""
    if getattr(estimator, attribute, None) is None:
        raise NotFittedError(f"This {type(estimator).__name__} is not fitted yet: call {fit_call} first.")


def torch_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``torch.float32`` from ``"float32"`` (probes store dtypes as strings: scikit-learn's parameter checks) or as is."""
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ProbeInputError(f"dtype={dtype!r} is not a torch floating dtype: pass e.g. 'float32' or 'float64'.")
    return value


def check_width(X: torch.Tensor, d_model: int, n_layers: int | None, owner: str = "the probe") -> None:
    """Refuse activations whose width or layer count differs from what ``owner`` was fitted on."""
    if X.shape[-1] != d_model:  # scikit-learn's wording, then the fix
        raise ProbeInputError(f"X has {X.shape[-1]} features, but {owner} is expecting {d_model} features as input "
                              f"(it was fitted on width d={d_model}): use activations of the same model and site.")
    if n_layers is not None and X.ndim == 3 and X.shape[1] != n_layers:
        raise ProbeInputError(f"X has {X.shape[1]} layers but the probe was fitted on {n_layers}: "
                              "pass the same layers, or select one with probe.at_layer(i).")
    if n_layers is not None and X.ndim == 2:
        raise ProbeInputError(f"This probe holds {n_layers} layers, so X must be [n, {n_layers}, d]: "
                              "pass all layers, or select one with probe.at_layer(i).")
    if n_layers is None and X.ndim == 3:
        raise ProbeInputError("This probe was fitted on one layer, so X must be [n, d], not [n, n_layers, d].")


def check_layer(layer: Any, layers: Sequence[int] | None, n_slots: int) -> int:
    """The slot of ``layer``: a model layer number when ``layers`` is known, else a slot in ``range(n_slots)``."""
    if layers:
        if layer not in list(layers):
            raise ProbeInputError(f"Layer {layer!r} is not one the probe was fitted on (layers {list(layers)}): "
                                  "pick one of those, or fit on activations captured at that layer.")
        return list(layers).index(layer)
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or not -n_slots <= int(layer) < n_slots:
        raise ProbeInputError(f"Layer slot {layer!r} is out of range: this probe holds {n_slots} layers (slots 0.."
                              f"{n_slots - 1}, layer numbers unknown); pass a slot in that range.")
    return int(layer)


# ---------------------------------------------------------------- parameters


def check_number(value: Any, name: str, *, minimum: float | None = None, maximum: float | None = None,
                 exclusive_min: bool = False, exclusive_max: bool = False, integer: bool = False) -> float | int:
    """A real (or integer) parameter within bounds; bools, NaN and non-numbers refused."""
    kind = "an integer" if integer else "a number"
    valid_type = numbers.Integral if integer else numbers.Real
    message = f"{name}={value!r} must be {kind}{_bounds(minimum, maximum, exclusive_min, exclusive_max)}."
    if isinstance(value, bool) or not isinstance(value, valid_type) or not np.isfinite(float(value)):
        raise ProbeInputError(message)
    too_low = minimum is not None and (value <= minimum if exclusive_min else value < minimum)
    too_high = maximum is not None and (value >= maximum if exclusive_max else value > maximum)
    if too_low or too_high:
        raise ProbeInputError(message)
    return value


def _bounds(minimum: float | None, maximum: float | None, exclusive_min: bool, exclusive_max: bool) -> str:
    low = None if minimum is None else f"{'>' if exclusive_min else '>='} {minimum:g}"
    high = None if maximum is None else f"{'<' if exclusive_max else '<='} {maximum:g}"
    return "".join(f" {part}" for part in (low, "and" if low and high else None, high) if part)


def check_fraction(value: Any, name: str) -> float:
    """A share of the data strictly between 0 and 1 (``val_fraction``, ``test_fraction``, ``drop``, ...)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < float(value) < 1:
        raise ProbeInputError(f"{name}={value!r} must be a number strictly between 0 and 1 (e.g. 0.2).")
    return float(value)


def check_Cs(Cs: Any, name: str = "Cs") -> np.ndarray:
    """Inverse ridge penalties as a non-empty, positive, finite float64 grid ``[K]``."""
    if isinstance(Cs, (str, bytes, bool)):
        raise ProbeInputError(f"{name}={Cs!r}: pass a number of grid points (int) or a list of positive C values.")
    try:
        grid = np.asarray(Cs, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise ProbeInputError(f"{name}={Cs!r} is not numeric: pass a list of positive C values, e.g. "
                              "[0.01, 1.0, 100.0].") from error
    if len(grid) == 0 or (grid <= 0).any() or not np.isfinite(grid).all():
        raise ProbeInputError(f"{name} must hold positive finite values (a non-empty list), got {grid.tolist()[:6]}: "
                              "e.g. np.logspace(-4, 2, 20).")
    return grid


def check_shrinkage(shrinkage: Any) -> float | str:
    """LDA's shrinkage: ``"auto"`` or a number in [0, 1]."""
    if isinstance(shrinkage, str) and shrinkage == "auto":
        return shrinkage
    if isinstance(shrinkage, bool) or not isinstance(shrinkage, numbers.Real) or not 0 <= float(shrinkage) <= 1:
        raise ProbeInputError(f"shrinkage={shrinkage!r}: pass a value in [0, 1] or 'auto'.")
    return float(shrinkage)


def check_estimator(estimator: Any, name: str = "probe", methods: Sequence[str] = ("clone", "fit")) -> Any:
    """``estimator`` must be an instance with ``methods`` (a probe to clone and fit), not a class or a name."""
    is_class = isinstance(estimator, type)
    if is_class or not all(callable(getattr(estimator, method, None)) for method in methods):
        shown = f"{estimator.__name__} (a class: call it)" if is_class else type(estimator).__name__
        raise ProbeInputError(f"{name} must be a steerlab probe instance (with {', '.join(methods)}), e.g. "
                              f"RaptorProbe() or DiffMeans(), got {shown}.")
    return estimator


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    """``value`` must be one of ``choices``."""
    if value not in tuple(choices):
        raise ProbeInputError(f"{name}={value!r}: choose one of {tuple(choices)}.")
    return value
