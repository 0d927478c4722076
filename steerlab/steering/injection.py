"""``steer``: inject steering vectors into every forward pass inside a ``with`` block.

Every argument is checked when ``steer`` is called, before any hook is attached and
before any forward pass, with a message naming the problem and the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, Union

import torch

from steerlab.models.adapter import ModelAdapter
from steerlab.models import remote_edits
from steerlab.models.token_positions import TokenPositions
from steerlab.sites import READ_ONLY_SITES
from steerlab.steering import edits
from steerlab.steering.vector import SteeringVector

if TYPE_CHECKING:
    from steerlab.models.adapter import ModelLike

Positions = Union[str, int, tuple[int, int], tuple[int, None]]
MODES = ("add", "ablate", "set", "clamp")
STEER_POSITIONS = ("all", "prompt", "generated", "last")
TARGET_MODES = ("set", "clamp")

_POSITIONS_HELP = (f"positions must be one of {', '.join(repr(name) for name in STEER_POSITIONS)}, an int k (the k-th "
                   "token of each text; negative counts from the end, -1 is the last), a (start, end) range of "
                   "token indices (start..end-1, 0 <= start < end) or (start, None) (token start and after)")


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


# ---------------------------------------------------------------- scalar checks


def as_finite_float(value: Any, name: str) -> float:
    """``value`` (int, float, numpy scalar, 0-d tensor or array) as a finite float, else a clear error."""
    if isinstance(value, (bool, str, bytes)) or type(value).__name__ == "bool_":
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r}).")
    if hasattr(value, "ndim") and hasattr(value, "item"):  # torch tensor, numpy array or scalar
        if value.ndim != 0:
            raise TypeError(f"{name} must be one number, got an array of shape {tuple(value.shape)}.")
        value = value.item()
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r}).")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} is {value}: it must be a finite number.")
    return value


def as_index(value: Any, name: str) -> int:
    """An int (numpy and 0-d torch integers accepted; bool and float refused)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        raise TypeError(f"{name} must be an int, got a bool ({value!r}).")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r}).") from None


# ---------------------------------------------------------------- positions


def check_positions(positions: Any) -> Positions:
    """``positions`` normalised (numpy ints to int), or a ValueError listing the valid forms."""
    if isinstance(positions, str):
        if positions in STEER_POSITIONS:
            return positions
        raise ValueError(f"{_POSITIONS_HELP}; got the unknown string {positions!r}.")
    if isinstance(positions, tuple):
        return _check_range(positions)
    try:
        return as_index(positions, "positions")
    except TypeError:
        raise ValueError(f"{_POSITIONS_HELP}; got {positions!r}.") from None


def _check_range(positions: tuple) -> tuple[int, int | None]:
    try:
        start, end = positions
        start = as_index(start, "start")
        end = None if end is None else as_index(end, "end")
    except (TypeError, ValueError):
        raise ValueError(f"{_POSITIONS_HELP}; got {positions!r}.") from None
    if start < 0 or (end is not None and end <= start):
        raise ValueError(f"{_POSITIONS_HELP}; got {positions!r} (a range needs 0 <= start < end).")
    return start, end


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
        selected = tracker.real & (tracker.position >= start)
        return selected if end is None else selected & (tracker.position < end)
    return _token_at(tracker, operator.index(positions))


def _token_at(tracker: TokenPositions, k: int) -> torch.Tensor:
    """The k-th token of each row's prompt (negative: from the prompt's end), as capture's ``position=k``.

    Checked against each text's length on a forward that starts a text (the prompt pass);
    later cached generation steps hold only generated tokens, so nothing is selected there.
    """
    length = tracker.prompt_length  # [batch]
    starts = ((tracker.position == 0) & tracker.real).any(dim=1)  # rows whose first token is in this forward
    if starts.any():
        shortest = int(length[starts].min())
        if not -shortest <= k < shortest:
            row = int(torch.where(starts, length, length.max() + 1).argmin())
            raise ValueError(f"positions={k} is outside a text of {shortest} tokens (row {row} of this batch): use "
                             f"-{shortest}..{shortest - 1} (the k-th token; negative counts from the end), or "
                             "positions='last' / (start, None).")
    index = length + k if k < 0 else torch.full_like(length, k)
    return tracker.real & (tracker.position == index.unsqueeze(1))


# ---------------------------------------------------------------- the other arguments


def _check_model(model: ModelLike) -> None:
    if not isinstance(model, ModelAdapter):
        raise TypeError(f"steer needs a model loaded by steerlab, got {type(model).__name__}: use "
                        "model = steerlab.load_model(name) (or steerlab.load_model(hf_model, tokenizer=tokenizer)).")


