"""Hook utilities usable on their own: read or edit sites during forward and generate.

Everything here goes through :meth:`ModelAdapter.hooks`, so it behaves the same on
every backend, and every hook is removed on exit, also when the block raises.

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
from collections import defaultdict
from typing import Callable, Iterator, Sequence

import torch

from steerlab.models.adapter import ModelAdapter
from steerlab.sites import SitePoint, resolve_layers


def _points(model: ModelAdapter, site: str, layers: int | Sequence[int] | None) -> list[SitePoint]:
    return [model.point(site, layer) for layer in resolve_layers(layers, model.n_layers)]


@contextlib.contextmanager
def record(model: ModelAdapter, site: str = "resid_post", layers: int | Sequence[int] | None = None
           ) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record a site at each layer on every forward inside the block.

    Yields a dict ``hook_name -> [activation per forward]``, each ``[batch, pos, d_model]``
    (detached copies; during cached generation later steps are ``[batch, 1, d_model]``).
    """
    recorded: dict[str, list[torch.Tensor]] = defaultdict(list)

    def keep(point: SitePoint) -> Callable[[torch.Tensor], None]:
        return lambda activation: recorded[point.hook_name].append(activation.detach().clone())

    with model.hooks([(point, keep(point)) for point in _points(model, site, layers)]):
        yield recorded


@contextlib.contextmanager
def edit(model: ModelAdapter, fn: Callable[[torch.Tensor, SitePoint], torch.Tensor], site: str = "resid_post",
         layers: int | Sequence[int] | None = None) -> Iterator[None]:
    """Replace a site's activation by ``fn(activation, point)`` on every forward inside the block."""
    def at(point: SitePoint) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda activation: fn(activation, point)

    with model.hooks([(point, at(point)) for point in _points(model, site, layers)]):
        yield


@contextlib.contextmanager
def no_leftover_hooks(model: ModelAdapter) -> Iterator[None]:
    """Raise if the block leaves any hook behind on the model (a check for your own hook code)."""
    before = model.hook_snapshot()
    yield
    leftover = model.hook_snapshot() - before
    if leftover:
        places = ", ".join(sorted({f"{name or '<root>'}.{kind}" for name, kind, _ in leftover}))
        raise RuntimeError(f"{len(leftover)} hook(s) left behind on: {places}. Remove them (handle.remove()).")
