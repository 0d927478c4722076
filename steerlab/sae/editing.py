"""Running the model through an SAE: splice in its reconstruction, or edit latents keeping the error.

* :func:`sae_splice`: the site's activation ``x`` is replaced by ``decode(encode(x))`` (how
  CE-loss-with-SAE is measured: what the model loses when it only sees the SAE's view).
* :func:`sae_edit`: latents are edited and the SAE's *error term* is kept:
  ``x -> decode(edited) + (x - decode(latents))``, computed as
  ``x + (decode(edited) - decode(latents))`` so that only the edit's change passes through the
  SAE's dtype (a bf16 SAE would otherwise round ``x`` itself). Unedited, this is ``x`` exactly
  (no hook is installed), so only the edit changes the model; without the error term an edit is
  lost in the reconstruction error (sae-lens ``use_error_term``; Marks et al., "Sparse Feature
  Circuits").

Activations go to the SAE's device and dtype and the result comes back to the model's, so a
CUDA model works with a CPU SAE (and the reverse). Both skip the first token by default
(``skip_first``: BOS where the tokenizer adds one, else the first word: an attention sink the SAE
was not trained on, see :mod:`steerlab.sae.activations`) and go
through :meth:`ModelAdapter.hooks`, so they work during ``generate`` on every backend and are
removed on exit, also after an exception.

Example:
    >>> import steerlab
    >>> from steerlab.sae import load_sae, sae_edit
    >>> model = steerlab.load_model("demo"); sae = load_sae("demo", model=model)      # doctest: +SKIP
    >>> with sae_edit(model, sae, {42: 10.0}):          # latent 42 := 10 at every token  # doctest: +SKIP
    ...     model.generate(["the food was"], max_new_tokens=2)
    >>> with sae_edit(model, sae, {42: lambda a: 3 * a}):   # or any function of the latent  # doctest: +SKIP
    ...     ...
"""

from __future__ import annotations

import contextlib
import operator
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Union

import torch

from steerlab.sae.loading import check_sae
from steerlab.steering.injection import Positions, check_positions, select_positions

if TYPE_CHECKING:
    from sae_lens import SAE
    from steerlab.models.adapter import ModelLike

LatentEdit = Union[float, Callable[[torch.Tensor], torch.Tensor]]


def _apply_edits(latents: torch.Tensor, edits: Mapping[int, LatentEdit]) -> torch.Tensor:
    """``[n, d_sae]`` latents with each ``feature`` set to a value or mapped by a function of its column ``[n]``."""
    edited = latents.clone()
    for feature, change in edits.items():
        column = edited[:, feature]
        edited[:, feature] = change(column) if callable(change) else torch.full_like(column, float(change))
    return edited


def _check_edits(sae: SAE, edits: Mapping[int, LatentEdit]) -> dict[int, LatentEdit]:
    """``edits`` with plain-int keys (numpy / torch integers accepted); raise on anything else or out of range."""
    checked = {}
    for feature, change in edits.items():
        try:
            index = operator.index(feature)
        except TypeError:
            index = None
        if index is None or isinstance(feature, bool) or not 0 <= index < sae.cfg.d_sae:
            raise ValueError(f"Feature {feature!r} is not a latent index of this SAE (0..{sae.cfg.d_sae - 1}): "
                             "pass integer feature ids.")
        checked[index] = change
    return checked


def _site_function(sae: SAE, edits: Mapping[int, LatentEdit], keep_error: bool, tracker: Any,
                   positions: Positions, skip_first: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The hook: ``h`` ``[batch, pos, d_model]`` with the selected tokens (not the first when ``skip_first``)
    run through the SAE."""
    weight = sae.W_enc
    first = 1 if skip_first else 0

    def fn(h: torch.Tensor) -> torch.Tensor:
        selected = select_positions(tracker, positions) & (tracker.position >= first)  # [batch, pos]
        x = h[selected]  # [n, d_model], the model's device and dtype
        with torch.no_grad():
            latents = sae.encode(x.to(weight.device, weight.dtype))  # [n, d_sae], the SAE's device and dtype
            edited = _apply_edits(latents, edits) if edits else latents
            if keep_error:  # x + (decode(edited) - decode(latents)): x never rounds to the SAE's dtype
                out = x + (sae.decode(edited) - sae.decode(latents)).to(h.device, h.dtype)
            else:
                out = sae.decode(edited).to(h.device, h.dtype)
        result = h.clone()
        result[selected] = out
        return result
    return fn


@contextlib.contextmanager
def _through_sae(model: ModelLike, sae: SAE, edits: Mapping[int, LatentEdit], keep_error: bool,
                 positions: Positions, skip_first: bool) -> Iterator[None]:
    point = check_sae(sae, model)
    edits = _check_edits(sae, edits)
    check_positions(positions)
    if keep_error and not edits:  # nothing to change: the model runs untouched
        yield
        return
    with model.token_positions() as tracker:
        fn = _site_function(sae, edits, keep_error, tracker, positions, skip_first)
        with model.hooks([(model.point(point.site, point.layer), fn)]):
            yield


@contextlib.contextmanager
def sae_splice(model: ModelLike, sae: SAE, positions: Positions = "all", skip_first: bool = True) -> Iterator[None]:
    """Replace the SAE's site by its reconstruction on every forward inside the block (error dropped).

    ``positions`` as in :func:`steerlab.steer`; the first token is left as it is unless
    ``skip_first=False`` (for an SAE trained on every position).
    """
    with _through_sae(model, sae, {}, keep_error=False, positions=positions, skip_first=skip_first):
        yield


@contextlib.contextmanager
def sae_edit(model: ModelLike, sae: SAE, edits: Mapping[int, LatentEdit], positions: Positions = "all",
             keep_error: bool = True, skip_first: bool = True) -> Iterator[None]:
    """Edit SAE latents on every forward inside the block, keeping the reconstruction error.

    Args:
        model: a :class:`~steerlab.models.ModelAdapter` the SAE fits.
        sae: a sae-lens SAE (its ``cfg.metadata.hook_name`` says where it hooks in).
        edits: ``{feature: value}`` (set the latent) or ``{feature: fn}`` (``fn`` maps the
            latent's values ``[n_tokens]`` to new ones, e.g. ``lambda a: 4 * a``).
        positions: which tokens, as in :func:`steerlab.steer` (``"all"``, ``"last"``, ...).
        keep_error: keep ``x - decode(encode(x))`` (default): the site becomes
            ``x + decode(edited) - decode(latents)``, and with no edit the model is untouched.
            False splices the edited reconstruction alone.
        skip_first: leave each text's first token alone (default; the attention sink, outside
            the SAE's training data); False for an SAE trained on every position.
    """
    with _through_sae(model, sae, edits, keep_error=keep_error, positions=positions, skip_first=skip_first):
        yield