def _check_vector_list(vectors: Any) -> list[SteeringVector]:
    vector_list = [vectors] if isinstance(vectors, SteeringVector) else vectors
    if isinstance(vector_list, (torch.Tensor, str, bytes)) or not isinstance(vector_list, Sequence):
        raise TypeError(f"vectors must be a SteeringVector or a list of them, got {type(vectors).__name__}: wrap a "
                        "tensor as SteeringVector(direction, layers=..., model_name=model.name).")
    vector_list = list(vector_list)
    if not vector_list:
        raise ValueError("No steering vectors given: pass one SteeringVector or a non-empty list.")
    for vector in vector_list:
        if not isinstance(vector, SteeringVector):
            raise TypeError(f"Every steering vector must be a SteeringVector, got {type(vector).__name__}: wrap a "
                            "tensor as SteeringVector(direction, layers=..., model_name=model.name).")
    return vector_list


def _check_vector(model: ModelAdapter, vector: SteeringVector) -> None:
    """Refuse a vector built for another model, at a layer or site the model lacks, or of length zero."""
    if vector.d_model != model.d_model:
        built_on = f" (built on {vector.model_name!r})" if vector.model_name else ""
        raise ValueError(f"This vector has d_model={vector.d_model}{built_on} but {model.name!r} has "
                         f"d_model={model.d_model}: it was built for another model. Rebuild it on this model.")
    if vector.model_name is not None and _canonical(vector.model_name) != _canonical(model.name):
        raise ValueError(f"This vector was built on {vector.model_name!r}, not {model.name!r}. If that is intended "
                         "(e.g. the same weights under another name), use dataclasses.replace(vector, model_name=None) "
                         "in Python, or edit \"model\" in the vector's .json file.")
    for point in vector.points(model.n_layers):  # raises for a layer out of range
        model.point(point.site, point.layer)  # raises for a site this architecture lacks
    if vector.site in READ_ONLY_SITES:
        raise ValueError(f"Cannot steer at {vector.site!r}: it is read-only (an edit there would change the pre-MLP "
                         "norm's input, not the residual stream). Use vector.at(...) with site resid_pre/resid_post "
                         "(dataclasses.replace(vector, site='resid_post')).")
    if vector.norm == 0.0:
        raise ValueError("This steering vector's direction is all zeros: steering with it changes nothing "
                         "(a difference of two equal vectors?). Build it from data (from_probe, from_contrast_pairs).")


def _canonical(name: str) -> str:
    """A model name as loading records it: a local folder by its absolute path (older files stored it as typed)."""
    path = Path(name)
    return str(path.resolve()) if name != "demo" and path.is_dir() else name


def _check_alphas(alpha: Any, n_vectors: int, mode: str) -> list[float] | list[torch.Tensor]:
    """One finite float per vector (a number for all, or a sequence / 1-d array of one per vector), or
    per-row alphas: a ``[n_vectors, batch]`` tensor gives one ``[batch]`` row of coefficients per vector."""
    if isinstance(alpha, torch.Tensor) and alpha.ndim == 2:
        return _check_row_alphas(alpha, n_vectors, mode)
    is_many = isinstance(alpha, Sequence) and not isinstance(alpha, (str, bytes))
    is_many = is_many or (hasattr(alpha, "ndim") and getattr(alpha, "ndim") == 1)
    if not is_many:
        return [as_finite_float(alpha, "alpha")] * n_vectors
    alphas = [as_finite_float(value, f"alpha[{i}]") for i, value in enumerate(alpha)]
    if len(alphas) != n_vectors:
        raise ValueError(f"Got {len(alphas)} alphas for {n_vectors} vectors: give one, or one per vector.")
    return alphas


def _check_row_alphas(alpha: torch.Tensor, n_vectors: int, mode: str) -> list[torch.Tensor]:
    """``[n_vectors, batch]`` per-row coefficients, one ``[batch]`` float tensor per vector (mode='add' only)."""
    if mode != "add":
        raise ValueError(f"Per-row alphas (a [n_vectors, batch] tensor) scale mode='add' only, not mode={mode!r}.")
    if alpha.shape[0] != n_vectors or alpha.shape[1] < 1:
        raise ValueError(f"Per-row alphas have shape {tuple(alpha.shape)} for {n_vectors} vectors: give a "
                         f"[{n_vectors}, batch] tensor (one row of coefficients per vector, one column per text).")
    if not alpha.is_floating_point() or not bool(torch.isfinite(alpha).all()):
        raise ValueError("Per-row alphas must be finite floating-point numbers.")
    return list(alpha.detach())


def _check_mode(mode: Any) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}: choose one of {', '.join(MODES)}.")
    return mode


