"""Token-level hallucination detection on the model's own generations (issue 7).

The workflow of Liang & Wang ("token-level hallucination detection with MLP probes",
arXiv 2512.20949) and of the linear probes it extends (Obeso et al., arXiv 2509.03531):

1. :func:`generate_and_capture`: greedy answers, the hidden states of every generated
   token ``[n_tokens, n_layers, d_model]``, and each token's output confidence;
2. :func:`reference_labels` (checked against a reference answer), :func:`check_answers`
   (free-text answers checked through their first mention of an answer, with an alias table
   such as :func:`country_table`) or :func:`spans_to_token_labels` (annotated character spans)
   -> token and answer labels;
3. :class:`HallucinationProbe` (MLP, joint loss) or
   :class:`LinearTokenProbe` on one layer (scikit-learn estimators, :mod:`.probes`), chosen with
   :func:`search_layer` (Bayesian optimisation, optuna TPE);
4. :func:`detection_metrics` per token and per answer against the output-confidence
   baselines (:func:`confidence_scores`), :func:`roc_figure`, :func:`token_figure`;
5. :func:`stream_scores`: a hallucination score for each token as it is generated.

Names are imported lazily, so the probes and their losses load without the model code.

Example:
    >>> import steerlab
    >>> from steerlab.datasets import load
    >>> from steerlab.hallucination import generate_and_capture, reference_labels
    >>> from steerlab.hallucination import HallucinationProbe
    >>> model = steerlab.load_model("demo")                                      # doctest: +SKIP
    >>> qa = load("demo/qa", split="train")                                      # doctest: +SKIP
    >>> gen = generate_and_capture(model, qa.texts, layers=[3], progress=False)  # doctest: +SKIP
    >>> labels = reference_labels(gen.tokens, gen.answer_index, qa.answers, tokenizer=model.tokenizer)  # doctest: +SKIP
    >>> probe = HallucinationProbe().fit(gen.layer(3), labels.token, groups=gen.answer_index)  # doctest: +SKIP
"""

from __future__ import annotations

from steerlab.lazy_exports import lazy_exports

_LAZY = {
    "GeneratedTokens": "generation", "generate_and_capture": "generation", "capture_answers": "generation",
    "capture_token_ids": "generation", "generate_answers": "generation",
    "MentionTable": "mentions", "Mention": "mentions", "Claim": "mentions", "check_answers": "mentions",
    "checked_answers": "mentions", "token_spans": "mentions", "country_table": "countries",
    "TokenLabels": "labels", "reference_labels": "labels", "spans_to_token_labels": "labels",
    "confidence_scores": "evaluation", "detection_metrics": "evaluation", "method_table": "evaluation",
    "LayerSearchResult": "layer_search", "search_layer": "layer_search",
    "stream_scores": "live",
    "HallucinationProbe": "probes", "LinearTokenProbe": "probes", "TokenProbe": "probes",
    "roc_figure": "figures", "token_figure": "figures", "token_html": "figures",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(
    "steerlab.hallucination", {name: f"steerlab.hallucination.{module}" for name, module in _LAZY.items()})
