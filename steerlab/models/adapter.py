"""The model adapter: the ONE place where backends differ.

Every stage of steerlab (capture, probes, steering, SAEs) talks to a
:class:`ModelAdapter` through five operations, and never asks which backend it is:

* ``adapter.tokenize(texts)``: the tokenizer's own ids, padded by steerlab;
* ``adapter.forward(batch, fns)``: one forward pass with *site functions* applied;
* ``adapter.read(batch, fns)``: the same pass cut short after the deepest site in ``fns``
  (no later blocks, no logits), for capture;
* ``adapter.hooks(fns)``: a context manager keeping site functions on every forward
  (and every generation step) run inside it, removed on exit and on exceptions;
* ``adapter.generate(texts, ...)``: greedy or sampled continuations, optionally with
  site functions applied at every step.

A site function is ``fn(activation) -> Tensor | None`` on ``[batch, pos, d_model]``:
returning None reads, returning a tensor replaces the activation. During generation
with the KV cache, later steps see ``[batch, 1, d_model]``.

Backends:

* ``hf``: plain torch forward hooks on the transformers modules (located through
  :mod:`steerlab.models.architectures`).
* ``transformer_lens``: a TransformerBridge booted over the HF model (hook names
  ``blocks.{l}.hook_resid_post``...), or a user's HookedTransformer.
* ``nnsight``: nnsight traces (``model.trace`` / ``model.generate`` with ``iter``);
  ``remote=True`` sends them to NDIF, ``remote="http://host:port"`` to another server. A
  remote trace holds no steerlab code: steering site functions travel as plain data and the
  torch-only :mod:`steerlab.models.remote_edits` applies them; reading functions run here on
  the saved values (tested against a loopback server speaking nnsight's protocol in a process
  without steerlab, tests/test_ndif_loopback.py; real NDIF was not reachable from the test
  machines). Persistent ``hooks()`` on this backend are torch hooks on the wrapped HF
  modules, so code calling ``adapter.hf_model`` directly is affected too.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import operator
import os
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, Union

import torch

from steerlab.models.architectures import ArchitectureSpec, architecture_of, context_length
from steerlab.models.loading import input_device, load_hf, resolve_source, source_provenance
from steerlab.models.source_pin import pin_source
from steerlab.models.thread_guard import ThreadGuard
from steerlab.models.token_positions import TokenPositions
from steerlab.models.tokenization import PaddingSide, TokenBatch, encode, pad, pad_token_id
from steerlab.sites import READ_ONLY_SITES, SitePoint, resolve_layer, validate_site

SiteFn = Callable[[torch.Tensor], "torch.Tensor | None"]
SiteFns = Sequence[tuple[SitePoint, SiteFn]]
# what load_model takes: "demo", a real model's name, a folder, a hub id, or a model object (a transformers
# PreTrainedModel, a TransformerLens model, an nnsight model); every entry point that takes a model takes these
ModelLike = Union["ModelAdapter", str, os.PathLike, torch.nn.Module]

BACKENDS = ("hf", "transformer_lens", "nnsight")

pin_source(__name__)  # nnsight finds this file's `with model.trace(...)` blocks by their source lines


# ---------------------------------------------------------------- shared hook plumbing


def _group_by_point(fns: SiteFns) -> dict[SitePoint, list[SiteFn]]:
    """Site functions per point, points in execution order (nnsight requires it)."""
    grouped: dict[SitePoint, list[SiteFn]] = defaultdict(list)
    for point, fn in fns:
        grouped[point].append(fn)
    return dict(sorted(grouped.items(), key=lambda item: item[0].execution_key))


def _apply_fns(point: SitePoint, fns: list[SiteFn], activation: torch.Tensor) -> torch.Tensor | None:
    """Run site functions in order; each sees the previous one's edit. None if nothing edited."""
    edited = None
    for fn in fns:
        result = fn(activation if edited is None else edited)
        if result is not None:
            if point.site in READ_ONLY_SITES:
                raise ValueError(
                    f"{point.hook_name} is read-only: an edit there would change the pre-MLP norm's "
                    "input, not the residual stream. Edit attn_out, or resid_pre/resid_post instead."
                )
            if result.shape != activation.shape:
                raise ValueError(
                    f"A site function at {point.hook_name} returned shape {tuple(result.shape)}, "
                    f"expected {tuple(activation.shape)}."
                )
            edited = result
    return edited


class _StopForward(Exception):
    """Raised by :func:`_stop_forward` to end a :meth:`ModelAdapter.read` pass; caught by the adapter only."""


def _stop_forward(activation: torch.Tensor) -> None:
    raise _StopForward


def _deepest(fns: SiteFns) -> SitePoint:
    """The point of ``fns`` that a forward pass reaches last."""
    return max((point for point, _ in fns), key=lambda point: point.execution_key)


def _unwrap(output: Any) -> torch.Tensor:
    """Modules return a tensor or a tuple whose first element is the hidden states."""
    return output[0] if isinstance(output, tuple) else output


def _rewrap(output: Any, hidden: torch.Tensor) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


# Libraries whose own hooks belong to the model (TransformerLens' bridge wires some on its first forward).
_MODEL_LIBRARIES = frozenset({"transformer_lens", "nnsight", "transformers", "torch", "accelerate"})


