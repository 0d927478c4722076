"""Hook utilities usable on their own: read or edit sites during forward and generate.

Everything here goes through :meth:`ModelAdapter.hooks`, so it behaves the same on
every backend, and every hook is removed on exit, also when the block raises.

Hooks are per model, not per thread: while a block is open, a forward pass of the same
model from another thread raises a RuntimeError (it would run the hooks too), and so does
opening a block on it from another thread. Use one model object per thread
(``copy.deepcopy(model)`` or load it again), or serialize the calls.

Example:
    >>> import steerlab, torch
    >>> model = steerlab.load_model("demo")                                   # doctest: +SKIP
    >>> with steerlab.record(model, "resid_post", layers=[1]) as rec:         # doctest: +SKIP
    ...     model.generate(["q : where is Varo ? a :"], max_new_tokens=3)
    >>> rec["blocks.1.hook_resid_post"][0].shape   # first forward: the prompt   # doctest: +SKIP
    >>> shift = torch.randn(model.d_model)
    >>> with steerlab.edit(model, lambda h, point: h + shift, layers=[1]):    # doctest: +SKIP
    ...     model.generate(["q : where is Varo ? a :"], max_new_tokens=3)
"""

from __future__ import annotations

import contextlib
import operator
from collections import defaultdict
from typing import Any, Callable, Iterator, Sequence

import torch

from steerlab.models.adapter import ModelAdapter
from steerlab.sites import READ_ONLY_SITES, SitePoint, resolve_layers, validate_site


def _layer_list(layers: Any) -> list[int] | None:
    """``layers`` as plain ints (numpy / 0-d torch integers accepted), None kept (every layer)."""
    if layers is None:
        return None
    if hasattr(layers, "tolist"):  # numpy array / scalar or tensor
        layers = layers.tolist()
    items = layers if isinstance(layers, (list, tuple, range)) else [layers]
    if any(isinstance(layer, (bool, str, bytes)) or not hasattr(layer, "__index__") for layer in items):
        raise TypeError(f"layers must be an int, a list of ints or None (every layer), got {layers!r}.")
    return [operator.index(layer) for layer in items]


def _points(model: ModelAdapter, site: str, layers: int | Sequence[int] | None) -> list[SitePoint]:
    """The validated points of ``site`` at ``layers`` (checked before anything is attached)."""
    if not isinstance(model, ModelAdapter):
        raise TypeError(f"Expected a model loaded by steerlab, got {type(model).__name__}: use "
                        "model = steerlab.load_model(name) (or steerlab.load_model(hf_model, tokenizer=tokenizer)).")
    if not isinstance(site, str):
        raise TypeError(f"site must be a site name such as 'resid_post', got {type(site).__name__} ({site!r}).")
    validate_site(site)
    return [model.point(site, layer) for layer in resolve_layers(_layer_list(layers), model.n_layers)]


@contextlib.contextmanager
def record(model: ModelAdapter, site: str = "resid_post", layers: int | Sequence[int] | None = None
           ) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record a site at each layer on every forward inside the block.

    Yields a dict ``hook_name -> [activation per forward]``, each ``[batch, pos, d_model]``
    (detached copies; during cached generation later steps are ``[batch, 1, d_model]``).

    The hooks are per model: while the block is open, forwards of this model from other
    threads raise a RuntimeError (see the module docstring).
    """
    recorded: dict[str, list[torch.Tensor]] = defaultdict(list)

    def keep(point: SitePoint) -> Callable[[torch.Tensor], None]:
        return lambda activation: recorded[point.hook_name].append(activation.detach().clone())

    fns = [(point, keep(point)) for point in _points(model, site, layers)]
    with model.hooks(fns):
        yield recorded


@contextlib.contextmanager
def edit(model: ModelAdapter, fn: Callable[[torch.Tensor, SitePoint], torch.Tensor], site: str = "resid_post",
         layers: int | Sequence[int] | None = None) -> Iterator[None]:
    """Replace a site's activation by ``fn(activation, point)`` on every forward inside the block.

    ``fn`` must return a tensor of the activation's shape. The hooks are per model: while the
    block is open, forwards of this model from other threads raise a RuntimeError (see the
    module docstring).
    """
    if not callable(fn):
        raise TypeError(f"fn must be a function (activation, point) -> activation, got {type(fn).__name__}.")
    if site in READ_ONLY_SITES:
        raise ValueError(f"Cannot edit {site!r}: it is read-only (an edit there would change the pre-MLP norm's "
                         "input, not the residual stream). Edit attn_out, or resid_pre/resid_post instead; "
                         "record() can read it.")

    def at(point: SitePoint) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda activation: fn(activation, point)

    fns = [(point, at(point)) for point in _points(model, site, layers)]
    with model.hooks(fns):
        yield


@contextlib.contextmanager
def no_leftover_hooks(model: ModelAdapter) -> Iterator[None]:
    """Raise if the block leaves any hook behind on the model (a check for your own hook code).

    Hooks the model's own library registers for itself (TransformerLens' bridge wires some on
    its first forward pass) are not leftovers; see :meth:`ModelAdapter.hook_snapshot`.
    """
    before = model.hook_snapshot()
    yield
    leftover = model.hook_snapshot() - before
    if leftover:
        places = ", ".join(sorted({f"{name or '<root>'}.{kind}" for name, kind, _ in leftover}))
        raise RuntimeError(f"{len(leftover)} hook(s) left behind on: {places}. Remove them (handle.remove()).")
