"""``steer``: inject steering vectors into every forward pass inside a ``with`` block."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, Union

import torch

from steerlab.models.adapter import ModelAdapter
from steerlab.models.token_positions import TokenPositions
from steerlab.steering import edits
from steerlab.steering.vector import SteeringVector

Positions = Union[str, int, tuple[int, int]]
MODES = ("add", "ablate", "set", "clamp")
POSITIONS = ("all", "prompt", "generated", "last")


@dataclass
class SteeringStats:
    """Counts kept while a ``steer`` block runs (useful to check clamp)."""

    forwards: int = 0
    edited_tokens: int = 0
    clamp_logits_after: list[torch.Tensor] = field(default_factory=list)

    def clamp_reached(self, target_probability: float, tolerance: float = 1e-3) -> float:
        """Fraction of clamp-edited tokens whose probe probability is at the target (within tolerance)."""
        if not self.clamp_logits_after:
            return float("nan")
        probabilities = torch.sigmoid(torch.cat(self.clamp_logits_after).double())
        return float(((probabilities - target_probability).abs() <= tolerance).double().mean())


def select_positions(tracker: TokenPositions, positions: Positions) -> torch.Tensor:
    """``[batch, pos]`` bool: which tokens of the current forward to edit."""
    if positions == "all":
        return tracker.real
    if positions == "last":
        return tracker.last()
    if positions in ("prompt", "generated"):
        prompt = tracker.position < tracker.prompt_length.unsqueeze(1)
        return tracker.real & (prompt if positions == "prompt" else ~prompt)
    if isinstance(positions, tuple):
        start, end = positions
        return tracker.real & (tracker.position >= start) & (tracker.position < end)
    return tracker.real & (tracker.position >= positions)


def _check_positions(positions: Positions) -> None:
    is_range = (isinstance(positions, tuple) and len(positions) == 2
                and all(isinstance(bound, int) and not isinstance(bound, bool) for bound in positions)
                and 0 <= positions[0] < positions[1])
    is_index = isinstance(positions, int) and not isinstance(positions, bool)
    if not (is_range or is_index or positions in POSITIONS):
        raise ValueError(f"positions must be one of {', '.join(POSITIONS)}, an int token index (that token on), "
                         f"or a (start, end) range of token indices, got {positions!r}.")


def _check_vector(model: ModelAdapter, vector: SteeringVector) -> None:
    if vector.d_model != model.d_model:
        raise ValueError(f"This vector has d_model={vector.d_model} but {model.name!r} has d_model={model.d_model}: "
                         "it was built for another model. Rebuild it on this model.")
    if vector.model_name is not None and _canonical(vector.model_name) != _canonical(model.name):
        raise ValueError(f"This vector was built on {vector.model_name!r}, not {model.name!r}. If that is intended "
                         "(e.g. the same weights under another name), use dataclasses.replace(vector, model_name=None) "
                         "in Python, or edit \"model\" in the vector's .json file.")


def _canonical(name: str) -> str:
    """A model name as loading records it: a local folder by its absolute path (older files stored it as typed)."""
    path = Path(name)
    return str(path.resolve()) if name != "demo" and path.is_dir() else name


def _site_function(vector: SteeringVector, mode: str, alpha: float, value: float | None,
                   tracker: TokenPositions, positions: Positions, stats: SteeringStats) -> Callable:
    if mode == "clamp" and (vector.probe_weight_norm is None or vector.probe_intercept is None):
        raise ValueError("mode='clamp' needs a vector built from a probe (SteeringVector.from_probe), "
                         "which knows the probe's weight norm and intercept.")
    if mode in ("set", "clamp") and value is None:
        raise ValueError(f"mode={mode!r} needs target=: the projection value (set) or the probe probability (clamp).")

    cast: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # per (device, dtype): once, not every step

    def fn(h: torch.Tensor) -> torch.Tensor:
        sel = select_positions(tracker, positions)
        key = (h.device, h.dtype)
        if key not in cast:
            cast[key] = (vector.direction.to(h.device, h.dtype), vector.unit.to(h.device, h.dtype))
        direction, unit = cast[key]
        stats.forwards += 1
        stats.edited_tokens += int(sel.sum())
        if mode == "add":
            return edits.add(h, sel, direction, alpha)
        if mode == "ablate":
            return edits.ablate(h, sel, unit)
        if mode == "set":
            return edits.set_projection(h, sel, unit, value)
        edited, mask = edits.clamp(h, sel, unit, vector.probe_weight_norm, vector.probe_intercept, value)
        after = edits.probe_logit(edited, unit, vector.probe_weight_norm, vector.probe_intercept)
        stats.clamp_logits_after.append(after[mask].detach().float().cpu())
        return edited

    return fn


@contextlib.contextmanager
def steer(model: ModelAdapter, vectors: SteeringVector | Sequence[SteeringVector], alpha: float | Sequence[float] = 1.0,
          positions: Positions = "all", mode: str = "add", target: float | None = None,
          norm_units: bool = False) -> Iterator[SteeringStats]:
    """Steer every forward of ``model`` inside the block (generation included, any backend).

    Args:
        model: a loaded :class:`~steerlab.models.ModelAdapter`.
        vectors: one :class:`SteeringVector` or several (each at its own site/layers).
        alpha: the coefficient(s) for ``mode="add"`` (one per vector, or one for all).
        positions: ``"all"`` (default), ``"prompt"``, ``"generated"``, ``"last"`` (each
            forward's last real token, i.e. every new token during generation), an int
            k (tokens at index >= k of their text), or ``(start, end)`` (indices start..end-1).
        mode: ``"add"``, ``"ablate"``, ``"set"`` (projection := ``target``) or ``"clamp"``
            (probe probability := ``target`` where not already past it).
        target: the value for ``set`` / the probability for ``clamp``.
        norm_units: alpha in units of the site's typical norm (needs ``vector.typical_norm``).

    Yields:
        :class:`SteeringStats`. Calls straight to ``model.hf_model`` are steered too. Hooks
        are removed on exit, also after an exception.

    Example:
        >>> with steerlab.steer(model, vector, alpha=4.0):           # doctest: +SKIP
        ...     model.generate(["the food was"], max_new_tokens=8)
    """
    vector_list = [vectors] if isinstance(vectors, SteeringVector) else list(vectors)
    if not vector_list:
        raise ValueError("No steering vectors given.")
    alphas = [alpha] * len(vector_list) if isinstance(alpha, (int, float)) else list(alpha)
    if len(alphas) != len(vector_list):
        raise ValueError(f"Got {len(alphas)} alphas for {len(vector_list)} vectors: give one, or one per vector.")
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}: choose one of {', '.join(MODES)}.")
    _check_positions(positions)

    stats = SteeringStats()
    fns = []
    with model.token_positions() as tracker:
        for vector, coefficient in zip(vector_list, alphas):
            _check_vector(model, vector)
            if norm_units:
                if vector.typical_norm is None:
                    raise ValueError("norm_units=True needs vector.typical_norm: use vector.with_typical_norm(model, texts).")
                # only the length changes: a probe's weight norm and bias stay, so clamp still works
                vector = dataclasses.replace(vector, direction=vector.unit * vector.typical_norm)
            fn = _site_function(vector, mode, float(coefficient), target, tracker, positions, stats)
            fns += [(model.point(point.site, point.layer), fn) for point in vector.points(model.n_layers)]
        with model.hooks(fns):
            yield stats
