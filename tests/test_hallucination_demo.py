"""Token-level hallucination detection on the demo model: capture exactness, live scoring, hooks, the stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import steerlab
from steerlab.hallucination import generate_and_capture, reference_labels, stream_scores
from steerlab.hallucination.generation import capture_answers
from steerlab.hallucination import HallucinationProbe
from steerlab.probes import ProbeInputError

DEMO = Path(__file__).parents[1] / "assets" / "demo-model"
pytestmark = pytest.mark.skipif(not (DEMO / "config.json").is_file(), reason="assets/demo-model not trained yet")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    return steerlab.load_model("demo")


@pytest.fixture(scope="module")
def qa():
    from steerlab.datasets import load

    return load("demo/qa", split="train")


@pytest.fixture(scope="module")
def generated(model, qa):
    return generate_and_capture(model, qa.texts, progress=False)


@pytest.fixture(scope="module")
def probe(generated, qa):
    labels = reference_labels(generated.tokens, generated.answer_index, qa.answers)
    return HallucinationProbe(max_epochs=20).fit(generated.layer(2), labels.token, groups=generated.answer_index)


def test_capture_matches_the_generation_pass_and_a_plain_hf_forward(model, qa):
    from conftest import block_outputs

    prompts = qa.texts[:6]  # prompts of different lengths: generation pads them on the left
    gen = generate_and_capture(model, prompts, max_new_tokens=4, batch_size=6, progress=False)
    assert gen.hidden.shape == (len(gen), model.n_layers, model.d_model) and gen.layers == [0, 1, 2, 3]
    # 1. the states seen during (KV-cached, left-padded) generation: step k reads generated token k - 1
    batch = model.tokenize(prompts, padding_side="left")
    with steerlab.record(model, "resid_post") as recorded:
        model.generate_ids(batch, max_new_tokens=4)
    checked = 0
    for row in range(len(gen)):
        answer, position = gen.answer_index[row], gen.position[row]
        for slot, layer in enumerate(gen.layers):
            steps = recorded[f"blocks.{layer}.hook_resid_post"]
            if position + 1 < len(steps):
                torch.testing.assert_close(gen.hidden[row, slot], steps[position + 1][answer, 0], atol=1e-4, rtol=0)
                checked += 1
    assert checked >= len(prompts) * model.n_layers  # at least every entity token, at every layer
    # 2. plain transformers, each text alone (no padding, no cache), block outputs by torch hooks
    texts = [p + " " + a for p, a in zip(prompts, gen.answers)]
    for answer, reference in enumerate(block_outputs(DEMO, texts)):
        rows = np.flatnonzero(gen.answer_index == answer)
        expected = reference[:, -len(rows):].transpose(0, 1)  # [answer tokens, n_layers, d]
        torch.testing.assert_close(gen.hidden[rows], expected, atol=1e-4, rtol=0)
        # the producing states sit one position earlier: the prompt's last token, then the answer's own
        before = reference[:, -len(rows) - 1:-1].transpose(0, 1)
        torch.testing.assert_close(gen.producing[rows], before, atol=1e-4, rtol=0)
    both = gen.features(2, state="both", confidence=True)
    assert both.shape == (len(gen), 2 * model.d_model + 2)
    assert torch.equal(both[:, :model.d_model], gen.layer(2)) and np.allclose(both[:, -2].numpy(), gen.max_prob)


def test_token_confidence_features(model, qa, generated):
    from steerlab.organism.evaluate import qa_answers

    correct, confidence, answers = qa_answers(model.hf_model, model.tokenizer, qa)
    first = generated.position == 0
    assert np.allclose(generated.max_prob[first], confidence, atol=1e-5)
    assert [generated.tokens[i] for i in np.flatnonzero(first)] == answers
    assert np.allclose(generated.token_prob, generated.max_prob)  # greedy: the token is the argmax
    assert (generated.entropy >= 0).all() and (generated.entropy <= np.log(len(model.tokenizer)) + 1e-4).all()
    labels = reference_labels(generated.tokens, generated.answer_index, qa.answers)
    assert np.array_equal(labels.answer, (~correct).astype(int))  # same checker as the model card's
    assert labels.token.sum() == labels.answer.sum()  # one entity token per answer in the demo world
    assert "." not in {generated.tokens[i] for i in np.flatnonzero(labels.token)}


def test_capture_answers_lines_up_with_span_labels(model):
    from steerlab.hallucination import spans_to_token_labels

    answer = "sokdrouk . teshan"
    gen = capture_answers(model, ["q : where is bakli ? a :"], [answer], layers=[-1], progress=False)
    labels, whole = spans_to_token_labels(answer, [(11, 17, 1)], model.tokenizer)
    assert gen.tokens == ["sokdrouk", ".", "teshan"] and labels.tolist() == [0, 0, 1] and whole == 1
    assert gen.layers == [3] and gen.layer(3).shape == (3, model.d_model)
    with pytest.raises(ValueError, match="not captured"):
        gen.layer(0)


def test_live_scores_equal_offline_scores_and_leave_no_hooks(model, qa, probe, generated):
    prompts = qa.texts[:3]
    offline = generate_and_capture(model, prompts, layers=[2], progress=False)
    expected = probe.predict_proba(offline.layer(2))[:, 1]
    with steerlab.no_leftover_hooks(model):
        for i, prompt in enumerate(prompts):
            streamed = list(stream_scores(model, probe, prompt, layer=2, max_new_tokens=8))
            rows = np.flatnonzero(offline.answer_index == i)
            assert [token for token, _ in streamed] == [offline.tokens[r] for r in rows]
            assert np.allclose([score for _, score in streamed], expected[rows], atol=1e-5)
        # a consumer that stops after the first token, and a probe that fails inside the stream
        first = next(iter(stream_scores(model, probe, prompts[0], layer=2)))
        assert first[0] == offline.tokens[0]
        wrong_layer_probe = HallucinationProbe(max_epochs=2).fit(np.random.default_rng(0).normal(size=(40, 7)),
                                                                 [0, 1] * 20)
        with pytest.raises(ProbeInputError, match="X has .* features, but"):
            list(stream_scores(model, wrong_layer_probe, prompts[0], layer=2))
    # steerlab's variant: both states and the output confidence, streamed the same way
    labels = reference_labels(generated.tokens, generated.answer_index, qa.answers)
    plus = HallucinationProbe(max_epochs=20).fit(generated.features(2, "both", confidence=True), labels.token,
                                                 groups=generated.answer_index)
    expected_plus = plus.predict_proba(offline.features(2, "both", confidence=True))[:, 1]
    plus.layer_, plus.site_ = 2, "resid_post"  # recorded: stream_scores reads there unless told otherwise
    for i, prompt in enumerate(prompts):
        streamed = [score for _, score in stream_scores(model, plus, prompt, state="both", confidence=True)]
        assert np.allclose(streamed, expected_plus[offline.answer_index == i], atol=1e-5)
    with pytest.raises(ValueError, match="fitted on layer 2"):  # raised at the call, before any generation
        stream_scores(model, plus, prompts[0], layer=3, state="both", confidence=True)
    ids = model.tokenize(prompts)
    with torch.no_grad():
        before = model.forward(ids)
        list(stream_scores(model, probe, prompts[0], layer=2, max_new_tokens=3))
        assert torch.equal(before, model.forward(ids))


def test_stage_runs_with_expected_metrics(model):
    from steerlab.pipeline.hallucination_stage import run_hallucination_stage
    from steerlab.report import Section

    metrics, sections = run_hallucination_stage(model, progress=False)
    json.dumps(metrics, allow_nan=False)  # JSON-able, NaN written as None
    assert metrics["data"]["test"]["answers"] == 334 and metrics["data"]["test"]["wrong_answers"] >= 60
    assert set(metrics["methods"]) == {"mlp", "mlp_plus", "linear", "max_prob", "entropy"}
    for name, result in metrics["methods"].items():
        for level in ("token", "answer"):
            assert set(result[level]) >= {"auroc", "recall@1%fpr", "recall@5%fpr", "recall@10%fpr", "accuracy",
                                          "precision", "recall"}
            assert 0.5 < result[level]["auroc"] <= 1, (name, level)
    # measured: MLP answer AUROC 0.83, token 0.93 (benchmarks/results_hallucination.md); chance is 0.5
    assert metrics["methods"]["mlp"]["answer"]["auroc"] > 0.75
    assert metrics["methods"]["mlp"]["token"]["auroc"] > 0.85
    assert metrics["methods"]["max_prob"]["answer"]["auroc"] > 0.85  # the model card's 0.90 confidence AUROC
    # steerlab's variant (token + producing states + confidence) beats confidence on the test split: measured 0.943
    # vs 0.901 (train-split cross-validation: 0.905 vs 0.906, a tie; benchmarks/results_hallucination.md)
    best_confidence = max(metrics["methods"][name]["answer"]["auroc"] for name in ("max_prob", "entropy"))
    assert metrics["methods"]["mlp_plus"]["answer"]["auroc"] > best_confidence + 0.01
    cv = metrics["train_cv"]
    assert set(cv) == {"mlp_plus", "mlp_plus_probe_alone", "max_prob", "entropy"}
    assert all(0.8 < value <= 1 for value in cv.values())
    # without test data too, the detector beats confidence: measured 0.930 vs 0.906 (the MLP alone ties: 0.906)
    assert cv["mlp_plus"] > max(cv["max_prob"], cv["entropy"]) + 0.01
    assert metrics["probe_inputs"]["mlp_plus"] == {"layer": metrics["layer_search_plus"]["best_layer"], "state": "both",
                                                   "confidence": True}
    search = metrics["layer_search"]
    assert search["best_layer"] == metrics["layer"] and 1 <= search["n_fits"] <= 4
    assert set(search["exhaustive"]) == {"0", "1", "2", "3"} and search["exhaustive_best_layer"] in range(4)
    assert metrics["confident"]["n_wrong"] >= 5 and set(metrics["confident"]["methods"]) == set(metrics["methods"])
    assert metrics["by_role"]["conflicted"]["n_wrong"] > 0
    assert metrics["live"]["max_abs_diff_offline"] < 1e-5 and len(metrics["live"]["examples"]) == 4
    assert metrics["live"]["n_compared"] == 4  # every streamed answer had the offline tokens: the check is not vacuous
    live_text = next(s for s in sections if s.title == "Live scoring").paragraphs[0]
    assert "on the 4 of 4 answers whose streamed tokens equal the offline ones" in live_text
    assert metrics["timings"]["total"] > 0  # recorded; speed is measured in benchmarks/, never asserted
    assert sections and all(isinstance(s, Section) for s in sections)
    assert sum(len(s.figures) for s in sections) >= 4