def _check_target(mode: str, target: Any, vectors: list[SteeringVector]) -> float | None:
    """The target for set / clamp, None otherwise; a clamp target is a probe probability in (0, 1)."""
    if mode not in TARGET_MODES:
        if target is not None:
            raise ValueError(f"target is only used by mode='set' or 'clamp', not mode={mode!r}: drop target=, or "
                             "pass mode='set' (projection := target) / mode='clamp' (probe probability := target).")
        return None
    if target is None:
        raise ValueError(f"mode={mode!r} needs target=: the projection value (set) or the probe probability (clamp).")
    value = as_finite_float(target, "target")
    if mode == "clamp":
        if not 0.0 < value < 1.0:
            raise ValueError(f"The clamp target is a probe probability strictly between 0 and 1, got {value}: "
                             "e.g. target=0.99 (toward the concept) or 0.01 (away from it).")
        for vector in vectors:
            _check_clampable(vector)
    return value


def _check_clampable(vector: SteeringVector) -> None:
    weight_norm, intercept = vector.probe_weight_norm, vector.probe_intercept
    usable = (weight_norm is not None and intercept is not None and math.isfinite(weight_norm)
              and math.isfinite(intercept) and weight_norm > 0)
    if not usable:
        raise ValueError(f"mode='clamp' needs a vector built from a probe (SteeringVector.from_probe), which knows the "
                         f"probe's weight norm and intercept; this one has probe_weight_norm={weight_norm!r}, "
                         f"probe_intercept={intercept!r} (arithmetic on vectors drops them). Rebuild it with "
                         "SteeringVector.from_probe(probe, layer=...).")


def _in_norm_units(vector: SteeringVector) -> SteeringVector:
    """The vector rescaled to its ``typical_norm`` (only the length changes: clamp still works)."""
    if vector.typical_norm is None or not math.isfinite(vector.typical_norm) or vector.typical_norm <= 0:
        raise ValueError(f"norm_units=True needs a positive vector.typical_norm (got {vector.typical_norm!r}): "
                         "use vector.with_typical_norm(model, texts).")
    return dataclasses.replace(vector, direction=vector.unit * vector.typical_norm)


# ---------------------------------------------------------------- the hook


def _site_function(vector: SteeringVector, mode: str, alpha: float | torch.Tensor, value: float | None,
                   tracker: TokenPositions, positions: Positions, stats: SteeringStats) -> Callable:
    """The site function editing ``h [batch, pos, d_model]`` at the selected tokens (arguments already checked).

    A tensor ``alpha`` holds one coefficient per row of the batch (``[batch]``, mode='add').
    The vector, the selection and the alphas follow ``h`` to its device and dtype: on a model
    spread over devices (a ``device_map``), a later block's activation lives on another GPU
    than the inputs (where the token positions are tracked) and than the vector (cpu).
    """
    cast: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # per (device, dtype): once, not every step

    def fn(h: torch.Tensor) -> torch.Tensor:
        sel = select_positions(tracker, positions).to(h.device)
        key = (h.device, h.dtype)
        if key not in cast:
            cast[key] = (vector.direction.to(h.device, h.dtype), vector.unit.to(h.device, h.dtype))
        direction, unit = cast[key]
        stats.forwards += 1
        stats.edited_tokens += int(sel.sum())
        if mode == "add":
            return edits.add(h, sel, direction, alpha if not isinstance(alpha, torch.Tensor) else _rows(alpha, h))
        if mode == "ablate":
            return edits.ablate(h, sel, unit)
        if mode == "set":
            return edits.set_projection(h, sel, unit, value)
        edited, mask = edits.clamp(h, sel, unit, vector.probe_weight_norm, vector.probe_intercept, value)
        after = edits.probe_logit(edited, unit, vector.probe_weight_norm, vector.probe_intercept)
        stats.clamp_logits_after.append(after[mask].detach().float().cpu())
        return edited

    def plain_edit() -> dict:
        """This edit for the current forward as plain data, for a remote (NDIF) trace
        (:mod:`steerlab.models.remote_edits`): the adapter feeds ``tracker`` before each call."""
        sel = select_positions(tracker, positions)
        stats.forwards += 1
        stats.edited_tokens += int(sel.sum())
        rows = alpha.unsqueeze(1) if isinstance(alpha, torch.Tensor) else alpha
        if isinstance(alpha, torch.Tensor) and alpha.shape[0] != sel.shape[0]:
            _rows(alpha, sel)  # raises the per-row alphas message
        return remote_edits.plain_edit(mode, sel, direction=vector.direction, unit=vector.unit, alpha=rows,
                                       value=value, weight_norm=vector.probe_weight_norm,
                                       intercept=vector.probe_intercept)

    fn.plain_edit = plain_edit
    fn.clamp_logits_after = stats.clamp_logits_after  # where a remote trace's clamp readouts go
    return fn


