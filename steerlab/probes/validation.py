"""Input checks shared by every probe: clear errors that name the problem and the fix.

Everything a probe accepts goes through :func:`as_activation_tensor` (an ``Activations``
object, a numpy array or a torch tensor, ``[n, d]`` or ``[n, n_layers, d]``) and
:func:`check_labels`.

Example:
    >>> import numpy as np
    >>> X, info = as_activation_tensor(np.zeros((4, 3)))
    >>> tuple(X.shape), info.layers
    ((4, 3), None)
    >>> check_labels([0, 1, 1], n_rows=2)
    Traceback (most recent call last):
    ...
    steerlab.probes.validation.ProbeInputError: X has 2 rows but y has 3 labels: pass one label per row of X.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch


class ProbeInputError(ValueError):
    """Data a probe cannot use; the message says what is wrong and how to fix it."""


class NotFittedError(RuntimeError):
    """A fitted-only method was called before ``fit``."""


@dataclass(frozen=True)
class ActivationInfo:
    """Where activations came from (all None for a plain array)."""

    layers: list[int] | None = None
    site: str | None = None
    model_name: str | None = None
    position: Any = None


def as_activation_tensor(X: Any, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ActivationInfo]:
    """``X`` as a finite float tensor ``[n, d]`` or ``[n, n_layers, d]``, plus its provenance."""
    info = ActivationInfo()
    if hasattr(X, "values") and hasattr(X, "layers") and hasattr(X, "site"):  # an Activations object
        info = ActivationInfo(list(X.layers), X.site, getattr(X, "model_name", None), getattr(X, "position", None))
        X = X.values
    tensor = X.detach() if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X))
    if tensor.ndim not in (2, 3):
        raise ProbeInputError(f"X must be [n, d] or [n, n_layers, d], got shape {tuple(tensor.shape)}: "
                              "reshape it, e.g. X.reshape(len(X), -1) for one feature vector per row.")
    if not (tensor.is_floating_point() or tensor.dtype in (torch.int32, torch.int64, torch.bool)):
        raise ProbeInputError(f"X must hold numbers, got dtype {tensor.dtype}.")
    tensor = tensor.to(dtype)
    bad = ~torch.isfinite(tensor)
    if bad.any():
        rows = torch.nonzero(bad.reshape(len(tensor), -1).any(1)).flatten()[:5].tolist()
        raise ProbeInputError(f"X holds NaN or inf values (first bad rows: {rows}): drop or repair those rows "
                              "(e.g. recapture in float32; bfloat16/float16 activations can overflow).")
    if tensor.shape[0] == 0:
        raise ProbeInputError("X has no rows: pass at least a few examples of each class.")
    return tensor, info


def check_labels(y: Any, n_rows: int, classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Binary labels as ``(y01 [n] int64, classes [2])``; ``classes`` given means "map onto these"."""
    labels = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    if labels.ndim != 1:
        raise ProbeInputError(f"y must be one label per row ([n]), got shape {labels.shape}.")
    if len(labels) != n_rows:
        raise ProbeInputError(f"X has {n_rows} rows but y has {len(labels)} labels: pass one label per row of X.")
    if classes is None:
        classes = np.unique(labels)
        if len(classes) < 2:
            raise ProbeInputError(f"y has only one class ({classes.tolist()}): a probe needs examples of both "
                                  "classes, e.g. true AND false statements.")
        if len(classes) > 2:
            raise ProbeInputError(f"y has {len(classes)} classes {classes.tolist()[:6]}: probes here are binary; "
                                  "fit one probe per class against the rest.")
    unknown = ~np.isin(labels, classes)
    if unknown.any():
        raise ProbeInputError(f"y holds labels {np.unique(labels[unknown]).tolist()} not seen in fit "
                              f"(classes {classes.tolist()}).")
    return (labels == classes[1]).astype(np.int64), classes


def check_min_per_class(y01: np.ndarray, needed: int, why: str) -> None:
    """Refuse data with fewer than ``needed`` examples of a class (``why`` names the split)."""
    counts = np.bincount(y01, minlength=2)
    if counts.min() < needed:
        raise ProbeInputError(f"{why} needs at least {needed} examples of each class, got {counts.tolist()} "
                              "(class 0, class 1): add examples, or use fewer splits (e.g. Cs=[1.0] fits with "
                              "no validation split).")


def check_width(X: torch.Tensor, d_model: int, n_layers: int | None) -> None:
    """Refuse activations whose width or layer count differs from what the probe was fitted on."""
    if X.shape[-1] != d_model:
        raise ProbeInputError(f"X has width d={X.shape[-1]} but the probe was fitted on d={d_model}: "
                              "use activations of the same model and site.")
    if n_layers is not None and X.ndim == 3 and X.shape[1] != n_layers:
        raise ProbeInputError(f"X has {X.shape[1]} layers but the probe was fitted on {n_layers}: "
                              "pass the same layers, or select one with probe.layer(i).")
    if n_layers is not None and X.ndim == 2:
        raise ProbeInputError(f"This probe holds {n_layers} layers, so X must be [n, {n_layers}, d]: "
                              "pass all layers, or select one with probe.layer(i).")
    if n_layers is None and X.ndim == 3:
        raise ProbeInputError("This probe was fitted on one layer, so X must be [n, d], not [n, n_layers, d].")


def as_groups(groups: Sequence[Any] | None, n_rows: int) -> np.ndarray | None:
    """Group ids as an array, checked against the number of rows."""
    if groups is None:
        return None
    groups = np.asarray(groups)
    if len(groups) != n_rows:
        raise ProbeInputError(f"X has {n_rows} rows but groups has {len(groups)} entries: pass one group per row.")
    return groups