def _is_model_own_hook(fn: Any, depth: int = 0) -> bool:
    """True for a hook that the model's library registered for itself.

    That is a function defined in one of :data:`_MODEL_LIBRARIES` that wraps no callable
    from elsewhere: TransformerLens' ``HookPoint.add_hook`` wraps the user's function in
    its own closure, so a user's (or steerlab's) hook added that way is still reported.
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    fn = getattr(fn, "__func__", fn)  # a bound method: its function
    module = getattr(fn, "__module__", None) or ""
    if module.split(".")[0] not in _MODEL_LIBRARIES:
        return False
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        is_function = callable(value) and not isinstance(value, (type, torch.nn.Module))
        if is_function and (depth >= 3 or not _is_model_own_hook(value, depth + 1)):
            return False
    return True


def _torch_hook_snapshot(root: torch.nn.Module) -> set[tuple[str, str, int]]:
    """``(module name, hook kind, hook id)`` of every hook on ``root``'s modules, but the model's own."""
    found = set()
    for name, module in root.named_modules():
        for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks"):
            for hook_id, fn in getattr(module, kind, {}).items():
                if not _is_model_own_hook(fn):
                    found.add((name, kind, hook_id))
    return found


# ---------------------------------------------------------------- the adapter


class ModelAdapter:
    """A language model behind one interface, whatever the backend.

    Attributes:
        name: the hub id it was loaded from, ``"demo"``, or a local directory's absolute path.
        backend: ``"hf"``, ``"transformer_lens"`` or ``"nnsight"``.
        n_layers, d_model: block count and residual width.
        context_length: the longest input in tokens (None if the config does not say).
        tokenizer: the tokenizer (never mutated by steerlab).
        hf_model: the underlying transformers model (None for a HookedTransformer).
        pad_token_id: id used to pad (pad, else eos, else unk token).
    """

    backend: str = ""
    provenance: dict[str, Any] | None = None  # set by load_model for GGUF-converted models (source, sha256, quantisation)

    def __init__(self, *, name: str, tokenizer: Any, hf_model: Any, n_layers: int, d_model: int,
                 context_length: int | None, root: torch.nn.Module):
        self.name = name
        self.tokenizer = tokenizer
        self.hf_model = hf_model
        self.n_layers = n_layers
        self.d_model = d_model
        self.context_length = context_length
        self.pad_token_id = pad_token_id(tokenizer)
        self._root = root  # the torch module tree that hooks live on
        self._guard = ThreadGuard()
        self._attached_points: list[SitePoint] = []  # sites of open `hooks` blocks (forward_from must not skip them)

    # -------------------------------------------------------------- common API

    @property
    def device(self) -> torch.device:
        """Where inputs go: where the input embeddings compute.

        For a model dispatched with a ``device_map`` (accelerate), that comes from
        ``hf_device_map``: an embedding offloaded to ``"disk"`` or ``"cpu"`` has ``meta``
        parameters but computes on accelerate's main device (:func:`steerlab.models.loading.input_device`).
        Otherwise it is the device of the first parameter (the embeddings).
        """
        dispatched = input_device(self.hf_model) if self.hf_model is not None else None
        return dispatched if dispatched is not None else next(self._root.parameters()).device

    def __repr__(self) -> str:
        return (f"ModelAdapter(name={self.name!r}, backend={self.backend!r}, n_layers={self.n_layers}, "
                f"d_model={self.d_model}, context_length={self.context_length}, device={str(self.device)!r})")

    def point(self, site: str, layer: int) -> SitePoint:
        """A validated :class:`SitePoint` (negative layers count from the end)."""
        point = SitePoint(validate_site(site), resolve_layer(layer, self.n_layers))
        self._check_available(point)
        return point

    def tokenize(self, texts: Sequence[str], *, padding_side: PaddingSide = "right", strict: bool = False,
                 chat_template: bool = False) -> TokenBatch:
        """Tokenise with the tokenizer's own rules and pad (right for forward, left for generation)."""
        ids = encode(self.tokenizer, texts, max_length=self.context_length, strict=strict, chat_template=chat_template)
        return pad(ids, pad_id=self.pad_token_id, side=padding_side)

    def forward(self, batch: TokenBatch, fns: SiteFns = ()) -> torch.Tensor:
        """Logits ``[batch, pos, vocab]`` of one forward pass with site functions applied.

        Raises a RuntimeError while another thread holds steerlab hooks on this model.
        """
        self._check_fns(fns)
        with self._guard.running(), self._claimed_if(fns):
            return self._forward(batch.to(self.device), fns)

    def forward_from(self, batch: TokenBatch, layer: int, resid_pre: torch.Tensor, fns: SiteFns = ()) -> torch.Tensor:
        """Logits ``[batch, pos, vocab]`` of ``batch`` with ``resid_pre`` ``[batch, pos, d_model]`` as block ``layer``'s
        input: the blocks before it do not run (on the hf backend; elsewhere they run and their result is
        replaced: the same logits, no time saved).

        For many forwards of the same texts that differ only from ``layer`` on (steering sweeps,
        feature scores): capture ``resid_pre`` of ``layer`` once (:meth:`read`), then run only the
        rest. Equal to :meth:`forward` when ``resid_pre`` is what the blocks before would give.
        Every site function must sit at ``layer`` or later; hooks already attached (:meth:`hooks`,
        e.g. by :func:`steerlab.steer`) after ``layer``'s input, since the given input replaces that
        site after them: both are refused otherwise.
        """
        point = self.point("resid_pre", layer)
        early = sorted({p.hook_name for p, _ in fns if p.execution_key < point.execution_key})
        if early:
            raise ValueError(f"forward_from(layer={point.layer}) skips the blocks before it, so site functions at "
                             f"{early} would never run: start at their layer or earlier.")
        held = sorted({p.hook_name for p in self._attached_points if p.execution_key <= point.execution_key})
        if held:
            raise ValueError(f"forward_from(layer={point.layer}) replaces block {point.layer}'s input, so hooks already "
                             f"attached at {held} (steer, sae_splice, model.hooks) would be skipped or overwritten: "
                             "pass them as site functions (fns) instead, or start at an earlier layer.")
        expected = (*batch.input_ids.shape, self.d_model)
        if tuple(resid_pre.shape) != expected:
            raise ValueError(f"resid_pre has shape {tuple(resid_pre.shape)}; block {point.layer}'s input for this batch "
                             f"is {expected} ([batch, pos, d_model]).")
        given = (point, lambda h: resid_pre.to(h.device, h.dtype))
        with self._guard.claim(self._forward_root()), self._blocks_skipped(point.layer):
            return self.forward(batch, [given, *fns])

    def forward_keeping_input(self, batch: TokenBatch, layer: int, fns: SiteFns = ()
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, resid_pre)``: :meth:`forward`, also keeping block ``layer``'s input ``[batch, pos, d_model]``
        (as it is before ``fns`` at that site) for :meth:`forward_from`."""
        held, reader = self._input_reader(layer)
        return self.forward(batch, [reader, *fns]), held["resid_pre"]

    def layer_input(self, batch: TokenBatch, layer: int) -> torch.Tensor:
        """Block ``layer``'s input ``[batch, pos, d_model]`` for :meth:`forward_from`, by a pass that stops there
        (:meth:`read`)."""
        held, reader = self._input_reader(layer)
        self.read(batch, [reader])
        return held["resid_pre"]

    def _input_reader(self, layer: int) -> tuple[dict[str, torch.Tensor], tuple[SitePoint, SiteFn]]:
        held: dict[str, torch.Tensor] = {}
        return held, (self.point("resid_pre", layer), lambda h: held.__setitem__("resid_pre", h.detach().clone()))

    def read(self, batch: TokenBatch, fns: SiteFns) -> None:
        """One forward pass run only as far as ``fns`` need (what :func:`steerlab.capture` uses).

        The site functions see exactly the activations :meth:`forward` would give them, but
        the pass stops once the deepest of their sites has run: the later blocks, the final
        norm and the LM head (more than half of Gemma-3-270M's FLOPs) are never computed, so
        nothing is returned. Hooks are removed afterwards, also when the pass is cut short.
        """
        self._check_fns(fns)
        if not fns:
            raise ValueError("read needs at least one (point, fn) pair: a pass with nothing to read computes nothing.")
        with self._guard.running(), self._claimed_if(fns):
            self._read(batch.to(self.device), fns)

    @contextlib.contextmanager
    def hooks(self, fns: SiteFns) -> Iterator[None]:
        """Keep site functions on every forward inside the block; always removed on exit.

        The hooks are per model: while the block is open, forward passes of this model from
        other threads raise a RuntimeError, and so does ``hooks`` from another thread (use one
        model object per thread, or serialize the calls).
        """
        self._check_fns(fns)
        with self._guard.claim(self._forward_root()), self._attach(fns):
            self._attached_points.extend(point for point, _ in fns)
            try:
                yield
            finally:
                for point, _ in fns:
                    self._attached_points.remove(point)

    def generate(self, texts: Sequence[str], max_new_tokens: int = 20, do_sample: bool = False,
                 fns: SiteFns = (), chat_template: bool = False, **kwargs: Any) -> list[str]:
        """The continuations (new text only) of each prompt; site functions apply at every step.

        A prompt that with ``max_new_tokens`` would not fit in the model's context raises a
        ValueError naming it (prompts are never truncated here).
        """
        ids = encode(self.tokenizer, texts, max_length=None, chat_template=chat_template)
        batch = pad(ids, pad_id=self.pad_token_id, side="left")
        new_ids = self.generate_ids(batch, max_new_tokens=max_new_tokens, do_sample=do_sample, fns=fns, **kwargs)
        return self.tokenizer.batch_decode(new_ids, skip_special_tokens=True)

    def generate_ids(self, batch: TokenBatch, max_new_tokens: int = 20, do_sample: bool = False,
                     fns: SiteFns = (), **kwargs: Any) -> torch.Tensor:
        """New token ids ``[batch, new]`` (padded with ``pad_token_id`` after an early stop)."""
        self._check_fns(fns)
        if batch.padding_side != "left":
            raise ValueError("Generation needs a left-padded batch: adapter.tokenize(texts, padding_side='left').")
        max_new_tokens = self._check_context(batch, max_new_tokens)
        with self._guard.running(), self._claimed_if(fns):
            return self._generate_ids(batch.to(self.device), max_new_tokens, do_sample, fns, **kwargs)

    def forward_cached(self, input_ids: torch.Tensor, cache: Any = None, fns: SiteFns = ()) -> tuple[torch.Tensor, Any]:
        """One step of incremental decoding with the KV cache: ``(logits [1, new, vocab], cache)``.

        ``input_ids [1, new]`` (one sequence, no padding) continue the tokens already held in
        ``cache`` (None: a fresh sequence); pass the returned cache (the backend's own object)
        to the next call. Site functions see the new positions only, ``[1, new, d_model]``.
        Each call runs only the new tokens through the model, so streaming ``n`` tokens costs
        ``n`` one-token passes instead of ``n`` passes over the growing sequence.
        """
        self._check_fns(fns)
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or input_ids.shape[0] != 1 \
                or input_ids.shape[1] == 0:
            raise ValueError("forward_cached takes the new token ids of ONE sequence as a [1, new] tensor with "
                             f"new >= 1, got {getattr(input_ids, 'shape', type(input_ids).__name__)}.")
        with self._guard.running(), self._claimed_if(fns):
            return self._forward_cached(input_ids.to(self.device), cache, fns)

    def _check_context(self, batch: TokenBatch, max_new_tokens: Any) -> int:
        """``max_new_tokens`` as an int, or a ValueError if a prompt plus it would overflow the context."""
        if isinstance(max_new_tokens, bool):
            raise TypeError(f"max_new_tokens must be an int, got {max_new_tokens!r}.")
        try:
            max_new_tokens = operator.index(max_new_tokens)
        except TypeError:
            raise TypeError(f"max_new_tokens must be an int, got {type(max_new_tokens).__name__} "
                            f"({max_new_tokens!r}).") from None
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}.")
        if self.context_length is None:
            return max_new_tokens
        lengths = batch.attention_mask.sum(dim=1).tolist()
        for index, length in enumerate(lengths):
            if length + max_new_tokens > self.context_length:
                raise ValueError(_context_message(index, int(length), max_new_tokens, self.context_length))
        return max_new_tokens

    @contextlib.contextmanager
    def _claimed_if(self, fns: SiteFns) -> Iterator[None]:
        """Claim the model for this thread while site functions are attached (nothing to claim without)."""
        if not fns:
            yield
            return
        with self._guard.claim(self._forward_root()):
            yield

    @contextlib.contextmanager
    def token_positions(self) -> Iterator[TokenPositions]:
        """Track each forward's token positions (see :class:`TokenPositions`) inside the block.

        Claims the model for this thread, like :meth:`hooks`.
        """
        tracker = TokenPositions()

        def before_forward(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            ids = args[0] if args else kwargs.get("input_ids", kwargs.get("input"))
            if ids is None:
                ids = kwargs["inputs_embeds"][..., 0]
            tracker.update(ids.shape[0], ids.shape[1], ids.device, kwargs.get("attention_mask"),
                           self._past_length(kwargs))

        with self._guard.claim(self._forward_root()):
            handle = self._forward_root().register_forward_pre_hook(before_forward, with_kwargs=True)
            try:
                yield tracker
            finally:
                handle.remove()

    def hook_snapshot(self) -> set[tuple[str, str, int]]:
        """Every torch hook on the model but the model's own (TransformerLens and nnsight hooks are torch hooks).

        Hooks that the model's library registers for itself are left out: TransformerLens'
        bridge wires capture hooks on its first forward pass, and they are not leftovers.
        A user's hook, or one added through TransformerLens' ``add_hook``, is included.
        """
        global_hooks = torch.nn.modules.module._global_forward_hooks
        return _torch_hook_snapshot(self._root) | {
            ("<global>", "_global_forward_hooks", hook_id)
            for hook_id, fn in global_hooks.items() if not _is_model_own_hook(fn)
        }

    def _check_fns(self, fns: SiteFns) -> None:
        for point, fn in fns:
            if not isinstance(point, SitePoint):
                raise TypeError(f"Expected (SitePoint, fn) pairs, got {type(point).__name__}: use adapter.point(site, layer).")
            if not callable(fn):
                raise TypeError(f"The site function for {point.hook_name} is not callable.")
            if point.layer >= self.n_layers:
                resolve_layer(point.layer, self.n_layers)  # raises the standard message
            self._check_available(point)

    # -------------------------------------------------------------- backend-specific

    def _forward_root(self) -> torch.nn.Module:
        """The module every forward pass goes through (all backends but HookedTransformer run the HF model)."""
        return self.hf_model

    @staticmethod
    def _past_length(kwargs: dict) -> int | None:
        # transformers >= 5.24 names it ``cache``; earlier versions ``past_key_values``.
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        return 0 if cache is None else int(cache.get_seq_length())

    def _check_available(self, point: SitePoint) -> None:
        raise NotImplementedError

    def _forward(self, batch: TokenBatch, fns: SiteFns) -> torch.Tensor:
        raise NotImplementedError

    def _attach(self, fns: SiteFns) -> contextlib.AbstractContextManager:
        raise NotImplementedError

    def _blocks_skipped(self, first: int) -> contextlib.AbstractContextManager:
        """While open, blocks before ``first`` pass their input through uncomputed (here: they still run)."""
        return contextlib.nullcontext()

    def _read(self, batch: TokenBatch, fns: SiteFns) -> None:
        """Torch-hook backends: one more site function at the deepest point, run after the others
        there, stops the pass; a pass that never reaches it (none should) simply runs to the end."""
        try:
            self._forward(batch, [*fns, (_deepest(fns), _stop_forward)])
        except _StopForward:
            pass

    def _generate_ids(self, batch: TokenBatch, max_new_tokens: int, do_sample: bool, fns: SiteFns,
                      **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError


class HFAdapter(ModelAdapter):
    """Plain torch forward hooks on the transformers modules."""

    backend = "hf"

    def __init__(self, hf_model: Any, tokenizer: Any, name: str):
        config = hf_model.config
        self.spec: ArchitectureSpec = architecture_of(config)
        self.blocks = hf_model.get_submodule(self.spec.blocks)
        super().__init__(name=name, tokenizer=tokenizer, hf_model=hf_model, n_layers=len(self.blocks),
                         d_model=config.hidden_size, context_length=context_length(config), root=hf_model)

    def module_path(self, point: SitePoint) -> tuple[str, str]:
        """``(module path from the causal LM, "input" | "output")`` of the module holding ``point``."""
        block = f"{self.spec.blocks}.{point.layer}"
        if point.site == "resid_pre":
            return block, "input"
        if point.site == "resid_post":
            return block, "output"
        if point.site == "resid_mid":
            return f"{block}.{self.spec.resid_mid_input}", "input"
        return f"{block}.{getattr(self.spec, point.site)}", "output"

    def _check_available(self, point: SitePoint) -> None:
        if point.site == "resid_mid" and self.spec.resid_mid_input is None:
            raise ValueError(
                f"{type(self.hf_model).__name__} computes attention and MLP in parallel, so it has no resid_mid. "
                "Use resid_pre, attn_out, mlp_out or resid_post."
            )

    @contextlib.contextmanager
    def _blocks_skipped(self, first: int) -> Iterator[None]:
        # Each block's forward is replaced on the instance by a pass-through (the class's own forward is
        # untouched), and restored on exit: the model then computes exactly what it computed before.
        skipped = list(self.blocks)[:first]
        try:
            for block in skipped:
                block.forward = _pass_through
            yield
        finally:
            for block in skipped:
                block.__dict__.pop("forward", None)

    @contextlib.contextmanager
    def _attach(self, fns: SiteFns) -> Iterator[None]:
        handles = []
        try:
            for point, group in _group_by_point(fns).items():
                path, where = self.module_path(point)
                module = self.hf_model.get_submodule(path)
                if where == "output":
                    handles.append(module.register_forward_hook(_output_hook(point, group)))
                else:
                    handles.append(module.register_forward_pre_hook(_input_hook(point, group), with_kwargs=True))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _forward(self, batch: TokenBatch, fns: SiteFns) -> torch.Tensor:
        with self._attach(fns):
            return self.hf_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits

    def _generate_ids(self, batch: TokenBatch, max_new_tokens: int, do_sample: bool, fns: SiteFns,
                      **kwargs: Any) -> torch.Tensor:
        with self._attach(fns):
            return _hf_generate(self, batch, max_new_tokens, do_sample, **kwargs)

    def _forward_cached(self, input_ids: torch.Tensor, cache: Any, fns: SiteFns) -> tuple[torch.Tensor, Any]:
        if getattr(self, "remote", False):
            raise ValueError("forward_cached runs the local weights step by step; a remote (NDIF) nnsight model "
                             "has none: load the model locally (remote=False).")
        with self._attach(fns):
            return _hf_forward_cached(self.hf_model, input_ids, cache)


def _context_message(index: int, length: int, max_new_tokens: int, context: int) -> str:
    """Why prompt ``index`` cannot be generated from, and what to change."""
    total = length + max_new_tokens
    fix = (f"shorten it to at most {context - max_new_tokens} tokens" if context - max_new_tokens >= 1
           else f"lower max_new_tokens below {context}")
    if length < context:
        fix += f", or lower max_new_tokens to {context - length}"
    return (f"Prompt {index} has {length} tokens; with max_new_tokens={max_new_tokens} generation would reach "
            f"{total} tokens, past the model's context length of {context} tokens: {fix}.")


def _hf_forward_cached(hf_model: Any, input_ids: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
    """A transformers forward of new tokens continuing ``cache`` (a fresh one when None); ``(logits, cache)``.

    transformers >= 5.24 names the cache ``cache`` (in and out); earlier versions ``past_key_values``.
    """
    import inspect

    name = "cache" if "cache" in inspect.signature(hf_model.forward).parameters else "past_key_values"
    output = hf_model(input_ids=input_ids, use_cache=True, **{name: cache})
    return output.logits, getattr(output, name)


def _hf_generate(adapter: ModelAdapter, batch: TokenBatch, max_new_tokens: int, do_sample: bool,
                 **kwargs: Any) -> torch.Tensor:
    """transformers' own generation loop (KV cache, left padding); new tokens only."""
    output = adapter.hf_model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                       max_new_tokens=max_new_tokens, do_sample=do_sample,
                                       pad_token_id=adapter.pad_token_id, **kwargs)
    return output[:, batch.input_ids.shape[1]:]


def _pass_through(*args: Any, **kwargs: Any) -> torch.Tensor:
    """A skipped block: its input hidden states, unchanged (transformers' blocks take them first and return them)."""
    return args[0] if args else kwargs["hidden_states"]


def _output_hook(point: SitePoint, group: list[SiteFn]) -> Callable:
    def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
        edited = _apply_fns(point, group, _unwrap(output))
        return None if edited is None else _rewrap(output, edited)
    return hook


def _input_hook(point: SitePoint, group: list[SiteFn]) -> Callable:
    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
        hidden = args[0] if args else kwargs["hidden_states"]
        edited = _apply_fns(point, group, hidden)
        if edited is None:
            return None
        if args:
            return (edited, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": edited}
    return hook


class NNsightAdapter(HFAdapter):
    """nnsight traces for forward and generation; torch hooks for persistent ``hooks()``.

    Remote (``remote=True``: NDIF, or a host URL): the trace sent holds only nnsight envoys,
    torch tensors, builtins and the torch-only functions of :mod:`steerlab.models.remote_edits`
    (shipped as source). Steering site functions (from :func:`steerlab.steer`) become plain
    data per forward pass (site, op, tensors, selected positions); any other site function
    may only read, and runs here on the activations the trace saves and returns.
    """

    backend = "nnsight"

    def __init__(self, nnsight_model: Any, name: str, remote: Any = False):
        self.nnsight_model = nnsight_model
        self.remote = remote
        super().__init__(nnsight_model._module, nnsight_model.tokenizer, name)
        self._persistent: list[tuple[SitePoint, SiteFn]] = []  # site functions of open hooks() blocks
        self._tracing = False
        self._trackers: list[TokenPositions] = []  # remote: fed by the adapter, there being no local forward

    @contextlib.contextmanager
    def _attach(self, fns: SiteFns) -> Iterator[None]:
        """Torch hooks serve direct ``hf_model`` calls; inside an nnsight trace they stand down
        and the same functions run as trace interventions, because nnsight reads a module's
        output before torch forward hooks could edit it."""
        entries = list(fns)
        standing_down = [(point, self._unless_tracing(fn)) for point, fn in entries]
        self._persistent.extend(entries)
        try:
            with super()._attach(standing_down):
                yield
        finally:
            for entry in entries:
                self._persistent.remove(entry)

    def _unless_tracing(self, fn: SiteFn) -> SiteFn:
        return lambda activation: None if self._tracing else fn(activation)

    @contextlib.contextmanager
    def _trace_scope(self) -> Iterator[None]:
        self._tracing = True
        try:
            yield
        finally:
            self._tracing = False

    def _envoy(self, path: str) -> Any:
        envoy = self.nnsight_model
        for part in path.split("."):
            envoy = envoy[int(part)] if part.isdigit() else getattr(envoy, part)
        return envoy

    def _intervene(self, fns: SiteFns) -> None:
        """Inside a trace: visit each point in execution order, apply its functions."""
        for point, group in _group_by_point(fns).items():
            path, where = self.module_path(point)
            envoy = self._envoy(path)
            if where == "output":
                output = envoy.output
                edited = _apply_fns(point, group, _unwrap(output))
                if edited is not None:
                    envoy.output = _rewrap(output, edited)
            else:
                edited = _apply_fns(point, group, envoy.input)
                if edited is not None:
                    envoy.input = edited

    def _inputs(self, batch: TokenBatch) -> dict[str, torch.Tensor]:
        return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}

    def _forward(self, batch: TokenBatch, fns: SiteFns) -> torch.Tensor:
        fns = [*self._persistent, *fns]  # open hooks() blocks first, as on the other backends
        if self.remote:
            return self._forward_remote(batch, fns)
        with self._trace_scope(), self.nnsight_model.trace(self._inputs(batch), remote=self.remote):
            self._intervene(fns)
            logits = self.nnsight_model.output.logits.save()
        return logits

    @property
    def device(self) -> torch.device:
        """Where inputs go: cpu for a remote model (they are shipped from here; the server places them)."""
        return torch.device("cpu") if self.remote else super().device

    def _where(self) -> dict[str, Any]:
        """Where a trace runs: ``remote=`` (False, True for NDIF, ``"local"``, a host URL) or an nnsight ``Backend``."""
        from nnsight.tracing.backend import Backend

        return {"backend": self.remote} if isinstance(self.remote, Backend) else {"remote": self.remote}

    def _read(self, batch: TokenBatch, fns: SiteFns) -> None:
        stop = _deepest(fns)
        # The open hooks() blocks' functions up to the stop point; the pass never reaches later ones.
        fns = [(point, fn) for point, fn in [*self._persistent, *fns] if point.execution_key <= stop.execution_key]
        if self.remote:
            self._read_remote(batch, fns)
            return
        with self._trace_scope(), self.nnsight_model.trace(self._inputs(batch), remote=self.remote) as tracer:
            self._intervene(fns)
            tracer.stop()

    # -------------------------------------------------------------- remote (NDIF) traces

    @contextlib.contextmanager
    def token_positions(self) -> Iterator[TokenPositions]:
        """As on every backend; remotely the adapter feeds the tracker itself before each planned forward."""
        if not self.remote:
            with super().token_positions() as tracker:
                yield tracker
            return
        tracker = TokenPositions()
        with self._guard.claim(self._forward_root()):
            self._trackers.append(tracker)
            try:
                yield tracker
            finally:
                self._trackers.remove(tracker)

    def _feed(self, step: tuple[int, int, torch.Tensor, int]) -> None:
        """Tell the open trackers about one forward ``(batch, new tokens, attention mask, past length)``."""
        size, length, mask, past = step
        for tracker in self._trackers:
            tracker.update(size, length, mask.device, mask, past)

    def _remote_plan(self, fns: SiteFns, steps: list[tuple[int, int, torch.Tensor, int]]) -> dict[str, Any]:
        """What a remote trace needs, as plain data, for forwards ``steps`` (one per generated token).

        ``points``: ``(envoy, is_output)`` of each site in execution order; ``entries[step][i]``:
        point ``i``'s plain edits (dicts) and reads (None) in order. ``readers[step]`` and
        ``clampers[step]`` are the local functions behind the reads and the clamp edits, in
        the order the trace returns their values. Positions are selected here, per forward,
        from the same token-position logic as the local backends.
        """
        grouped = _group_by_point(fns)
        plan: dict[str, Any] = {"points": [(self._envoy(path), where == "output")
                                           for path, where in map(self.module_path, grouped)],
                                "entries": [], "readers": [], "clampers": []}
        for step in steps:
            self._feed(step)
            entries, readers, clampers = [], [], []
            for point, group in grouped.items():
                todo = []
                for fn in group:
                    edit = fn.plain_edit() if hasattr(fn, "plain_edit") else None
                    todo.append(edit)
                    if edit is None:
                        readers.append((point, fn))
                    elif edit["op"] == "clamp":
                        clampers.append(fn)
                entries.append(todo)
            plan["entries"].append(entries)
            plan["readers"].append(readers)
            plan["clampers"].append(clampers)
        return plan

    def _replay_reads(self, plan: dict[str, Any], steps: list, returned: list) -> None:
        """Run the reading site functions here on the values the trace returned (``[(reads, clamped)]`` per step)."""
        for step, readers, clampers, (reads, clamped) in zip(steps, plan["readers"], plan["clampers"], returned):
            self._feed(step)
            for (point, fn), value in zip(readers, reads):
                if _apply_fns(point, [fn], value) is not None:
                    raise ValueError(f"A site function edited {point.hook_name} in a remote trace, where only "
                                     "steerlab.steer's edits (add / ablate / set / clamp) can run: the server has "
                                     "no steerlab code. Steer with steerlab.steer, or load the model locally.")
            for fn, logits in zip(clampers, clamped):
                fn.clamp_logits_after.append(logits.detach().float().cpu())

    def _remote_trace_args(self) -> dict[str, Any]:
        from steerlab.models import remote_edits

        remote_edits.ship_by_value()
        return self._where()

    def _forward_remote(self, batch: TokenBatch, fns: SiteFns) -> torch.Tensor:
        """A forward whose trace holds only envoys, tensors, builtins and :mod:`~steerlab.models.remote_edits`."""
        import nnsight

        from steerlab.models.remote_edits import run_step

        steps = [_prompt_step(batch)]
        plan = self._remote_plan(fns, steps)
        points, entries, model = plan["points"], plan["entries"][0], self.nnsight_model
        with model.trace(self._inputs(batch), **self._remote_trace_args()):
            returned = nnsight.save([run_step(points, entries)])
            logits = model.output.logits.save()
        self._replay_reads(plan, steps, returned)
        return logits

    def _read_remote(self, batch: TokenBatch, fns: SiteFns) -> None:
        """A read (capture) whose trace saves each point's activation and stops after the deepest.

        The reading functions, steerlab code that the server does not have, run here on the
        returned values; steering edits of open ``steer`` blocks apply in the trace.
        """
        import nnsight

        from steerlab.models.remote_edits import run_step

        steps = [_prompt_step(batch)]
        plan = self._remote_plan(fns, steps)
        points, entries = plan["points"], plan["entries"][0]
        with self.nnsight_model.trace(self._inputs(batch), **self._remote_trace_args()) as tracer:
            returned = nnsight.save([run_step(points, entries)])
            tracer.stop()
        self._replay_reads(plan, steps, returned)

    def _generate_remote(self, batch: TokenBatch, max_new_tokens: int, do_sample: bool, fns: SiteFns,
                         **kwargs: Any) -> torch.Tensor:
        """Generation whose trace applies each step's plain edits (one ``run_step`` per generated token)."""
        import nnsight

        from steerlab.models.remote_edits import run_step

        size, length = batch.input_ids.shape
        steps = [_prompt_step(batch)] + [
            (size, 1, torch.cat([batch.attention_mask, batch.attention_mask.new_ones(size, t)], dim=1), length + t - 1)
            for t in range(1, max_new_tokens)]
        plan = self._remote_plan(fns, steps) if fns else {"points": [], "entries": [], "readers": [], "clampers": []}
        points, entries, model, inputs = plan["points"], plan["entries"], self.nnsight_model, self._inputs(batch)
        with warnings.catch_warnings(), model.generate(
                max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=self.pad_token_id,
                **self._remote_trace_args(), **kwargs) as tracer:
            warnings.filterwarnings("ignore", message=".*was never reached.*")  # see _generate_ids
            with tracer.invoke(inputs):  # the block's names are shipped: no `self` in it
                returned = nnsight.save([])
                if entries:
                    for step in tracer.iter[:max_new_tokens]:
                        returned.append(run_step(points, entries[step]))
            with tracer.invoke():
                output = tracer.result.save()
        self._replay_reads(plan, steps, returned)
        return output[:, length:]

    def _generate_ids(self, batch: TokenBatch, max_new_tokens: int, do_sample: bool, fns: SiteFns,
                      **kwargs: Any) -> torch.Tensor:
        fns = [*self._persistent, *fns]
        if self.remote:
            return self._generate_remote(batch, max_new_tokens, do_sample, fns, **kwargs)
        # Two invokes (nnsight's pattern for unbounded loops): when every answer stops (EOS) before
        # max_new_tokens, the per-token loop is cut short and code after it in the same invoke
        # never runs, so the result is read in a second invoke.
        with self._trace_scope(), warnings.catch_warnings(), self.nnsight_model.generate(
                max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=self.pad_token_id,
                remote=self.remote, **kwargs) as tracer:
            warnings.filterwarnings("ignore", message=".*was never reached.*")  # that cut-short loop, expected
            with tracer.invoke(self._inputs(batch)):
                if fns:
                    # One iteration per generated token; the first sees the whole prompt.
                    for _ in tracer.iter[:max_new_tokens]:
                        self._intervene(fns)
            with tracer.invoke():
                output = tracer.result.save()
        return output[:, batch.input_ids.shape[1]:]


def _prompt_step(batch: TokenBatch) -> tuple[int, int, torch.Tensor, int]:
    """The forward over a whole batch, as the token-position trackers see it: ``(batch, tokens, mask, past 0)``."""
    return batch.input_ids.shape[0], batch.input_ids.shape[1], batch.attention_mask, 0


class TransformerLensAdapter(ModelAdapter):
    """TransformerLens hook points: a TransformerBridge (over an HF model) or a HookedTransformer."""

    backend = "transformer_lens"

    def __init__(self, tl_model: Any, name: str, tokenizer: Any = None):
        self.tl_model = tl_model
        hf_model = getattr(tl_model, "original_model", None)  # None for a HookedTransformer
        # Booting gives the bridge a copy of the tokenizer that prepends BOS; steerlab keeps
        # the user's own so that every backend sees the same token ids.
        tokenizer = tokenizer if tokenizer is not None else tl_model.tokenizer
        if tokenizer is None:
            raise ValueError("This TransformerLens model has no tokenizer; attach one (model.set_tokenizer(tok)) first.")
        cfg = tl_model.cfg
        self._hook_points: dict[str, Any] = {}
        super().__init__(name=name, tokenizer=tokenizer, hf_model=hf_model, n_layers=cfg.n_layers,
                         d_model=cfg.d_model, context_length=getattr(cfg, "n_ctx", None), root=tl_model)
        if hf_model is not None:
            _pass_kv_cache_to_bridge_attention(tl_model)

    def _forward_root(self) -> torch.nn.Module:
        return self.hf_model if self.hf_model is not None else self.tl_model

    def _past_length(self, kwargs: dict) -> int | None:
        if self.hf_model is not None:
            return super()._past_length(kwargs)
        return None  # HookedTransformer's own cache: inferred from the sequence of forwards

    def _hook_point(self, name: str) -> Any:
        """The HookPoint called ``name``, or None.

        The bridge's ``hook_dict`` resolves every alias anew on each access, which cost more
        than the forward pass of a small model when read per point per batch (the bridge's
        2.45x capture time); it is read once, and again only for a name it lacks.
        """
        if name not in self._hook_points:
            self._hook_points = dict(self.tl_model.hook_dict)
        return self._hook_points.get(name)

    def _check_available(self, point: SitePoint) -> None:
        if self._hook_point(point.hook_name) is None:
            raise ValueError(f"This model has no hook point {point.hook_name} (site {point.site!r} is not "
                             "available for its architecture).")

    @contextlib.contextmanager
    def _attach(self, fns: SiteFns) -> Iterator[None]:
        # TransformerLens' own add_hook (its tensor conversions apply), under a level of our own
        # so that exactly these hooks are removed; model.hooks() would rebuild hook_dict twice per call.
        level = next(_TL_HOOK_LEVELS)
        hook_points = []
        try:
            for point, group in _group_by_point(fns).items():
                hook_point = self._hook_point(point.hook_name)
                hook_points.append(hook_point)
                hook_point.add_hook(_tl_hook(point, group), dir="fwd", level=level)
            yield
        finally:
            for hook_point in hook_points:
                hook_point.remove_hooks(dir="fwd", level=level)

    def _forward(self, batch: TokenBatch, fns: SiteFns) -> torch.Tensor:
        with self._attach(fns):
            return self.tl_model(batch.input_ids, attention_mask=batch.attention_mask, return_type="logits")

    def _generate_ids(self, batch: TokenBatch, max_new_tokens: int, do_sample: bool, fns: SiteFns,
                      **kwargs: Any) -> torch.Tensor:
        if self.hf_model is not None:
            # The bridge's hook points live inside the HF modules, so HF's generate (with its
            # KV cache and left padding) fires them: the same generation loop as the hf backend.
            with self._attach(fns):
                return _hf_generate(self, batch, max_new_tokens, do_sample, **kwargs)
        # HookedTransformer: generate one prompt at a time so no padding is involved.
        rows = []
        with self._attach(fns):
            for ids, mask in zip(batch.input_ids, batch.attention_mask):
                prompt = ids[mask.bool()].unsqueeze(0)
                output = self.tl_model.generate(prompt, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                                verbose=False, return_type="tokens", **kwargs)
                rows.append(output[0, prompt.shape[1]:].clone())
        width = max(len(row) for row in rows)
        padded = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long, device=rows[0].device)
        for i, row in enumerate(rows):
            padded[i, : len(row)] = row
        return padded

    def _forward_cached(self, input_ids: torch.Tensor, cache: Any, fns: SiteFns) -> tuple[torch.Tensor, Any]:
        with self._attach(fns):
            if self.hf_model is not None:  # a bridge: its hook points fire inside the HF modules
                return _hf_forward_cached(self.hf_model, input_ids, cache)
            if cache is None:  # HookedTransformer: its own cache, filled in place
                from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

                cache = TransformerLensKeyValueCache.init_cache(self.tl_model.cfg, self.tl_model.cfg.device, 1)
            return self.tl_model(input_ids, return_type="logits", past_kv_cache=cache), cache


