"""Live scoring: a hallucination score for each token as the model generates it.

Streams ``(token, P(hallucinated))`` pairs (Liang & Wang, "Neural Probe-Based Hallucination
Detection for Large Language Models"; Obeso et al., "Real-Time Detection of Hallucinated
Entities in Long-Form Generation" run their probes the same way, token by token during
generation). Decoding is greedy with the KV cache
(:meth:`~steerlab.models.adapter.ModelAdapter.forward_cached`): the prompt is run once, then
each generated token is run alone through the model, which gives at once its own hidden state
(what the probe reads) and the next-token distribution (the next token, and the output
confidence). The site function that reads the state is attached for each step only, so no
hook outlives a step, whether the caller consumes the stream, stops early or an exception is
raised. The scores equal the offline ones
(:func:`~steerlab.hallucination.generation.generate_and_capture` + ``probe.predict_proba``)
on the same tokens (tests: to 1e-5 on the demo model and on SmolLM2-135M-Instruct); the cost
per token is one one-token forward pass plus the probe (``benchmarks/results_real_hallucination.md``
times it against plain generation).

Any probe with ``predict_proba`` works: steerlab's token probes record their layer and site
(``probe.layer_``, ``probe.site_``), the linear probes of :mod:`steerlab.probes` record
``layers_`` and ``site_`` (a probe fitted on several layers is narrowed to ``layer`` with
``probe.at_layer(layer)``); a plain scikit-learn estimator records nothing, so pass ``layer=``.

Example:
    >>> import steerlab
    >>> from steerlab.hallucination import stream_scores
    >>> model = steerlab.load_model("demo")                                          # doctest: +SKIP
    >>> for token, score in stream_scores(model, probe, "q : where is bakli ? a :", layer=3):  # doctest: +SKIP
    ...     print(f"{token} {score:.2f}")
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from steerlab.hallucination.evaluation import with_output_odds
from steerlab.hallucination.generation import STATES, next_token_confidence, probe_features, stop_token_ids
from steerlab.models.adapter import ModelAdapter
from steerlab.models.tokenization import encode


def stream_scores(adapter: ModelAdapter, probe: Any, prompt: str, *, layer: int | None = None,
                  site: str | None = None, state: str = "token", confidence: bool = False,
                  with_output_odds: bool = False, max_new_tokens: int = 20, chat_template: bool = False
                  ) -> Iterator[tuple[str, float]]:
    """Yield ``(token, P(hallucinated))`` for each greedily generated token, as soon as it is scored.

    Args:
        adapter: the model.
        probe: a fitted probe (``predict_proba`` on ``[n, width]``) for ``site`` at ``layer``.
        prompt: the question.
        layer, site: where the probe reads the hidden state. Default: what the probe records
            (``layer`` / ``layer_`` / a one-layer ``layers_``; ``site`` / ``site_``; site ``resid_post``
            when it records none); a value that contradicts the probe's record is an error.
        state, confidence: what the probe was fitted on (``GeneratedTokens.features``): ``"token"``,
            ``"producing"`` or ``"both"``, with or without the two output-confidence columns.
        with_output_odds: combine the probe's score with the output's ``1 - max probability``
            (:func:`~steerlab.hallucination.evaluation.with_output_odds`), as steerlab's detector does.
        max_new_tokens: stop after this many tokens (or at the EOS token, which is not yielded).
        chat_template: wrap the prompt as a user message of the tokenizer's chat template.

    The probe, layer, site and prompt length are checked when this is called, before the first
    token is generated.
    """
    if state not in STATES:
        raise ValueError(f"state must be one of {STATES}, got {state!r}.")
    site, layer = probe_site(probe, layer, site, adapter.n_layers)
    point = adapter.point(site, layer)
    probe = single_layer_probe(probe, layer)
    ids = encode(adapter.tokenizer, [prompt], max_length=adapter.context_length, strict=True,
                 chat_template=chat_template)[0]
    if adapter.context_length is not None and len(ids) + max_new_tokens > adapter.context_length:
        raise ValueError(f"The prompt has {len(ids)} tokens; with max_new_tokens={max_new_tokens} the stream would "
                         f"pass the model's context of {adapter.context_length} tokens: lower max_new_tokens.")
    return _stream(adapter, probe, ids, point, state, confidence, with_output_odds, max_new_tokens)


def _stream(adapter: ModelAdapter, probe: Any, ids: list[int], point: Any, state: str, confidence: bool,
            output_odds: bool, max_new_tokens: int) -> Iterator[tuple[str, float]]:
    """The generator behind :func:`stream_scores`: one cached forward for the prompt, then one per token."""
    stop_ids = stop_token_ids(adapter)
    seen: dict[str, torch.Tensor] = {}

    def read_newest(activation: torch.Tensor) -> None:  # [1, new, d]: the newest position's state
        seen["state"] = activation[0, -1:].detach().to("cpu", torch.float32)

    def step(new_ids: list[int], cache: Any) -> tuple[torch.Tensor, torch.Tensor, Any]:
        with torch.no_grad():
            logits, cache = adapter.forward_cached(torch.tensor([new_ids]), cache, [(point, read_newest)])
        return seen["state"], logits[0, -1:].to("cpu", torch.float32), cache

    producing, producing_logits, cache = step(ids, None)  # the state and distribution that choose token 0
    for _ in range(max_new_tokens):
        token = int(producing_logits.argmax())
        if token in stop_ids:
            return
        own, next_logits, cache = step([token], cache)
        max_prob, entropy = next_token_confidence(producing_logits)
        features = probe_features(own, producing, torch.stack([max_prob, entropy], dim=-1) if confidence else None,
                                  state)
        score = probe.predict_proba(features.numpy())[:, 1]
        score = float((with_output_odds(score, max_prob.numpy()) if output_odds else score)[0])
        yield adapter.tokenizer.convert_ids_to_tokens(token), score
        producing, producing_logits = own, next_logits


def recorded_layer(probe: Any) -> int | None:
    """The one layer a fitted probe records: ``layer_`` (token probes), else a one-entry ``layers_``
    (linear probes); None when it records none."""
    value = getattr(probe, "layer_", None)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    layers = getattr(probe, "layers_", None)
    return int(layers[0]) if layers is not None and len(layers) == 1 else None


def recorded_layers(probe: Any) -> list[int] | None:
    """Every layer a fitted probe was fitted on (several for a per-layer linear probe), or None."""
    layer = recorded_layer(probe)
    if layer is not None:
        return [layer]
    layers = getattr(probe, "layers_", None)
    return [int(value) for value in layers] if layers else None


def probe_site(probe: Any, layer: int | None, site: str | None, n_layers: int) -> tuple[str, int]:
    """``(site, layer)`` to read for ``probe``: the arguments, else what the probe records; a clash is an error."""
    from steerlab.sites import resolve_layer

    if not callable(getattr(probe, "predict_proba", None)):
        raise ValueError(f"The probe ({type(probe).__name__}) has no predict_proba: pass a fitted probe.")
    layers = recorded_layers(probe)
    recorded_site = getattr(probe, "site_", None) if isinstance(getattr(probe, "site_", None), str) else None
    if layer is None:
        if layers is None:
            raise ValueError("The probe records no layer (probe.layer_ is None): pass layer=..., the layer it was "
                             "fitted on.")
        if len(layers) > 1:
            raise ValueError(f"The probe was fitted on layers {layers}: pass layer=... to score with one of them.")
        layer = layers[0]
    layer = resolve_layer(layer, n_layers)
    if layers is not None and layer not in [resolve_layer(value, n_layers) for value in layers]:
        fitted = f"layer {layers[0]}" if len(layers) == 1 else f"layers {layers}"
        raise ValueError(f"layer={layer} but the probe was fitted on {fitted} (probe.layer_ / probe.layers_): "
                         "leave layer out to use the probe's, or pass a matching one.")
    site = site or recorded_site or "resid_post"
    if recorded_site is not None and site != recorded_site:
        raise ValueError(f"site={site!r} but the probe was fitted on site {recorded_site!r} (probe.site_): "
                         "leave site out to use the probe's, or pass the matching one.")
    return site, layer


def single_layer_probe(probe: Any, layer: int) -> Any:
    """A probe that scores ``[n, d]`` rows of ``layer``: a per-layer linear probe narrowed with ``probe.at_layer(layer)``,
    any other probe as it is."""
    if getattr(probe, "n_layers_", None) is not None and callable(getattr(probe, "at_layer", None)):
        return probe.at_layer(layer)
    return probe
