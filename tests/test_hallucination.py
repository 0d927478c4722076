"""Token-level hallucination probes without a language model: losses, metrics, labels, probes, layer search."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steerlab.hallucination import losses
from steerlab.hallucination.evaluation import cross_val_scores, detection_metrics
from steerlab.hallucination.labels import reference_labels, spans_to_token_labels
from steerlab.hallucination.layer_search import probe_objective, search_layer
from steerlab.hallucination import HallucinationProbe, LinearTokenProbe, TokenProbe
from steerlab.probes import NotFittedError, ProbeInputError
from steerlab.probes.metrics import (auroc, best_f1_threshold, detection_counts, group_max, recall_at_fpr,
                                     roc_curve)

torch.set_num_threads(1)


def planted_tokens(n_answers: int = 200, d: int = 12, tokens_per_answer: int = 3, nonlinear: bool = False,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Answers of a few tokens; the first token of some answers is hallucinated, visible in X.

    Linear signal: a shift along x0. Nonlinear: sign(x0 * x1) (an XOR no linear probe reads).
    """
    rng = np.random.default_rng(seed)
    n = n_answers * tokens_per_answer
    X = rng.normal(size=(n, d)).astype(np.float32)
    groups = np.repeat(np.arange(n_answers), tokens_per_answer)
    first = np.arange(n) % tokens_per_answer == 0
    X[first, 2] += 3.0  # the entity token looks different from the rest of the answer
    if nonlinear:
        y = (first & (X[:, 0] * X[:, 1] > 0.3)).astype(np.int64)
    else:
        y = (first & (rng.random(n) < 0.4)).astype(np.int64)
        X[:, 0] += 2.5 * y
    return X, y, groups


# ---------------------------------------------------------------- losses


