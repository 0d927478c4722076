"""What one SAE feature is: its top-activating contexts and the tokens its decoder row promotes.

* :func:`feature_view`: for latent ``f``, the ``top`` texts where it fires most (one context per
  text: a window of tokens around the peak, every token's activation), how often it fires, and
  the logit lens of its decoder row (:func:`decoder_logit_lens`);
* :func:`decoder_logit_lens`: the tokens ``W_dec[f]`` promotes and suppresses when read straight
  through the unembedding (``W_U @ W_dec[f]``; the final norm's per-dimension gain is folded in
  where the model has an RMSNorm/LayerNorm weight, its bias and centring are not: a direction has
  no offset). This is the "logit lens of the decoder row" of SAE dashboards (Bricken et al.,
  "Towards Monosemanticity"), not a measured effect on the output: :func:`output_scores` measures that;
* :func:`feature_section` / :func:`write_feature_page`: a report section (token heatmap of the
  contexts, bars of the promoted tokens, plotly, offline) and a self-contained HTML page
  (``steerlab sae-feature`` on the command line).

The first token of each text is left out (``skip_first``, the attention sink the SAE was not
trained on); it is shown greyed in the contexts.

Example:
    >>> view = feature_view(model, sae, 123, texts)                           # doctest: +SKIP
    >>> view.contexts[0]["peak_token"], view.promoted[:3]                     # doctest: +SKIP
    (' Paris', [(' France', 1.9), (' French', 1.7), (' Lyon', 1.5)])
    >>> write_feature_page(view, "feature-123.html")                         # doctest: +SKIP
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from steerlab.models.tokenization import encode as tokenize_texts
from steerlab.sae.activations import encode_latents, token_rows
from steerlab.sae.loading import check_sae

if TYPE_CHECKING:
    from sae_lens import SAE
    from steerlab.models.adapter import ModelLike

WINDOW = (12, 3)  # tokens shown before and after each context's peak


@dataclass
class FeatureView:
    """One feature's evidence.

    Attributes:
        feature, hook_name, model_name: which latent of which SAE, on which model.
        contexts: up to ``top`` dicts, strongest first: ``text_index``, ``peak_index`` (token
            position of the peak), ``activation`` (at the peak), ``peak_token``, ``tokens`` (the
            window's token strings), ``activations`` (one per token; None for the skipped first
            token), ``first`` (position of the window's first token).
        frequency: share of the scored tokens where the latent fires; n_tokens: how many were scored.
        promoted, suppressed: ``(token, logit-lens value)``, largest first / most negative first.
    """

    feature: int
    hook_name: str
    model_name: str
    contexts: list[dict[str, Any]]
    frequency: float
    n_tokens: int
    promoted: list[tuple[str, float]] = field(default_factory=list)
    suppressed: list[tuple[str, float]] = field(default_factory=list)

    def __repr__(self) -> str:
        peaks = ", ".join(repr(c["peak_token"]) for c in self.contexts[:3])
        promoted = ", ".join(repr(t) for t, _ in self.promoted[:3])
        return (f"FeatureView(feature={self.feature}, hook={self.hook_name!r}, fires on {self.frequency:.2%} of "
                f"{self.n_tokens} tokens, top contexts peak at [{peaks}], promotes [{promoted}])")


def _feature_index(sae: SAE, feature: Any) -> int:
    try:
        index = operator.index(feature)
    except TypeError:
        index = None
    if index is None or isinstance(feature, bool) or not 0 <= index < sae.cfg.d_sae:
        raise ValueError(f"Feature {feature!r} is not a latent of this SAE (0..{sae.cfg.d_sae - 1}).")
    return index


def _unembedding(model: ModelLike) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(W_U [vocab, d_model], final-norm gain [d_model] or None)`` of a transformers model."""
    hf_model = getattr(model, "hf_model", None)
    if hf_model is None or hf_model.get_output_embeddings() is None:
        raise ValueError("The logit lens needs the model's unembedding: load the model from transformers "
                         "(steerlab.load_model), not as a bare HookedTransformer.")
    W_U = hf_model.get_output_embeddings().weight.detach().float().cpu()
    base = getattr(hf_model, hf_model.base_model_prefix, None)
    norm = getattr(base, "norm", None) or getattr(base, "ln_f", None) or getattr(base, "final_layer_norm", None)
    gain = getattr(norm, "weight", None)
    if gain is None:
        return W_U, None
    gain = gain.detach().float().cpu()
    if type(norm).__name__.startswith("Gemma"):  # Gemma's RMSNorm scales by (1 + weight)
        gain = 1 + gain
    return W_U, gain


@torch.no_grad()
def decoder_logit_lens(model: ModelLike, sae: SAE, feature: int, n: int = 10
                       ) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """``(promoted, suppressed)``: the ``n`` tokens with the largest and smallest ``W_U @ (gain * W_dec[f])``.

    Values are in logit units per unit of decoder-row norm (the row is normalised first).
    """
    check_sae(sae, model)
    feature = _feature_index(sae, feature)
    W_U, gain = _unembedding(model)
    row = sae.W_dec[feature].detach().float().cpu()
    row = row / row.norm().clamp_min(1e-12)
    logits = W_U @ (row if gain is None else row * gain)  # [vocab]
    top, bottom = logits.topk(n), (-logits).topk(n)
    decode = model.tokenizer.decode
    return ([(decode([int(i)]), float(v)) for v, i in zip(top.values, top.indices)],
            [(decode([int(i)]), float(-v)) for v, i in zip(bottom.values, bottom.indices)])


def feature_view(model: ModelLike, sae: SAE, feature: int, texts: Sequence[str], top: int = 10,
                 window: tuple[int, int] = WINDOW, n_logits: int = 10, skip_first: bool = True,
                 batch_size: int = 32) -> FeatureView:
    """The top-activating contexts of latent ``feature`` over ``texts`` and its decoder row's logit lens.

    Args:
        model, sae: the model and the SAE it belongs to (checked).
        feature: the latent index.
        texts: where to look for activations (the more varied, the better the picture).
        top: how many contexts (at most one per text).
        window: tokens shown before and after the peak.
        n_logits: promoted / suppressed tokens listed.
        skip_first: leave each text's first token out (the attention sink; default).
    """
    point = check_sae(sae, model)
    feature = _feature_index(sae, feature)
    texts = list(texts)
    if not texts:
        raise ValueError("feature_view needs texts to look for activations in: pass a list of strings.")
    acts, text_index, token_index = token_rows(model, sae, texts, skip_first=skip_first, batch_size=batch_size)
    values = encode_latents(sae, acts)[:, feature]  # [n_tokens]
    ids = tokenize_texts(model.tokenizer, texts, max_length=model.context_length)
    order = torch.argsort(values, descending=True)
    contexts, seen = [], set()
    for row in order.tolist():
        if len(contexts) == top or values[row] <= 0:
            break
        text = int(text_index[row])
        if text in seen:
            continue
        seen.add(text)
        contexts.append(_context(model.tokenizer, ids[text], text, int(token_index[row]), float(values[row]),
                                 values[text_index == text], token_index[text_index == text], window))
    promoted, suppressed = decoder_logit_lens(model, sae, feature, n_logits)
    return FeatureView(feature, point.hook_name, model.name, contexts, float((values > 0).float().mean()),
                       len(values), promoted, suppressed)


def _context(tokenizer: Any, ids: list[int], text: int, peak: int, activation: float, values: torch.Tensor,
             positions: torch.Tensor, window: tuple[int, int]) -> dict[str, Any]:
    """The window around ``peak`` with every token's activation (None where the token was not scored)."""
    by_position = dict(zip(positions.tolist(), values.tolist()))
    first, last = max(0, peak - window[0]), min(len(ids), peak + window[1] + 1)
    return {"text_index": text, "peak_index": peak, "activation": activation,
            "peak_token": tokenizer.decode([ids[peak]]), "first": first,
            "tokens": [tokenizer.decode([i]) for i in ids[first:last]],
            "activations": [by_position.get(position) for position in range(first, last)]}


def _shown(token: str) -> str:
    """A token as printable text (spaces as the middle dot, newlines as the return symbol)."""
    return token.replace(" ", "\u00b7").replace("\n", "\u21b5") or "\u2205"


def contexts_figure(view: FeatureView) -> Any:
    """Heatmap of the contexts: one row per context (strongest on top), tokens as cell text, colour = activation."""
    import plotly.graph_objects as go

    width = max((len(c["tokens"]) for c in view.contexts), default=1)
    z = np.full((len(view.contexts), width), np.nan)
    text = np.full((len(view.contexts), width), "", dtype=object)
    for row, context in enumerate(view.contexts):
        for column, (token, value) in enumerate(zip(context["tokens"], context["activations"])):
            text[row, column] = _shown(token)
            z[row, column] = np.nan if value is None else value
    labels = [f"#{i + 1} text {c['text_index']} ({c['activation']:.2f})" for i, c in enumerate(view.contexts)]
    figure = go.Figure(go.Heatmap(z=z, text=text, texttemplate="%{text}", colorscale="Oranges", zmin=0,
                                  y=labels, hovertemplate="%{text}: %{z:.3f}<extra></extra>",
                                  colorbar_title="activation"))
    return figure.update_layout(
        title=f"Feature {view.feature}: top-activating contexts (fires on {view.frequency:.2%} of tokens)",
        yaxis_autorange="reversed", xaxis_visible=False, template="plotly_white",
        height=120 + 34 * max(1, len(view.contexts)))


def logit_lens_figure(view: FeatureView) -> Any:
    """Bars of the tokens the decoder row promotes (green) and suppresses (red)."""
    import plotly.graph_objects as go

    tokens = [_shown(t) for t, _ in view.suppressed[::-1]] + [_shown(t) for t, _ in view.promoted[::-1]]
    values = [v for _, v in view.suppressed[::-1]] + [v for _, v in view.promoted[::-1]]
    figure = go.Figure(go.Bar(x=values, y=[f"{t} " for t in tokens], orientation="h",
                              marker_color=["#c44" if v < 0 else "#2a7" for v in values]))
    return figure.update_layout(title=f"Feature {view.feature}: logit lens of its decoder row",
                                xaxis_title="W_U (gain * unit decoder row)", template="plotly_white",
                                height=140 + 18 * len(tokens))


def feature_section(view: FeatureView) -> Any:
    """A report :class:`~steerlab.report.Section` for the feature."""
    from steerlab.report import Section

    top = ", ".join(repr(c["peak_token"]) for c in view.contexts[:5]) or "none (it never fires on these texts)"
    return Section(
        f"SAE feature {view.feature} ({view.hook_name})",
        [f"Latent {view.feature} of the SAE at {view.hook_name} on {view.model_name} fires on {view.frequency:.2%} "
         f"of {view.n_tokens} tokens (each text's first token left out). Its strongest activations peak at {top}.",
         "Promoted by its decoder row (logit lens): " + ", ".join(repr(t) for t, _ in view.promoted) + "; suppressed: "
         + ", ".join(repr(t) for t, _ in view.suppressed) + ". The logit lens reads the direction straight through "
         "the unembedding; what steering with it does to the output is measured by its output score."],
        tables=[[{"rank": i + 1, "text": c["text_index"], "peak token": c["peak_token"],
                  "activation": c["activation"], "context": "".join(c["tokens"])} for i, c in enumerate(view.contexts)]],
        figures=[contexts_figure(view), logit_lens_figure(view)])


def write_feature_page(view: FeatureView | Sequence[FeatureView], path: str | Path) -> Path:
    """One self-contained HTML page (plotly embedded, works offline) for one or several features."""
    from steerlab.report import write_report

    views = [view] if isinstance(view, FeatureView) else list(view)
    if not views:
        raise ValueError("write_feature_page needs at least one FeatureView.")
    return write_report(path, f"SAE features of {views[0].model_name}", [feature_section(v) for v in views],
                        intro="Top-activating contexts (colour = the latent's activation; the first token of each "
                              "text is not scored) and the tokens each decoder row promotes.")