def _pass_kv_cache_to_bridge_attention(bridge: torch.nn.Module) -> None:
    """Let the bridge's own attention code find the KV cache under transformers >= 5.24.

    transformers 5.24 renamed the cache argument its blocks pass to attention from
    ``past_key_values`` to ``cache`` (the old name is a deprecated alias until 5.40).
    TransformerLens' bridge components that recompute attention themselves (GPT-2's joint
    QKV, rotary attention...) look the cache up only as ``past_key_values`` or ``layer_past``
    (``AttentionBridge._update_kv_cache``, TransformerLens 3.9 to 4.3), so under 5.24 they
    never write it: during generation each step attends to itself alone. This pre-hook hands
    them the cache under the name they read. Components that delegate to the HF attention
    module (``AttentionBridge.forward``) read ``cache`` themselves and are left alone. It is
    installed once per bridge, before any steerlab hook, and changes nothing on older versions.
    """
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    def rename_cache(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if "cache" not in kwargs or "past_key_values" in kwargs or "layer_past" in kwargs:
            return None
        kwargs = dict(kwargs)
        kwargs["past_key_values"] = kwargs.pop("cache")
        return args, kwargs

    for module in bridge.modules():
        if (isinstance(module, AttentionBridge) and type(module).forward is not AttentionBridge.forward
                and not getattr(module, "_steerlab_cache_kwarg", False)):
            module.register_forward_pre_hook(rename_cache, with_kwargs=True)
            module._steerlab_cache_kwarg = True


# TransformerLens hook levels for steerlab's hooks, far from the small ones its own hooks() contexts use.
_TL_HOOK_LEVELS = itertools.count(1 << 40)


def _tl_hook(point: SitePoint, group: list[SiteFn]) -> Callable:
    def hook(activation: torch.Tensor, hook: Any) -> torch.Tensor | None:
        return _apply_fns(point, group, activation)
    return hook


# ---------------------------------------------------------------- load_model


def _is_instance(obj: Any, module: str, class_name: str) -> bool:
    """isinstance by class name along the MRO, so optional backends are not imported to check."""
    return any(cls.__name__ == class_name and cls.__module__.startswith(module) for cls in type(obj).__mro__)


def _file_backed_tokenizer(tokenizer: Any) -> Any:
    """TransformerBridge needs a tokenizer with a ``name_or_path``; an in-memory one is saved and reloaded."""
    if getattr(tokenizer, "name_or_path", ""):
        return tokenizer
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as directory:
        tokenizer.save_pretrained(directory)
        return AutoTokenizer.from_pretrained(directory)


@contextlib.contextmanager
def _input_device_listed_first(hf_model: Any) -> Iterator[None]:
    """While nnsight wraps a dispatched model, list its input device first in ``hf_device_map``.

    nnsight builds a transformers pipeline over the model, and the pipeline takes the *first*
    value of ``hf_device_map`` as its device: ``"disk"`` for a model whose embeddings are
    offloaded, which torch rejects. After dispatch the map is informational only (accelerate's
    hooks do the moving), so it is shown with ``{"": input device}`` in front and restored.
    """
    device_map = getattr(hf_model, "hf_device_map", None)
    if not device_map or next(iter(device_map.values())) not in ("disk", "meta"):
        yield
        return
    hf_model.hf_device_map = {"": str(input_device(hf_model)), **device_map}
    try:
        yield
    finally:
        hf_model.hf_device_map = device_map


@functools.lru_cache(maxsize=None)
def _inputs_to_input_device(cls: type) -> type:
    """nnsight's model class ``cls``, but moving a trace's inputs to the model's input device.

    nnsight (0.8.1) moves inputs to its ``device``, the first parameter's device: ``meta``
    when the embeddings are offloaded to disk or cpu, where accelerate's hooks cannot copy
    them from. This subclass reports :func:`steerlab.models.loading.input_device` instead.
    """
    def device(self: Any) -> torch.device | None:
        dispatched = input_device(self._module)
        return dispatched if dispatched is not None else cls.device.fget(self)

    return type(cls.__name__, (cls,), {"device": property(device)})


def _wrap_hf(hf_model: Any, tokenizer: Any, name: str, backend: str, *, owned: bool, remote: bool) -> ModelAdapter:
    hf_model.eval()
    if backend == "hf":
        return HFAdapter(hf_model, tokenizer, name)
    if backend == "nnsight":
        from nnsight import LanguageModel

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # LanguageModel -> TransformersModel rename
            warnings.filterwarnings("ignore", message=".*deprecated.*")
            with _input_device_listed_first(hf_model):
                nnsight_model = LanguageModel(hf_model, tokenizer=tokenizer)
            if input_device(hf_model) not in (None, next(hf_model.parameters()).device):  # offloaded embeddings
                object.__setattr__(nnsight_model, "__class__", _inputs_to_input_device(type(nnsight_model)))
            return NNsightAdapter(nnsight_model, name, remote=remote)
    if backend == "transformer_lens":
        from transformer_lens.model_bridge import TransformerBridge

        offloaded = sorted({str(device) for device in (getattr(hf_model, "hf_device_map", None) or {}).values()}
                           & {"disk", "meta"})
        if offloaded:
            raise ValueError(
                f"The transformer_lens backend cannot run a model offloaded to {', '.join(offloaded)} (its "
                "TransformerBridge bypasses accelerate's hooks there; TransformerLens refuses it too). Use "
                "backend='hf' or 'nnsight' for this device_map, or a device_map without disk offload.")
        # Booting replaces modules of the HF model in place: never do that to the user's object.
        model = hf_model if owned else copy.deepcopy(hf_model)
        bridge = TransformerBridge.boot_transformers(name, hf_model=model, tokenizer=_file_backed_tokenizer(tokenizer))
        return TransformerLensAdapter(bridge, name, tokenizer=tokenizer)
    raise ValueError(f"Unknown backend {backend!r}: choose one of {', '.join(BACKENDS)} (or 'auto').")


def load_model(model: ModelLike, backend: str = "auto", device: str | torch.device | None = None, dtype: Any = None,
               tokenizer: Any = None, remote: bool = False, **kwargs: Any) -> ModelAdapter:
    """Load or wrap a causal LM behind one interface for capture, probing and steering.

    Args:
        model: ``"demo"`` (the embedded demo model), a local ``save_pretrained``
            directory, a hub id (``"gpt2"``, ``"EleutherAI/pythia-70m"``...), or an
            object: a transformers ``PreTrainedModel`` (pass ``tokenizer=``), a
            TransformerLens ``HookedTransformer`` / ``TransformerBridge``, or an nnsight
            model. Objects are wrapped, never reloaded (a PreTrainedModel wrapped for the
            transformer_lens backend is deep-copied first, because booting a bridge
            rewrites its modules).
        backend: ``"hf"``, ``"transformer_lens"``, ``"nnsight"`` or ``"auto"`` (hf for
            names and HF models, the object's own backend otherwise).
        device: where to put a model loaded here (``device_map`` in kwargs for sharding).
        dtype: e.g. ``torch.bfloat16``; passed to ``from_pretrained``.
        tokenizer: the tokenizer for a PreTrainedModel object; for a TransformerLens
            object, overrides its own (whose copy may prepend BOS, which the HF path
            would not).
        remote: nnsight backend only: ``True`` sends traces to NDIF (a name is then built
            from its config on ``meta``, no weights loaded), ``"local"`` or a host URL as in
            nnsight, or an nnsight ``Backend`` object. Capture, :func:`steerlab.steer` (add,
            ablate, set, clamp) and generation run remotely; other site functions may only read.
        **kwargs: passed to ``AutoModelForCausalLM.from_pretrained`` (``device_map``,
            ``revision``...).

    Returns:
        A :class:`ModelAdapter`.

    Example:
        >>> import steerlab
        >>> model = steerlab.load_model("demo")                          # doctest: +SKIP
        >>> model.generate(["q : where is Varo ? a :"], max_new_tokens=2)  # doctest: +SKIP
    """
    if backend not in (*BACKENDS, "auto"):
        raise ValueError(f"Unknown backend {backend!r}: choose one of {', '.join(BACKENDS)} or 'auto'.")

    if isinstance(model, ModelAdapter):
        if backend not in ("auto", model.backend):
            raise ValueError(f"This model is already wrapped for the {model.backend!r} backend; load it again by name.")
        return model
    if _is_instance(model, "transformer_lens", "TransformerBridge") or _is_instance(model, "transformer_lens", "HookedTransformer"):
        _require_backend(backend, "transformer_lens", type(model).__name__)
        return TransformerLensAdapter(model, getattr(model.cfg, "model_name", type(model).__name__), tokenizer=tokenizer)
    if _is_instance(model, "nnsight", "HuggingFaceModel"):
        _require_backend(backend, "nnsight", type(model).__name__)
        name = _model_name(getattr(model._module.config, "_name_or_path", "")) or "nnsight-model"
        return NNsightAdapter(model, name, remote=remote)
    if _is_instance(model, "transformers", "PreTrainedModel"):
        if tokenizer is None:
            raise ValueError("Pass the model's tokenizer too: load_model(hf_model, tokenizer=tokenizer).")
        name = _model_name(getattr(model.config, "_name_or_path", "")) or type(model).__name__
        return _wrap_hf(model, tokenizer, name, "hf" if backend == "auto" else backend, owned=False, remote=remote)
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        source = resolve_source(model)
        if backend == "nnsight" and remote:
            return _remote_nnsight(model, source, tokenizer, remote, dtype=dtype, **kwargs)
        if device is not None and "device_map" not in kwargs:
            kwargs["device_map"] = device
        hf_model, loaded_tokenizer = load_hf(source, dtype=dtype, **kwargs)
        provenance = source_provenance(source)  # GGUF conversions: source file, sha256, quantisation
        name = "demo" if str(model) == "demo" else (provenance or {}).get("model") or _model_name(source)
        adapter = _wrap_hf(hf_model, tokenizer or loaded_tokenizer, name, "hf" if backend == "auto" else backend,
                           owned=True, remote=remote)
        adapter.provenance = provenance
        return adapter
    raise TypeError(
        f"Unsupported model object of type {type(model).__name__}. Pass a name or path, a transformers "
        "PreTrainedModel (with tokenizer=), a TransformerLens HookedTransformer/TransformerBridge, or an nnsight model."
    )


def _remote_nnsight(model: Any, source: str, tokenizer: Any, remote: Any, **kwargs: Any) -> "NNsightAdapter":
    """An nnsight model for remote (NDIF) traces: its structure built from the config on ``meta``, no weights.

    ``LanguageModel(source, dispatch=False)`` reads the config and the tokenizer only; the
    weights live on the server. (A trace run locally, as with ``remote="local"``, makes
    nnsight load them on first use.)
    """
    from nnsight import LanguageModel
    from transformers import AutoTokenizer

    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    kwargs["tokenizer"] = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*deprecated.*")  # LanguageModel -> TransformersModel rename
        nnsight_model = LanguageModel(source, dispatch=False, **kwargs)
    if Path(source).is_dir():
        # nnsight keys a remote model by its Hub id, asking the Hub to canonicalize it; a local
        # folder has none, so it is keyed by its path (what a server holding that folder, such
        # as the loopback server of tests/ndif_loopback_server.py, resolves). nnsight 0.8.1 keeps
        # that canonical id in this cache.
        from nnsight.modeling import huggingface

        getattr(huggingface, "_ID_CACHE", {}).setdefault(nnsight_model.repo_id, nnsight_model.repo_id)
    name = "demo" if str(model) == "demo" else _model_name(source)
    return NNsightAdapter(nnsight_model, name, remote=remote)


def _model_name(source: str) -> str:
    """The name an adapter records: a local directory as its absolute path, a hub id as given.

    One name per model however its folder was typed, so that a vector, probe or SAE built on
    ``"mymodel"`` (which record this name and are checked against it) matches ``"/abs/path/mymodel"``.
    """
    path = Path(source).expanduser() if source else None
    return str(path.resolve()) if path is not None and path.is_dir() else source


def _require_backend(requested: str, native: str, kind: str) -> None:
    if requested not in ("auto", native):
        raise ValueError(f"A {kind} runs on the {native!r} backend; pass backend='{native}' or 'auto', "
                         "or pass the underlying transformers model to use another backend.")