def test_focal_loss_reduces_to_bce_and_down_weights_easy_tokens():
    z = torch.tensor([4.0, -1.0, 0.5, -3.0]); y = torch.tensor([1.0, 1.0, 0.0, 0.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
    assert torch.isclose(losses.focal_loss(z, y, gamma=0.0, alpha=0.5), bce)
    assert losses.focal_loss(z, y, gamma=2.0) < bce  # easy tokens count less


def test_span_losses():
    z = torch.tensor([2.0, -1.0, -4.0, 1.0]); span = torch.tensor([0, 0, 1, 1]); label = torch.tensor([1.0, 0.0])
    assert losses.segment_max(z, span, 2).tolist() == [2.0, 1.0]
    # the smooth max tends to the max as the temperature goes to 0
    assert torch.isclose(losses.soft_span_loss(z, span, label, temperature=1e-3), losses.max_span_loss(z, span, label),
                         atol=1e-4)
    expected = torch.tensor([np.logaddexp(2.0, -1.0), np.logaddexp(-4.0, 1.0)], dtype=torch.float32)
    assert torch.allclose(losses.segment_logsumexp(z, span, 2), expected)
    # sparsity: the probabilities of each span's non-top tokens
    sparsity = (torch.sigmoid(torch.tensor(-1.0)) + torch.sigmoid(torch.tensor(-4.0))) / 2
    assert torch.isclose(losses.sparsity_loss(z, span, 2), sparsity)
    assert losses.sparsity_loss(z, torch.arange(4), 4) == 0  # one-token spans have nothing to sparsify
    assert [losses.annealed_weight(e, 10) for e in (0, 5, 10, 30)] == [0.0, 0.5, 1.0, 1.0]


# ---------------------------------------------------------------- metrics


def test_recall_at_fpr_on_a_hand_made_example():
    # 10 right answers scored 0.0 .. 0.9, 4 hallucinated ones scored 0.95, 0.85, 0.5, 0.05
    y = np.array([0] * 10 + [1] * 4)
    s = np.r_[np.arange(10) / 10, [0.95, 0.85, 0.5, 0.05]]
    assert recall_at_fpr(y, s, 0.01) == 0.25  # only 0.95 is above every negative
    assert recall_at_fpr(y, s, 0.05) == 0.25
    assert recall_at_fpr(y, s, 0.10) == 0.5   # threshold 0.85: one negative (0.9) flagged
    assert recall_at_fpr(y, s, 0.50) == 0.75  # threshold 0.5: negatives 0.5 .. 0.9 flagged
    assert np.isnan(recall_at_fpr(np.ones(3), np.arange(3), 0.1))
    fpr, tpr, thresholds = roc_curve(y, s)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and np.isinf(thresholds[0])
    assert np.isclose(np.trapezoid(tpr, fpr), auroc(y, s))


def test_detection_counts_threshold_and_group_max():
    assert detection_counts([1, 1, 0, 0], [True, False, True, False]) == {"accuracy": 0.5, "precision": 0.5,
                                                                           "recall": 0.5}
    assert best_f1_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.35
    ids, top = group_max(np.array([0.2, 0.7, 0.1, 0.4]), np.array(["b", "a", "a", "b"]))
    assert ids.tolist() == ["a", "b"] and top.tolist() == [0.7, 0.4]


def test_detection_metrics_per_token_and_answer():
    y = np.array([1, 0, 0, 0, 1, 0]); answer = np.array([0, 0, 1, 1, 2, 2])
    s = np.array([0.9, 0.2, 0.6, 0.3, 0.4, 0.1])
    m = detection_metrics(y, s, answer, threshold=0.5)
    assert m["answer"]["n"] == 3 and m["answer"]["n_positive"] == 2
    assert m["answer"]["auroc"] == 0.5  # answer scores 0.9, 0.6, 0.4 for labels 1, 0, 1
    assert m["token"]["auroc"] == 0.875
    assert m["token"]["precision"] == 0.5 and m["token"]["recall"] == 0.5
    assert set(m["token"]) >= {"recall@1%fpr", "recall@5%fpr", "recall@10%fpr", "accuracy"}


# ---------------------------------------------------------------- labels


def test_reference_labels_mark_wrong_entity_tokens():
    tokens = ["draimmir", ".", "teshan", ".", ".", "new", "york", "."]
    answer = np.array([0, 0, 1, 1, 2, 3, 3, 3])
    labels = reference_labels(tokens, answer, ["draimmir", "sokdrouk", "x", "New York", "never answered"])
    assert labels.token.tolist() == [0, 0, 1, 0, 1, 0, 0, 0]  # an empty entity marks the whole answer
    assert labels.answer.tolist() == [0, 1, 1, 0, 1]  # no token at all: wrong


@pytest.fixture(scope="module")
def bpe_tokenizer():
    """A GPT-2-style byte-level BPE tokenizer trained here (no hub): words start with "Ġ"."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    backend.train_from_iterator(["the capital is Paris .", "Berlin . Paris . Parma ."] * 5, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def test_reference_labels_on_subword_tokens(bpe_tokenizer):
    assert bpe_tokenizer.tokenize(" Paris .") == ["ĠParis", "Ġ."]
    tokens = ["ĠParis", "Ġ.", "ĠPar", "is", ".", "ĠParma", "Ġ.", "Ġ.", "ĠParis"]
    answer = np.array([0, 0, 1, 1, 1, 2, 2, 3, 3])
    labels = reference_labels(tokens, answer, ["Paris", "Paris", "Paris", "Paris"], tokenizer=bpe_tokenizer)
    # "ĠParis" and "ĠPar" + "is" are the text " Paris" (right); "Ġ." ends the entity like "."
    assert labels.answer.tolist() == [0, 0, 1, 1]
    assert labels.token.tolist() == [0, 0, 0, 0, 0, 1, 0, 1, 1]  # an empty entity marks the whole answer
    with pytest.raises(ValueError, match="tokenizer=model.tokenizer"):  # joined with spaces, every answer is wrong
        reference_labels(tokens, answer, ["Paris"] * 4)
    with pytest.raises(ValueError, match="tokenizer=model.tokenizer"):  # SentencePiece markers too
        reference_labels(["▁Paris", "."], [0, 0], ["Paris"])


def test_spans_to_token_labels_through_offsets(demo_tokenizer):
    text = "bakli is in sokdrouk . teshan is big"
    labels, answer = spans_to_token_labels(text, [(12, 20, 1), (0, 5, 0)], demo_tokenizer)
    assert labels.tolist() == [0, 0, 0, 1, 0, 0, 0, 0] and answer == 1
    # a span covering part of a word flags the whole token; with special tokens <bos> stays 0
    labels, _ = spans_to_token_labels(text, [(14, 15, 1)], demo_tokenizer, add_special_tokens=True)
    assert labels.tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert spans_to_token_labels(text, [], demo_tokenizer)[1] == 0
    with pytest.raises(ValueError, match="outside the text"):
        spans_to_token_labels(text, [(30, 99, 1)], demo_tokenizer)
    with pytest.raises(ValueError, match="0 or 1"):
        spans_to_token_labels(text, [(0, 5, 2)], demo_tokenizer)
    with pytest.raises(ValueError, match=r"\(start_char, end_char, label\)"):
        spans_to_token_labels(text, [(0, 5)], demo_tokenizer)


@pytest.fixture(scope="module")
def demo_tokenizer():
    from steerlab.world.tokenizer import build_tokenizer
    from steerlab.world.world import generate_world

    return build_tokenizer(generate_world(seed=0))


# ---------------------------------------------------------------- probes


@pytest.mark.parametrize("cls", [HallucinationProbe, LinearTokenProbe])
def test_probe_input_errors(cls):
    X, y, groups = planted_tokens(40)
    probe = cls(max_epochs=2)
    with pytest.raises(NotFittedError, match="fit"):
        probe.predict_proba(X)
    with pytest.raises(ProbeInputError, match="no rows"):
        probe.fit(np.zeros((0, 12)), [])
    with pytest.raises(ProbeInputError, match="only one class"):
        probe.fit(X, np.zeros(len(X)))
    bad = X.copy(); bad[3, 2] = np.nan
    with pytest.raises(ProbeInputError, match="NaN"):
        probe.fit(bad, y)
    with pytest.raises(ProbeInputError, match="one label per row"):
        probe.fit(X, y[:-1])
    with pytest.raises(ProbeInputError, match="one group per row"):
        probe.fit(X, y, groups=groups[:-1])
    with pytest.raises(ProbeInputError, match="select a layer"):
        probe.fit(np.stack([X, X], axis=1), y)
    with pytest.raises(ProbeInputError, match="normalize"):
        probe.clone(normalize="zscore").fit(X, y)
    probe.fit(X, y, groups=groups)
    with pytest.raises(ProbeInputError, match="X has 5 features, but .* is expecting 12 features"):
        probe.predict_proba(X[:, :5])


def test_mlp_learns_a_nonlinear_planted_signal_that_a_linear_probe_cannot():
    X, y, groups = planted_tokens(400, nonlinear=True)
    X_test, y_test, groups_test = planted_tokens(200, nonlinear=True, seed=1)
    mlp = HallucinationProbe(hidden=(64,)).fit(X, y, groups=groups)
    linear = LinearTokenProbe().fit(X, y, groups=groups)
    mlp_auroc = auroc(y_test, mlp.predict_proba(X_test)[:, 1])
    linear_auroc = auroc(y_test, linear.predict_proba(X_test)[:, 1])
    assert mlp_auroc > 0.95, mlp_auroc
    assert linear_auroc < 0.75, linear_auroc
    assert mlp.predict_proba(X_test).shape == (600, 2)
    assert np.allclose(mlp.predict_proba(X_test).sum(1), 1)
    assert mlp.score(X_test, y_test) > 0.9
    assert 0 < mlp.threshold_ < 1 and mlp.best_epoch_ < mlp.n_epochs_ <= mlp.max_epochs


def test_linear_baseline_learns_a_linear_signal():
    X, y, groups = planted_tokens(300)
    X_test, y_test, _ = planted_tokens(200, seed=1)
    probe = LinearTokenProbe().fit(X, y, groups=groups)
    assert auroc(y_test, probe.decision_function(X_test)) > 0.95
    assert probe.n_epochs_ > probe.anneal_epochs  # early stopping waits for the annealing
    assert sum(p.numel() for p in probe.network_.parameters()) == 13  # one weight per feature + bias


def test_fit_is_seeded_deterministic_and_leaves_the_global_rng_alone():
    X, y, groups = planted_tokens(100)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = HallucinationProbe(max_epochs=15).fit(X, y, groups=groups).predict_proba(X)
    after = torch.rand(1)
    b = HallucinationProbe(max_epochs=15).fit(X, y, groups=groups).predict_proba(X)
    c = HallucinationProbe(max_epochs=15, random_state=1).fit(X, y, groups=groups).predict_proba(X)
    assert torch.equal(before, after)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("cls, kwargs", [(HallucinationProbe, {"hidden": (16, 8), "normalize": "layer_norm"}),
                                         (LinearTokenProbe, {"anneal_epochs": 3})])
def test_save_load_round_trip(tmp_path, cls, kwargs):
    X, y, groups = planted_tokens(60)
    probe = cls(max_epochs=8, **kwargs).fit(X, y, groups=groups)
    path = probe.save(tmp_path / "probe")
    assert path.suffix == ".safetensors" and (tmp_path / "probe.json").is_file()
    loaded = TokenProbe.load(tmp_path / "probe")
    assert type(loaded) is cls and loaded.get_params() == probe.get_params()
    assert np.array_equal(loaded.predict_proba(X), probe.predict_proba(X))
    assert loaded.threshold_ == probe.threshold_ and loaded.history_ == probe.history_
    assert repr(loaded) == repr(probe) and "fitted: d=12" in repr(probe)
    other = LinearTokenProbe if cls is HallucinationProbe else HallucinationProbe
    with pytest.raises(ValueError, match=f"not a {other.__name__}"):
        other.load(tmp_path / "probe")
    with pytest.raises(FileExistsError):
        probe.save(tmp_path / "probe")


def test_predict_proba_is_stable_for_large_logits():
    import warnings

    X, y, groups = planted_tokens(40)
    probe = LinearTokenProbe(max_epochs=3, anneal_epochs=1).fit(X, y, groups=groups)
    far = X * 1e6  # logits of about +-1e6: exp overflows in a naive sigmoid
    logits = probe.decision_function(far)
    assert np.abs(logits).max() > 1e3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = probe.predict_proba(far)[:, 1]
    assert np.array_equal(p, (logits > 0).astype(float))
    z = probe.decision_function(X)  # ordinary logits: the usual logistic
    assert np.allclose(probe.predict_proba(X)[:, 1], 1 / (1 + np.exp(-z)), atol=1e-12)


def test_repr_names_changed_parameters():
    assert repr(HallucinationProbe(span_weight=0.0)) == "HallucinationProbe(span_weight=0.0)  [not fitted]"


def test_cross_val_scores_keep_answers_whole():
    X, y, groups = planted_tokens(300)
    scores = cross_val_scores(LinearTokenProbe(), X, y, groups, n_splits=3)
    assert scores.shape == (900,) and auroc(y, scores) > 0.9
    # plain lists work too, with the same out-of-fold scores
    probe = LinearTokenProbe(max_epochs=5, anneal_epochs=1)
    from_lists = cross_val_scores(probe, X.tolist(), y.tolist(), groups.tolist(), n_splits=3)
    assert np.array_equal(from_lists, cross_val_scores(probe, X, y, groups, n_splits=3))
    with pytest.raises(ValueError, match="one label and one answer id per token row"):
        cross_val_scores(probe, X, y[:-1], groups)


# ---------------------------------------------------------------- layer search


def test_optuna_finds_the_planted_layer_with_fewer_fits_than_layers():
    rng = np.random.default_rng(0)
    n_layers, planted = 12, 8
    _, y, groups = planted_tokens(150, d=6)
    hidden = rng.normal(size=(len(y), n_layers, 6)).astype(np.float32)
    for layer in range(n_layers):  # signal strongest at the planted layer, fading with distance
        hidden[:, layer, 0] += 2.5 * np.exp(-abs(layer - planted) / 1.5) * y
    objective = probe_objective(LinearTokenProbe(max_epochs=40, anneal_epochs=5), hidden, list(range(n_layers)), y,
                                groups)
    result = search_layer(objective, list(range(n_layers)), n_trials=8, n_startup_trials=3, seed=0, exhaustive=True)
    assert result.exhaustive_best_layer == planted
    assert result.best_layer == planted and result.n_fits < n_layers
    assert len(result.trials) == 8 and result.to_dict()["exhaustive"][str(planted)] == round(result.best_value, 4)


def test_search_layer_refuses_no_layers():
    with pytest.raises(ValueError, match="empty"):
        search_layer(lambda layer: 0.0, [])


def test_search_layer_never_picks_a_nan_layer():
    quality = {layer: 1 - abs(layer - 5) / 10 for layer in range(8)}
    quality[5] = quality[6] = float("nan")  # e.g. AUROC of a one-class validation split; 5 was the true peak
    result = search_layer(lambda layer: quality[layer], list(range(8)), n_trials=12, n_startup_trials=3, seed=0,
                          exhaustive=True)
    assert result.best_layer == 4 and result.best_value == quality[4]
    assert result.exhaustive_best_layer == 4
    assert all(np.isfinite(value) for _, value in result.trials)  # failed (NaN) trials are left out
    assert np.isnan(result.exhaustive[5])
    with pytest.raises(ValueError, match="not finite at any evaluated layer"):
        search_layer(lambda layer: float("nan"), [0, 1, 2], n_trials=3, n_startup_trials=1)


def test_probe_objective_refuses_a_one_class_validation_split_and_takes_lists():
    _, y, groups = planted_tokens(120, d=4)
    hidden = np.random.default_rng(0).normal(size=(len(y), 2, 4)).astype(np.float32)
    hidden[:, 1, 0] += 3 * y  # the signal is at layer 1
    one_wrong_answer = np.zeros_like(y)
    one_wrong_answer[0] = 1  # a single hallucinated answer cannot be on both sides of the split
    with pytest.raises(ValueError, match="one-class validation split.*val_fraction"):
        probe_objective(LinearTokenProbe(), hidden, [0, 1], one_wrong_answer, groups)
    probe = HallucinationProbe(max_epochs=30)
    from_lists = probe_objective(probe, hidden.tolist(), [0, 1], y.tolist(), groups.tolist())
    assert from_lists(1) == probe_objective(probe, hidden, [0, 1], y, groups)(1) > 0.9 > from_lists(0)
    with pytest.raises(ValueError, match="one label and one answer id per token row"):
        probe_objective(LinearTokenProbe(), hidden, [0, 1], y[:-1], groups)


# ---------------------------------------------------------------- live scoring and the stage's report, without a model


def test_stream_layer_and_site_default_to_the_probe_record():
    from steerlab.hallucination.live import probe_site

    probe = LinearTokenProbe()
    assert probe_site(probe, 2, None, n_layers=4) == ("resid_post", 2)
    with pytest.raises(ValueError, match="records no layer"):
        probe_site(probe, None, None, n_layers=4)
    probe.layer_, probe.site_ = 3, "mlp_out"
    assert probe_site(probe, None, None, n_layers=4) == ("mlp_out", 3)
    assert probe_site(probe, -1, "mlp_out", n_layers=4) == ("mlp_out", 3)
    with pytest.raises(ValueError, match="fitted on layer 3"):
        probe_site(probe, 2, None, n_layers=4)
    with pytest.raises(ValueError, match="fitted on site 'mlp_out'"):
        probe_site(probe, None, "resid_post", n_layers=4)


def test_live_check_counts_only_comparable_examples():
    from steerlab.pipeline.hallucination_stage import offline_difference

    streams = [[("paris", 0.25), (".", 0.5)], [("rome", 0.9)]]
    assert offline_difference(streams, [(["berlin", "."], np.array([0.2, 0.5])), (["oslo"], np.array([0.9]))]) \
        == (None, 0)  # no streamed answer matches its offline tokens: nothing was checked
    largest, n = offline_difference(streams, [(["paris", "."], np.array([0.2, 0.5])), (["oslo"], np.array([0.9]))])
    assert n == 1 and np.isclose(largest, 0.05)


def _stage_metrics(probe_auroc: float, baseline_auroc: float, wrong: int, confident_wrong: int) -> dict:
    method = lambda auroc: {"answer": {"auroc": auroc}}  # noqa: E731
    return {"methods": {"mlp": method(probe_auroc), "mlp_plus": method(probe_auroc - 0.01),
                        "linear": method(probe_auroc - 0.02), "max_prob": method(baseline_auroc),
                        "entropy": method(baseline_auroc - 0.01)},
            "data": {"test": {"wrong_answers": wrong}}, "confident": {"n_wrong": confident_wrong},
            "train_cv": {"mlp_plus": 0.93, "mlp_plus_probe_alone": 0.9, "max_prob": 0.91, "entropy": 0.9}}


def test_stage_verdict_follows_the_numbers():
    from steerlab.pipeline.hallucination_report import _confident_reading, _verdict

    won = _verdict(_stage_metrics(0.95, 0.90, 80, 10))
    assert won.startswith("On the test split the MLP probe (Liang & Wang) beats") and "holds without test data" in won
    lost = _verdict(_stage_metrics(0.85, 0.90, 80, 10))
    assert "do NOT beat" in lost and "70 of the 80 wrong answers had a first-token probability of at most" in lost
    assert "doubt" not in _verdict(_stage_metrics(0.85, 0.90, 80, 60))  # most errors were confident: no such claim
    c = {name: {"auroc": a} for name, a in zip(("mlp", "mlp_plus", "linear", "max_prob", "entropy"),
                                                (0.6, 0.9, 0.7, 0.8, 0.75))}
    assert "better than output confidence (AUROC 0.900 vs 0.800" in _confident_reading(c)
    c["mlp_plus"]["auroc"] = 0.7
    assert "no probe separates" in _confident_reading(c)


# ---------------------------------------------------------------- the KL term of the joint loss


def test_dropout_kl_is_the_symmetric_bernoulli_kl():
    z, other = torch.tensor([2.0, -1.0, 0.0, 30.0]), torch.tensor([2.0, 1.0, -0.5, -30.0])
    p, q = torch.sigmoid(z.double()), torch.sigmoid(other.double())
    kl = lambda a, b: a * torch.log(a / b) + (1 - a) * torch.log((1 - a) / (1 - b))  # noqa: E731
    expected = ((kl(p, q) + kl(q, p)) / 2)[:3]  # the last pair underflows in float64 probabilities
    assert torch.allclose(losses.dropout_kl(z[:3], other[:3]).double(), expected.mean(), atol=1e-6)
    assert losses.dropout_kl(z, z) == 0 and torch.isfinite(losses.dropout_kl(z, other))  # stable for large logits
    assert torch.isclose(losses.dropout_kl(z, other), losses.dropout_kl(other, z))


def test_kl_term_trains_differently_only_with_dropout():
    X, y, groups = planted_tokens(120)
    fit = lambda **kw: HallucinationProbe(max_epochs=6, **kw).fit(X, y, groups=groups).predict_proba(X)  # noqa: E731
    assert not np.array_equal(fit(kl_weight=1.0, dropout=0.2), fit(kl_weight=0.0, dropout=0.2))
    assert np.array_equal(fit(kl_weight=1.0, dropout=0.0), fit(kl_weight=0.0, dropout=0.0))  # both passes agree
    with pytest.raises(ProbeInputError, match="kl_weight"):
        HallucinationProbe(kl_weight=-1.0).fit(X, y, groups=groups)


# ---------------------------------------------------------------- free-text answers checked through their first mention


def test_country_table_aliases_adjectives_and_phrases_read_past():
    from steerlab.hallucination import country_table

    table = country_table()
    for name in ("USA", "U.S.", "United States", "the United States of America", "America", "American"):
        assert table.same(name, "the United States"), name
    assert table.same("Russian Federation", "Russia") and table.same("Burma", "Myanmar")
    assert table.same("Korean", "North Korea") and table.same("Korean", "South Korea")
    assert not table.same("Niger", "Nigeria") and not table.same("Republic of the Congo",
                                                                 "the Democratic Republic of the Congo")
    find = lambda text, masks=(): table.find(text, masks)  # noqa: E731
    assert find("in the Democratic Republic of the Congo.").canonical == {"Democratic Republic of the Congo"}
    assert find("the People's Republic of China").canonical == {"China"}  # not the Republic of China inside it
    assert find("It lies on the South China Sea, in Vietnam").text == "Vietnam"
    assert find("a South American country, Chile").text == "Chile"
    assert find("the Indian state of Gujarat").canonical == {"India"}
    assert find("Benin City is in Benin", ["Benin City"]).start == 17  # the asked city's own name is masked
    assert find("made of china, in turkey") is None  # case-sensitive: words, not countries
    assert find("somewhere in Africa") is None
    with pytest.raises(ValueError, match="not a name in this table"):
        table.canonical("Atlantis")


def test_mention_table_from_accepted_spellings():
    from steerlab.hallucination import MentionTable

    table = MentionTable.from_accepted([["yen", "Japanese yen"], ["euro", "euros"], ["US dollar", "dollar"]],
                                       extra=["peso"])
    assert table.find("The currency is the Japanese Yen.").canonical == {"yen"}  # longest, case-insensitive
    assert table.same("dollar", "US dollar") and not table.same("peso", "euro")
    assert table.find("It uses the Mexican peso").canonical == {"peso"}
    with pytest.raises(ValueError, match="no accepted answer"):
        MentionTable.from_accepted([[]])


@pytest.fixture(scope="module")
def sentencepiece_tokenizer():
    """A SentencePiece-style (Metaspace "▁") unigram tokenizer trained here, as Gemma's and Llama 2's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.Unigram())
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=120, unk_token="<unk>", special_tokens=["<unk>"], show_progress=False)
    backend.train_from_iterator(["The city is in the Russian Federation .", "It is in the United States of America ."
                                 " Kenya , Niger and Nigeria ."] * 10, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")


@pytest.mark.parametrize("tokenizer_name", ["bpe_tokenizer", "sentencepiece_tokenizer"])
def test_check_answers_labels_the_wrong_mention_tokens(request, tokenizer_name):
    from steerlab.hallucination import check_answers, checked_answers, country_table, token_spans

    tokenizer = request.getfixturevalue(tokenizer_name)
    texts = ["The city is in the Russian Federation . It is", "It is in the United States of America .",
             "It is in Niger and Nigeria .", "The city is ."]
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    text, spans = token_spans(tokenizer, ids[0])
    assert text.strip() == texts[0] and [text[a:b] for a, b in spans] and spans[-1][1] == len(text)
    claims = check_answers(tokenizer, ids, ["Russia", "the United States", "Nigeria", "Kenya"], country_table())
    assert [c.outcome for c in claims] == ["right", "right", "wrong", "none"]
    assert claims[0].mention.text == "Russian Federation" and claims[2].mention.text == "Niger"
    wrong = claims[2]
    flagged = "".join(tokenizer.decode(ids[2][k]) for k in np.flatnonzero(wrong.labels))
    assert flagged.replace("▁", "").strip() == "Niger"  # only the wrong mention's tokens, the rest 0
    flagged_rows = np.flatnonzero(wrong.labels)  # one contiguous run, the last checked tokens; "and Nigeria" unchecked
    assert flagged_rows.tolist() == list(range(flagged_rows[0], wrong.n_checked)) and wrong.n_checked < len(ids[2])
    assert claims[0].n_checked < len(ids[0]) and not claims[0].labels.any()  # ". It is" comes after: unchecked
    kept, labels = checked_answers(ids, claims)
    assert [len(k) for k in kept] == [c.n_checked for c in claims[:3]] + [0] and labels.sum() == wrong.labels.sum()
    kept, labels = checked_answers(ids, claims, keep_unanswered=True)
    assert len(kept[3]) == len(ids[3]) and labels[-len(ids[3]):].all()  # an answer naming nothing: every token 1
    with pytest.raises(ValueError, match="one of each per question"):
        check_answers(tokenizer, ids, ["Russia"], country_table())


def test_masks_blank_the_first_echo_and_a_claim_pattern_catches_made_up_answers(bpe_tokenizer):
    from steerlab.hallucination import MentionTable, check_answers

    table = MentionTable.from_accepted([["Kuwait City"], ["Bamako"]], extra=["Paris"])
    assert table.find("The capital of Kuwait is Kuwait City.", ["Kuwait"]).text == "Kuwait City"  # first echo only
    texts = ["The capital of Mali is KADAMA.", "The capital of Mali is Paris.", "I do not know"]
    ids = [bpe_tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    plain = check_answers(bpe_tokenizer, ids, ["Bamako"] * 3, table, [["Mali"]] * 3)
    assert [c.outcome for c in plain] == ["none", "wrong", "none"]
    claims = check_answers(bpe_tokenizer, ids, ["Bamako"] * 3, table, [["Mali"]] * 3,
                           claim_pattern=r"\bis\s+(?:the\s+)?([^.,\n]+)")
    assert [c.outcome for c in claims] == ["wrong", "wrong", "none"]
    assert claims[0].mention.text == "KADAMA" and claims[0].mention.canonical == frozenset()
    flagged = bpe_tokenizer.decode([ids[0][k] for k in np.flatnonzero(claims[0].labels)])
    assert flagged.strip() == "KADAMA" and claims[1].mention.text == "Paris"  # a known wrong answer comes first
