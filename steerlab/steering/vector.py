"""``SteeringVector``: a direction in one model's activation space, with where it goes and where it came from."""

from __future__ import annotations

import math
import numbers
import operator
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from steerlab.artifacts import invalid_artifact, load_artifact, save_artifact
from steerlab.sites import SitePoint, resolve_layer, validate_site

if TYPE_CHECKING:
    from sae_lens import SAE
    from steerlab.models.adapter import ModelLike

KIND = "steering_vector"


@dataclass(frozen=True, eq=False)
class SteeringVector:
    """A direction ``[d_model]`` to inject at ``site`` of one or more layers.

    Attributes:
        direction: ``[d_model]`` float32, used as stored by ``mode="add"`` (h <- h + alpha * direction).
        layers: the layer(s) it is injected at.
        site: a site name (``resid_post`` by default).
        model_name: the model it was built on (checked on injection; None skips the check).
        probe_weight_norm, probe_intercept: for ``mode="clamp"``: the source probe's logit is
            ``probe_intercept + probe_weight_norm * (unit(direction) . h)``.
        typical_norm: the median ``||h||`` at the site and layer over the activations the vector was
            built from or calibrated on (a probe's training rows, the contrast pairs' rows, or every
            token of :meth:`with_typical_norm`'s texts); ``norm_units`` alphas multiply it.
        provenance: where it came from (method, dataset, probe metrics...).

    Example:
        >>> import torch
        >>> from steerlab import SteeringVector
        >>> v = SteeringVector(torch.ones(4), layers=2, model_name=None)
        >>> (2 * v - v).direction.tolist(), v.layers
        ([1.0, 1.0, 1.0, 1.0], (2,))
    """

    direction: torch.Tensor
    layers: tuple[int, ...] | int = 0
    site: str = "resid_post"
    model_name: str | None = None
    probe_weight_norm: float | None = None
    probe_intercept: float | None = None
    typical_norm: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        direction = torch.as_tensor(self.direction).detach().to("cpu", torch.float32)
        if direction.ndim != 1:
            raise ValueError(f"A steering direction is one vector [d_model], got shape {tuple(direction.shape)}; "
                             "for a per-layer probe pick a layer (SteeringVector.from_probe(probe, layer=...)).")
        if not torch.isfinite(direction).all():
            raise ValueError("The steering direction contains NaN or inf values.")
        layers = _layer_tuple(self.layers)
        validate_site(self.site)
        object.__setattr__(self, "direction", direction)
        object.__setattr__(self, "layers", layers)

    # ------------------------------------------------------------ properties

    @property
    def d_model(self) -> int:
        return int(self.direction.shape[0])

    @property
    def norm(self) -> float:
        return float(self.direction.norm())

    @property
    def unit(self) -> torch.Tensor:
        """The direction scaled to norm 1."""
        return self.direction / self.direction.norm().clamp_min(1e-12)

    def __eq__(self, other: object) -> bool:
        """Equal when every field is: the direction exactly (``torch.equal``), the rest by ``==``."""
        if not isinstance(other, SteeringVector):
            return NotImplemented
        return torch.equal(self.direction, other.direction) and all(
            getattr(self, name) == getattr(other, name)
            for name in ("layers", "site", "model_name", "probe_weight_norm", "probe_intercept", "typical_norm",
                         "provenance"))

    def __hash__(self) -> int:
        # by content, over a subset of the fields __eq__ compares (so equal vectors hash equal);
        # provenance is a dict, hence left out
        return hash((self.direction.numpy().tobytes(), self.layers, self.site, self.model_name))

    def apply(self, model: ModelLike, alpha: float = 1.0, **steer_kwargs: Any):
        """Steer ``model`` with this vector inside a ``with`` block (steering-vectors' idiom).

        The same as ``steer(model, self, alpha=alpha, **steer_kwargs)``; see
        :func:`steerlab.steering.injection.steer` for ``mode``, ``positions``, ``target``.

        Example:
            >>> with vector.apply(model, alpha=4.0, positions="all"):     # doctest: +SKIP
            ...     model.generate(["my friend said the food was"])
        """
        from steerlab.steering.injection import steer

        return steer(model, self, alpha=alpha, **steer_kwargs)

    def points(self, n_layers: int) -> list[SitePoint]:
        return [SitePoint(self.site, resolve_layer(layer, n_layers)) for layer in self.layers]

    def __repr__(self) -> str:
        source = self.provenance.get("method", "tensor")
        return (f"SteeringVector(site={self.site!r}, layers={list(self.layers)}, d_model={self.d_model}, "
                f"norm={self.norm:.3g}, model={self.model_name!r}, source={source!r})")

    # ------------------------------------------------------------ arithmetic

    def _combine(self, other: "SteeringVector", sign: float) -> "SteeringVector":
        if not isinstance(other, SteeringVector):
            return NotImplemented
        mismatched = [name for name in ("site", "layers", "model_name", "d_model")
                      if getattr(self, name) != getattr(other, name)]
        if mismatched:
            raise ValueError(f"Cannot combine steering vectors that differ in {', '.join(mismatched)}.")
        return replace(self, direction=self.direction + sign * other.direction, probe_weight_norm=None,
                       probe_intercept=None, provenance={"method": "arithmetic"})

    def __add__(self, other: "SteeringVector") -> "SteeringVector":
        return self._combine(other, 1.0)

    def __sub__(self, other: "SteeringVector") -> "SteeringVector":
        return self._combine(other, -1.0)

    def __mul__(self, scalar: float) -> "SteeringVector":
        if isinstance(scalar, SteeringVector) or not _is_scalar(scalar):
            return NotImplemented
        value = float(scalar)
        if not math.isfinite(value):
            raise ValueError(f"Cannot scale a steering vector by {value}: the factor must be finite.")
        return replace(self, direction=self.direction * value)

    __rmul__ = __mul__

    def __neg__(self) -> "SteeringVector":
        return self * -1.0

    def at(self, layers: int | Sequence[int]) -> "SteeringVector":
        """The same direction injected at other layer(s)."""
        return replace(self, layers=layers)

    # ------------------------------------------------------------ construction

    @classmethod
    def from_probe(cls, probe: Any, layer: int | None = None, **overrides: Any) -> "SteeringVector":
        """From any fitted steerlab probe or direction (RaptorProbe, DiffMeans, LDA...).

        The direction is the probe's unit raw-space ``concept_vector_``; the probe's weight
        norm and intercept travel along so ``mode="clamp"`` can target a probe probability.
        For a probe fitted per layer (``coef_`` ``[n_layers, d]``) pass the model ``layer``.
        """
        if getattr(probe, "coef_", None) is None:
            raise ValueError(f"{type(probe).__name__} is not fitted (no coef_): call fit first.")
        layer = None if layer is None else _layer_index(layer)
        coef = torch.as_tensor(probe.coef_, dtype=torch.float32)
        intercept = torch.as_tensor(probe.intercept_, dtype=torch.float32).reshape(-1)
        probe_layers = list(getattr(probe, "layers_", None) or [])
        if coef.ndim == 2 and coef.shape[0] == 1 and len(probe_layers) <= 1:
            coef = coef[0]  # sklearn-style [1, d] for a single binary probe
        slot = 0
        if coef.ndim == 2:
            if layer is None:
                raise ValueError(f"This probe was fitted at {coef.shape[0]} layers {probe_layers or ''}: pass layer=.")
            if probe_layers:
                if layer not in probe_layers:
                    raise ValueError(f"The probe has no layer {layer}; its layers are {probe_layers}.")
                slot = probe_layers.index(layer)
            else:
                slot = layer
            coef, intercept = coef[slot], intercept[slot]
        else:
            layer = layer if layer is not None else (probe_layers[0] if probe_layers else None)
            if layer is None:
                raise ValueError("The probe does not record its layer: pass layer=.")
            intercept = intercept[0]
        norms = getattr(probe, "activation_norm_", None)  # the training rows' median norm at that layer
        typical = None if norms is None else float(torch.as_tensor(norms).reshape(-1)[slot])
        coef = coef.to(torch.float32)
        metrics = {key: value for key, value in (getattr(probe, "metrics_", None) or {}).items()
                   if isinstance(value, (int, float, str))}
        fields = dict(direction=coef / coef.norm(), layers=layer, typical_norm=typical, site=getattr(probe, "site_", None) or "resid_post",
                      model_name=getattr(probe, "model_name_", None), probe_weight_norm=float(coef.norm()),
                      probe_intercept=float(intercept),
                      provenance={"method": type(probe).__name__, "position": getattr(probe, "position_", None),
                                  "model_provenance": getattr(probe, "model_provenance_", None),
                                  "C": _scalar_at(getattr(probe, "C_", None), probe_layers, layer), **metrics})
        return cls(**{**fields, **overrides})

    @classmethod
    def from_contrast_pairs(cls, model: ModelLike, positives: Sequence[str], negatives: Sequence[str], layer: int,
                            site: str = "resid_post", position: str | int = "last", batch_size: int = 32
                            ) -> "SteeringVector":
        """CAA (Rimsky et al., "Steering Llama 2 via Contrastive Activation Addition"): the mean of
        ``h(positive) - h(negative)`` over pairs at ``position``; with one pair this is ActAdd
        (Turner et al., "Activation Addition"). ``typical_norm`` is the median ``||h||`` of both sides' rows.
        """
        from steerlab.capture import capture

        layer = _layer_index(layer)
        if len(positives) != len(negatives):
            raise ValueError(f"Contrast pairs need as many positives as negatives ({len(positives)} vs {len(negatives)}).")
        positive = capture(model, positives, layers=[layer], site=site, position=position, batch_size=batch_size,
                           progress=False).values[:, 0]
        negative = capture(model, negatives, layers=[layer], site=site, position=position, batch_size=batch_size,
                           progress=False).values[:, 0]
        typical = float(torch.cat([positive, negative]).norm(dim=-1).median())
        return cls((positive - negative).mean(dim=0), layers=resolve_layer(layer, model.n_layers), site=site,
                   model_name=model.name, typical_norm=typical,
                   provenance={"method": "ActAdd" if len(positives) == 1 else "CAA", "n_pairs": len(positives),
                               "position": position, "model_provenance": getattr(model, "provenance", None)})

    @classmethod
    def from_sae_feature(cls, sae: SAE, feature: int, model_name: str | None = None) -> "SteeringVector":
        """An SAE decoder row ``W_dec[feature]`` (sae-lens), at the SAE's own hook point."""
        hook_name = sae.cfg.metadata.hook_name
        point = SitePoint.parse(hook_name)
        if not 0 <= feature < sae.W_dec.shape[0]:
            raise ValueError(f"Feature {feature} is out of range: the SAE has {sae.W_dec.shape[0]} latents.")
        return cls(sae.W_dec[feature].detach(), layers=point.layer, site=point.site, model_name=model_name,
                   provenance={"method": "SAE feature", "feature": feature, "hook_name": hook_name})

    def with_typical_norm(self, model: ModelLike, texts: Sequence[str]) -> "SteeringVector":
        """Record the median ``||h||`` at the vector's site and first layer over every token of ``texts``.

        The median, because BOS / attention-sink positions carry norms several times the
        others' (3x on the demo model) and would inflate a mean.
        """
        from steerlab.capture import capture

        values = capture(model, texts, layers=[self.layers[0]], site=self.site, position="all", progress=False).values
        return replace(self, typical_norm=float(values[:, 0].norm(dim=-1).median()))

    # ------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write ``path.safetensors`` (the direction) + ``path.json`` (site, layers, model, position, d_model, ...).

        See :func:`steerlab.artifacts.save_artifact`: symlinks are refused, files are replaced
        atomically and only with ``overwrite=True``.
        """
        metadata = {"site": self.site, "layers": list(self.layers), "model": self.model_name, "d_model": self.d_model,
                    "position": self.provenance.get("position"), "probe_weight_norm": self.probe_weight_norm,
                    "probe_intercept": self.probe_intercept, "typical_norm": self.typical_norm,
                    "provenance": self.provenance, "model_provenance": self.provenance.get("model_provenance")}
        return save_artifact(path, {"direction": self.direction}, metadata, kind=KIND, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SteeringVector":
        """Read a vector written by :meth:`save`, validated first (an ``ArtifactError`` names the file and problem)."""
        tensors, metadata = load_artifact(path, kind=KIND)
        with invalid_artifact(path, "a valid SteeringVector"):
            return cls(tensors["direction"], layers=metadata["layers"], site=metadata["site"],
                       model_name=metadata["model"], probe_weight_norm=metadata["probe_weight_norm"],
                       probe_intercept=metadata["probe_intercept"], typical_norm=metadata["typical_norm"],
                       provenance=metadata["provenance"])

    # ------------------------------------------------------------ llama.cpp control vectors

    def to_gguf(self, path: str | os.PathLike, alpha: float = 1.0, *, model: ModelLike = None,
                model_hint: str | None = None, mode: str = "add", positions: Any = "all", norm_units: bool = False,
                overwrite: bool = False) -> Path:
        """Write ``alpha * direction`` as a llama.cpp control vector (GGUF): ``direction.L`` for each layer L.

        llama.cpp (``--control-vector FILE``), repeng and EasySteer read it. llama.cpp adds it to
        the output of block L at every token, i.e. ``steer(model, self, alpha=alpha)`` at
        ``resid_post``. Refused with a clear error: other sites, layer 0 (llama.cpp cannot steer
        block 0's output), modes other than ``"add"``, positions other than ``"all"``. Pass
        ``model=`` to resolve negative layers and check layers / d_model against the model.
        See :mod:`steerlab.steering.control_vector_gguf`.

        Example:
            >>> v = SteeringVector(torch.ones(4), layers=[2, 3])    # doctest: +SKIP
            >>> v.to_gguf("happy.gguf", alpha=4.0)                # doctest: +SKIP
            # llama-cli -m model.gguf --control-vector happy.gguf
        """
        from steerlab.steering.control_vector_gguf import write_control_vector

        return write_control_vector(self, path, alpha, model=model, model_hint=model_hint, mode=mode,
                                    positions=positions, norm_units=norm_units, overwrite=overwrite)

    @classmethod
    def from_gguf(cls, path: str | os.PathLike) -> list["SteeringVector"]:
        """The vectors of a llama.cpp control-vector GGUF (steerlab's, repeng's, llama.cpp cvector-generator's).

        One :class:`SteeringVector` per distinct direction (at every layer that carries it), at
        ``resid_post``: ``steer(model, SteeringVector.from_gguf(path))`` adds what llama.cpp
        adds at strength 1. A vector written by :meth:`to_gguf` with ``alpha=1`` reads back
        exactly: ``[v] == SteeringVector.from_gguf(path)`` field by field.
        """
        from steerlab.steering.control_vector_gguf import read_control_vector

        return read_control_vector(path)


def _layer_index(layer: Any) -> int:
    """One layer index as an int (numpy / 0-d torch integers accepted; bool, float and str refused)."""
    if isinstance(layer, (bool, str, bytes)) or type(layer).__name__ == "bool_":
        raise TypeError(f"A layer must be an int, got {type(layer).__name__} ({layer!r}).")
    try:
        return operator.index(layer)
    except TypeError:
        raise TypeError(f"A layer must be an int, got {type(layer).__name__} ({layer!r}): "
                        "pass layers=3 or layers=[1, 2].") from None


def _layer_tuple(layers: Any) -> tuple[int, ...]:
    """``layers`` (one int or a sequence of ints, numpy integers included) as a non-empty tuple of ints."""
    if isinstance(layers, (str, bytes)):
        raise TypeError(f"layers must be an int or a list of ints, got the string {layers!r}.")
    try:
        return (_layer_index(layers),)
    except TypeError:
        pass
    if hasattr(layers, "tolist"):  # a numpy array or tensor of layer indices
        layers = layers.tolist()
        layers = layers if isinstance(layers, list) else [layers]
    try:
        items = list(layers)
    except TypeError:
        raise TypeError(f"layers must be an int or a list of ints, got {type(layers).__name__} ({layers!r}).") from None
    if not items:
        raise ValueError("A steering vector needs at least one layer: pass layers=3 or layers=[1, 2].")
    return tuple(_layer_index(layer) for layer in items)


def _is_scalar(value: Any) -> bool:
    """A real number: int, float, numpy scalar, or a one-element tensor / array (bool refused)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return False
    if hasattr(value, "ndim") and hasattr(value, "item"):
        return value.ndim == 0 and not isinstance(value.item(), bool)
    return isinstance(value, numbers.Real)


def _scalar_at(values: Any, layers: list[int], layer: int | None) -> float | None:
    if values is None:
        return None
    tensor = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if tensor.numel() == 1:
        return float(tensor[0])
    return float(tensor[layers.index(layer)]) if layers and layer in layers else None
