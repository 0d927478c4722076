"""The fitted-direction interface every steerlab probe and truth direction shares.

A fitted probe holds, per layer, a raw-activation-space linear score
``decision_function(h) = intercept_ + coef_ . h`` (a logit), its unit direction
``concept_vector_ = coef_ / ||coef_||`` and where the activations came from
(``layers_``, ``site_``, ``model_name_``, ``position_``; None for plain arrays). Fitted on
``[n, d]`` the attributes are ``coef_ [d]``, ``intercept_`` float; fitted on
``[n, n_layers, d]`` they are ``coef_ [n_layers, d]``, ``intercept_ [n_layers]``.

Subclasses implement only ``_fit_layers(X [L, n, d], y01 [n], groups) -> (coef [L, d],
intercept [L])`` plus optional extra fitted arrays; fitting, scoring, saving and loading
live here once.

Example:
    >>> import numpy as np
    >>> from steerlab.probes import DiffMeans
    >>> X = np.r_[np.zeros((5, 3)), np.ones((5, 3))]; y = np.r_[np.zeros(5), np.ones(5)]
    >>> probe = DiffMeans().fit(X, y)
    >>> [round(float(v), 3) for v in probe.concept_vector_], probe.predict(X).tolist() == y.tolist()
    ([0.577, 0.577, 0.577], True)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from einops import rearrange

from steerlab.probes.estimator import BinaryClassifier
from steerlab.probes.validation import (ActivationInfo, ProbeInputError, as_activation_tensor, as_groups,
                                        check_fitted, check_labels, check_layer, check_width)

if TYPE_CHECKING:
    from steerlab.artifacts import TensorSpec

_REGISTRY: dict[str, type["LinearProbe"]] = {}


class LinearProbe(BinaryClassifier):
    """Base class: a scikit-learn estimator (``fit``/``predict``/``predict_proba``/``decision_function``/``score``).

    ``__init__`` only stores parameters, so ``sklearn.base.clone``, ``GridSearchCV``,
    ``cross_val_score`` and pipelines work on 2-D inputs; ``get_params`` / ``set_params`` come from
    ``BaseEstimator``. Fitted attributes: ``coef_``, ``intercept_``, ``concept_vector_``,
    ``classes_``, ``mean_``/``scale_`` (the standardisation used, or None), ``d_model_``,
    ``n_layers_`` (None for a 2-D fit), ``activation_norm_`` (the median ``||h||`` of the training rows,
    per layer: the vector's ``typical_norm`` in :meth:`SteeringVector.from_probe
    <steerlab.steering.SteeringVector.from_probe>`), ``metrics_`` (dict), ``fit_seconds_``, and where the
    activations came from: ``layers_``, ``site_``, ``model_name_``, ``model_provenance_``,
    ``position_`` (None for plain arrays). Before ``fit`` they are absent and scoring raises
    scikit-learn's ``NotFittedError``.
    """

    _fitted_arrays: ClassVar[tuple[str, ...]] = ()  # extra per-layer arrays (leading axis n_layers), saved
    _saved_arrays: ClassVar[tuple[str, ...]] = ()  # other arrays saved with the probe

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def __init__(self, *, device: str | torch.device = "cpu", dtype: str = "float32"):
        self.device = device
        self.dtype = dtype

    # ------------------------------------------------------------ fitting

    def fit(self, X: Any, y: Any, groups: Any = None) -> "LinearProbe":
        """Fit on ``X`` ``[n, d]`` or ``[n, n_layers, d]`` (array, tensor or ``Activations``) and labels ``y`` ``[n]``.

        Parameters and data are checked first (:mod:`steerlab.probes.validation`): bad input raises
        :class:`~steerlab.probes.ProbeInputError` before any fitting.
        """
        start = time.perf_counter()
        self._check_params()
        values, info = as_activation_tensor(X, self.dtype)
        y01, self.classes_ = check_labels(y, len(values))
        groups = as_groups(groups, len(values))
        per_layer = values.ndim == 3
        X3 = rearrange(values, "n l d -> l n d").contiguous() if per_layer else values[None]  # layer-major for bmm
        self.metrics_ = {}  # subclasses' _fit_layers add theirs
        coef, intercept = self._fit_layers(X3.to(self.device), y01, groups)
        coef, intercept = coef.detach().cpu().numpy(), intercept.detach().cpu().numpy()  # keeps the fit dtype
        # the scale of the rows the direction came from: a steering alpha in "norm units" multiplies it
        norms = torch.linalg.vector_norm(X3, dim=-1).double()  # [L, n]; accumulating in float64 cost 0.6 s at d=4096
        self.activation_norm_ = norms.median(dim=1).values.cpu().numpy()  # [L]
        self._set_fitted(coef, intercept, per_layer, info)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _check_params(self) -> None:
        """Refuse invalid constructor parameters (called by :meth:`fit`; ``__init__`` only stores them)."""

    def _fit_layers(self, X: torch.Tensor, y01: np.ndarray, groups: np.ndarray | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``X [L, n, d]`` -> raw-space ``(coef [L, d], intercept [L])``; subclasses set extra attributes."""
        raise NotImplementedError

    def _record_source(self, info: ActivationInfo) -> None:
        """Where the training activations came from: model (and a GGUF model's provenance), site, layers, position."""
        self.layers_ = info.layers
        self.site_, self.model_name_, self.position_ = info.site, info.model_name, info.position
        self.model_provenance_ = info.model_provenance

    def _set_fitted(self, coef: np.ndarray, intercept: np.ndarray, per_layer: bool, info: ActivationInfo) -> None:
        norms = np.linalg.norm(coef, axis=-1, keepdims=True)
        # an all-zero fit (no linear signal, e.g. after erasure) keeps a zero concept vector
        unit = coef / np.where(norms > 0, norms, 1)
        self.coef_ = coef if per_layer else coef[0]
        self.intercept_ = intercept if per_layer else float(intercept[0])
        self.concept_vector_ = unit if per_layer else unit[0]
        self.n_layers_ = coef.shape[0] if per_layer else None
        self.d_model_ = coef.shape[-1]
        self.n_features_in_ = self.d_model_  # scikit-learn's name for the input width
        self._record_source(info)
        if not per_layer:  # squeeze the per-layer helpers of 2-D fits
            for name in ("mean_", "scale_", "activation_norm_", *self._fitted_arrays):
                value = getattr(self, name, None)
                if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == 1:
                    setattr(self, name, value[0].item() if value.ndim == 1 else value[0])
            self.metrics_ = {k: (v[0].item() if isinstance(v, np.ndarray) and v.shape == (1,) else v)
                             for k, v in self.metrics_.items()}

    # ------------------------------------------------------------ scoring

    def _check_fitted(self) -> None:
        """Raise :class:`~steerlab.probes.NotFittedError` before ``fit``."""
        check_fitted(self, "coef_", "fit(X, y)")

    def decision_function(self, X: Any) -> np.ndarray:
        """Raw-space logit ``intercept_ + coef_ . h``: ``[n]`` for ``[n, d]``, ``[n, n_layers]`` for ``[n, n_layers, d]``."""
        self._check_fitted()
        values, _ = as_activation_tensor(X, torch.float64)
        if self.n_layers_ == 1 and values.ndim == 2:  # a one-layer per-layer probe also scores [n, d]
            values = values[:, None]
            return self.decision_function(values)[:, 0]
        check_width(values, self.d_model_, self.n_layers_, type(self).__name__)
        h = values.numpy()
        coef = np.asarray(self.coef_, dtype=np.float64)
        scores = np.einsum("nld,ld->nl", h, coef) if h.ndim == 3 else h @ coef
        return scores + self.intercept_

    def predict_proba(self, X: Any) -> np.ndarray:
        """``[n, 2]`` (or ``[n, n_layers, 2]``): probabilities of ``classes_[0]`` and ``classes_[1]``."""
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.stack([1 - p, p], axis=-1)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels ``[n]`` (or ``[n, n_layers]``) from ``classes_``."""
        scores = self.decision_function(X)
        return self.classes_[(scores > 0).astype(int)]

    def score(self, X: Any, y: Any) -> float | np.ndarray:
        """Accuracy: a float, or ``[n_layers]`` for a per-layer probe."""
        predicted = self.predict(X)
        y = np.asarray(y)
        check_labels(y, len(predicted), self.classes_)
        correct = predicted == (y[:, None] if predicted.ndim == 2 else y)
        return correct.mean(0) if predicted.ndim == 2 else float(correct.mean())

    def at_layer(self, layer: int) -> "LinearProbe":
        """The probe of one layer (a model layer number when ``layers_`` is known, else a slot) as a 2-D probe."""
        self._check_fitted()
        if self.n_layers_ is None:
            raise ProbeInputError("This probe was fitted on one layer already.")
        slot = check_layer(layer, self.layers_, self.n_layers_)
        single = self.clone()
        for name, value in vars(self).items():
            if name.endswith("_") and isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == self.n_layers_:
                value = value[slot]
            setattr(single, name, value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value)
        single.metrics_ = {k: (v[slot].item() if isinstance(v, np.ndarray) and v.shape[:1] == (self.n_layers_,) else v)
                           for k, v in self.metrics_.items()}
        single.n_layers_ = None
        single.layers_ = [self.layers_[slot]] if self.layers_ else None
        return single

    # ------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write ``path.safetensors`` + ``path.json`` (metadata: model, site, layers, position, d_model, scaler, C, metrics).

        See :func:`steerlab.artifacts.save_artifact`: ``"raptor_C0.5"`` keeps its dot, symlinks are
        refused, files are replaced atomically and only with ``overwrite=True``.
        """
        from steerlab.artifacts import save_artifact

        self._check_fitted()
        tensors = {name: torch.as_tensor(np.asarray(getattr(self, name), dtype=np.float32))
                   for name in ("coef_", "intercept_", "concept_vector_", "mean_", "scale_", "activation_norm_",
                                *self._fitted_arrays,
                                *self._saved_arrays)
                   if getattr(self, name, None) is not None}
        params = {name: value for name, value in self.get_params().items() if name not in ("device", "dtype")}
        metadata = {"class": type(self).__name__, "params": _jsonable(params), "model": self.model_name_,
                    "model_provenance": self.model_provenance_,
                    "site": self.site_, "layers": self.layers_, "position": self.position_, "d_model": self.d_model_,
                    "n_layers": self.n_layers_, "classes": self.classes_.tolist(),
                    "chosen_C": _jsonable(getattr(self, "C_", None)), "metrics": _jsonable(self.metrics_),
                    "standardized": getattr(self, "mean_", None) is not None}
        return save_artifact(path, tensors, metadata, kind="probe", overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LinearProbe":
        """Read a probe written by :meth:`save` (any probe class when called on ``LinearProbe``).

        Everything is validated first (:mod:`steerlab.artifacts`); a bad file raises an
        ``ArtifactError`` naming the file and the problem.
        """
        from steerlab.artifacts import artifact_error, artifact_paths, invalid_artifact, read_metadata, read_tensors

        meta = read_metadata(path, kind="probe", classes=_REGISTRY)
        target = _REGISTRY[meta["class"]]
        if not issubclass(target, cls):
            raise artifact_error(artifact_paths(path)[1], f"holds a {meta['class']}, not a {cls.__name__}.")
        with invalid_artifact(path, f"a {target.__name__}"):
            probe = target(**meta["params"])
        tensors = read_tensors(path, meta, target._artifact_tensors())
        for name, tensor in tensors.items():
            value = tensor.numpy()
            setattr(probe, name, float(value) if value.ndim == 0 else value)
        probe.classes_ = np.asarray(meta["classes"])
        probe.layers_, probe.site_, probe.model_name_, probe.position_ = (meta["layers"], meta["site"], meta["model"],
                                                                           meta["position"])
        probe.model_provenance_ = meta.get("model_provenance")
        probe.d_model_, probe.n_layers_, probe.metrics_ = meta["d_model"], meta["n_layers"], meta["metrics"]
        if meta.get("chosen_C") is not None:
            probe.C_ = np.asarray(meta["chosen_C"]) if isinstance(meta["chosen_C"], list) else meta["chosen_C"]
        return probe

    @classmethod
    def _artifact_tensors(cls) -> dict[str, "TensorSpec"]:
        """This class's own saved arrays, for :func:`steerlab.artifacts.read_tensors` (optional: older files)."""
        from steerlab.artifacts import LAYER_AXIS, TensorSpec

        return ({name: TensorSpec((LAYER_AXIS, ...), required=False) for name in cls._fitted_arrays}
                | {name: TensorSpec((...,), required=False) for name in cls._saved_arrays})

    # ------------------------------------------------------------ display

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if k not in ("device", "dtype"))
        head = f"{type(self).__name__}({params})"
        if not hasattr(self, "coef_"):
            return head + "  [not fitted]"
        where = f"layers={self.layers_}" if self.layers_ else (
            f"{self.n_layers_} layers" if self.n_layers_ else "1 layer")
        source = f" of {self.model_name_!r} {self.site_} {self.position_!r}" if self.model_name_ else ""
        extra = "".join(f", {k}={_short(v)}" for k, v in self._repr_fitted().items())
        return f"{head}\n  fitted{source}: {where}, d={self.d_model_}{extra}"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        """Jupyter shows the text repr above (with the fitted summary), not scikit-learn's parameter diagram."""
        return {"text/plain": repr(self)}

    def _repr_fitted(self) -> dict[str, Any]:
        return {k: v for k, v in self.metrics_.items() if isinstance(v, (int, float, np.ndarray))}


def load_probe(path: str | os.PathLike) -> LinearProbe:
    """Load any saved linear probe or direction; the class is read from the metadata.

    Token-level hallucination probes load with ``steerlab.hallucination.TokenProbe.load(path)``.

    Example:
        >>> import numpy as np, tempfile, os
        >>> from steerlab.probes import DiffMeans, load_probe
        >>> p = DiffMeans().fit(np.eye(4), [0, 0, 1, 1])
        >>> path = p.save(os.path.join(tempfile.mkdtemp(), "dm"))
        >>> np.allclose(load_probe(path).coef_, p.coef_)
        True
    """
    from steerlab.artifacts import artifact_error, artifact_kind, artifact_paths

    if artifact_kind(path) == "token_probe":  # validates the JSON; the loader validates the rest
        raise artifact_error(artifact_paths(path)[1], "holds a token-level hallucination probe: load it with "
                             "steerlab.hallucination.TokenProbe.load(path).")
    return LinearProbe.load(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, np.ndarray):
        return np.array2string(value, precision=3, threshold=8)
    return repr(value)
