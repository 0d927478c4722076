"""Hook sites: where in a transformer block activations are read or edited.

A *site* is a position in the residual-stream computation of one block, named as
in TransformerLens (``blocks.{layer}.hook_{site}``)::

    resid_pre  -> attention -> attn_out -> (+) resid_mid -> MLP -> mlp_out -> (+) resid_post

``resid_post`` of layer ``l`` is the output of block ``l`` (it is ``resid_pre`` of
layer ``l + 1``). For the last block this is *not* ``hidden_states[-1]`` of a
transformers model, which has the final norm applied.

Example:
    >>> from steerlab.sites import SitePoint
    >>> SitePoint("resid_post", 2).hook_name
    'blocks.2.hook_resid_post'
    >>> SitePoint.parse("blocks.0.hook_mlp_out")
    SitePoint(site='mlp_out', layer=0)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

# In execution order inside one block (needed by backends that must visit sites in order).
SITES: tuple[str, ...] = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")

# resid_mid is observed at the input of the pre-MLP norm; changing that input does not
# change the residual stream that the MLP output is added to, so edits there would
# silently mean something else. It is read-only on every backend.
READ_ONLY_SITES: frozenset[str] = frozenset({"resid_mid"})

_HOOK_NAME = re.compile(r"^blocks\.(\d+)\.hook_([a-z_]+)$")


def validate_site(site: str) -> str:
    """Return ``site`` if it is a known site name, else raise a ValueError naming the options."""
    if site not in SITES:
        raise ValueError(
            f"Unknown site {site!r}. Choose one of {', '.join(SITES)} "
            "(TransformerLens names without the 'hook_' prefix)."
        )
    return site


def resolve_layer(layer: int, n_layers: int) -> int:
    """Map a possibly negative layer index to ``0..n_layers-1``, or raise a clear error."""
    if not isinstance(layer, int) or isinstance(layer, bool):
        raise TypeError(f"A layer must be an int, got {type(layer).__name__} ({layer!r}).")
    if not -n_layers <= layer < n_layers:
        raise ValueError(
            f"Layer {layer} is out of range: the model has {n_layers} layers, "
            f"so use 0..{n_layers - 1} (or -{n_layers}..-1 counting from the end)."
        )
    return layer % n_layers


def resolve_layers(layers: int | Iterable[int] | None, n_layers: int) -> list[int]:
    """``None`` means every layer; ints may be negative. Order is kept, duplicates removed."""
    if layers is None:
        return list(range(n_layers))
    if isinstance(layers, int):
        layers = [layers]
    resolved: list[int] = []
    for layer in layers:
        index = resolve_layer(layer, n_layers)
        if index not in resolved:
            resolved.append(index)
    if not resolved:
        raise ValueError("layers is empty: pass None for every layer, or at least one layer index.")
    return resolved


@dataclass(frozen=True, order=True)
class SitePoint:
    """One site at one (non-negative) layer.

    Ordering follows execution: ``sorted(points)`` is the order a forward pass reaches them.
    """

    site: str
    layer: int

    def __post_init__(self) -> None:
        validate_site(self.site)
        if self.layer < 0:
            raise ValueError("SitePoint needs a resolved (non-negative) layer; use resolve_layer first.")

    @property
    def hook_name(self) -> str:
        """The TransformerLens hook name, e.g. ``blocks.3.hook_resid_post``."""
        return f"blocks.{self.layer}.hook_{self.site}"

    @property
    def execution_key(self) -> tuple[int, int]:
        return (self.layer, SITES.index(self.site))

    @classmethod
    def parse(cls, hook_name: str) -> "SitePoint":
        """Parse a TransformerLens hook name such as ``blocks.2.hook_resid_post``."""
        match = _HOOK_NAME.match(hook_name)
        if not match:
            raise ValueError(
                f"Cannot parse hook name {hook_name!r}: expected 'blocks.<layer>.hook_<site>' "
                f"with a site in {', '.join(SITES)}."
            )
        return cls(site=match.group(2), layer=int(match.group(1)))


def site_points(site: str, layers: Sequence[int]) -> list[SitePoint]:
    """The points of one site at several resolved layers."""
    return [SitePoint(validate_site(site), layer) for layer in layers]