def _rows(alpha: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Per-row alphas ``[batch]`` as ``[batch, 1]`` on ``h``'s device and dtype; the batch must match."""
    if alpha.shape[0] != h.shape[0]:
        raise ValueError(f"Per-row alphas were given for {alpha.shape[0]} rows, but this forward pass has "
                         f"{h.shape[0]}: give one column of alphas per text of each forward.")
    return alpha.to(h.device, h.dtype).unsqueeze(1)


@contextlib.contextmanager
def steer(model: ModelAdapter, vectors: SteeringVector | Sequence[SteeringVector], alpha: float | Sequence[float] = 1.0,
          positions: Positions = "all", mode: str = "add", target: float | None = None,
          norm_units: bool = False) -> Iterator[SteeringStats]:
    """Steer every forward of ``model`` inside the block (generation included, any backend).

    Args:
        model: a loaded :class:`~steerlab.models.ModelAdapter`.
        vectors: one :class:`SteeringVector` or several (each at its own site/layers).
        alpha: the coefficient(s) for ``mode="add"`` (one per vector, or one for all): a
            finite number (float, int, numpy scalar or 0-d tensor). Per-row alphas: a
            ``[n_vectors, batch]`` float tensor scales vector ``v`` by ``alpha[v, i]`` in row
            ``i`` of every forward inside the block, whose batch must then have ``batch`` rows
            (many alphas in one batched forward: :func:`steerlab.steering.steering_sweep`).
        positions: which tokens, by their index in their own text (left padding and the
            KV cache accounted for):

            * ``"all"`` (default), ``"prompt"``, ``"generated"``;
            * ``"last"``: each forward's last real token, i.e. the prompt's last token and
              then every new token during generation;
            * an int k: the k-th token of each text, as capture's ``position=k`` (negative
              counts from the end: -1 is the last token). During generation an int refers
              to the PROMPT: -1 is the prompt's last token, steered in the prompt pass only;
              the cached steps that follow (one new token each) are not steered. Use
              ``"last"`` or ``"generated"`` to steer the new tokens. A k outside a text
              (``k >= length`` or ``k < -length``) raises a ValueError on that forward;
            * ``(start, end)``: indices start..end-1; ``(start, None)``: start and after.
        mode: ``"add"``, ``"ablate"``, ``"set"`` (projection := ``target``) or ``"clamp"``
            (probe probability := ``target`` where not already past it).
        target: the value for ``set`` / the probability in (0, 1) for ``clamp`` (which needs
            a vector from :meth:`SteeringVector.from_probe`); an error for add / ablate.
        norm_units: alpha in units of the site's typical norm (needs ``vector.typical_norm``).

    Yields:
        :class:`SteeringStats`. Calls straight to ``model.hf_model`` are steered too. Hooks
        are removed on exit, also after an exception.

    Raises:
        ValueError / TypeError: on a bad argument, at the call, before any hook or forward.
        RuntimeError: when another thread holds steerlab hooks on this model.

    Threads: steering hooks live on the model object, so they are per model, not per thread.
    While the block is open, a forward pass of this model from any other thread raises a
    RuntimeError (it would be steered too), and a ``steer`` / ``record`` / ``edit`` on it from
    another thread raises at its call. Use one model object per thread (``copy.deepcopy(model)``
    before steering, or load it again), or serialize the calls (a lock around each block).

    Example:
        >>> with steerlab.steer(model, vector, alpha=4.0):           # doctest: +SKIP
        ...     model.generate(["the food was"], max_new_tokens=8)
    """
    _check_model(model)
    vector_list = _check_vector_list(vectors)
    for vector in vector_list:
        _check_vector(model, vector)
    mode = _check_mode(mode)
    alphas = _check_alphas(alpha, len(vector_list), mode)
    value = _check_target(mode, target, vector_list)
    positions = check_positions(positions)
    if not isinstance(norm_units, bool):
        raise TypeError(f"norm_units must be True or False, got {norm_units!r}.")
    if norm_units:
        vector_list = [_in_norm_units(vector) for vector in vector_list]

    stats = SteeringStats()
    with model.token_positions() as tracker:  # claims the model for this thread (see Threads above)
        fns = [(model.point(point.site, point.layer),
                _site_function(vector, mode, coefficient, value, tracker, positions, stats))
               for vector, coefficient in zip(vector_list, alphas) for point in vector.points(model.n_layers)]
        with model.hooks(fns):
            yield stats
