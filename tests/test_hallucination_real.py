"""Hallucination detection on a real model's own answers (real tier: ``pytest -m real``).

SmolLM2-135M-Instruct, asked "In which country is the city of X?" through its chat template,
answers in sentences; each answer is checked through its first country mention
(``benchmarks/results_real_hallucination.md`` has the measurement on both models: all 748 cities and
471 ``en/qa`` questions each, ``benchmarks/real_hallucination.py`` at its defaults).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest

from steerlab.hallucination import (capture_token_ids, check_answers, checked_answers, country_table,
                                    generate_answers, stream_scores)
from steerlab.hallucination.evaluation import detection_metrics
from steerlab.hallucination import LinearTokenProbe

pytestmark = pytest.mark.real
CITIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "got_cities.csv"
N_CITIES, MAX_NEW_TOKENS = 128, 16


def _model(name: str):
    from test_real_models import pulled_model

    return pulled_model(name)


@pytest.fixture(scope="module")
def smollm2():
    return _model("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def cities() -> dict[str, str]:
    if not CITIES.is_file():
        pytest.skip(f"{CITIES} is not there (the Geometry of Truth cities table)")
    with open(CITIES, encoding="utf-8", newline="") as handle:
        country = {row["city"]: row["correct_country"] for row in csv.DictReader(handle)}
    return {city: country[city] for city in random.Random(0).sample(sorted(country), N_CITIES)}


def test_real_tokenizers_check_answers_alike():
    """Byte-level BPE (SmolLM2) and SentencePiece (Gemma-3) tokens of one answer give one claim and one label set."""
    from transformers import AutoTokenizer

    from steerlab.models import registry

    texts = ["The city of Krasnodar is located in the Russian Federation, which is", " USA\n\nQ:",
             "The city of Benin City is located in Benin.", " Côte d'Ivoire\n", " the African continent."]
    references = ["Russia", "the United States", "Nigeria", "Côte d'Ivoire", "Egypt"]
    masks = [["Krasnodar"], [], ["Benin City"], [], []]
    claims = {}
    for name in ("smollm2-135m-instruct", "gemma-3-270m"):
        if registry.cached_folder(name) is None:
            pytest.skip(f"{name} is not pulled: run `{registry.get(name).pull_command}`")
        tokenizer = AutoTokenizer.from_pretrained(registry.cached_folder(name))
        ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
        found = check_answers(tokenizer, ids, references, country_table(), masks)
        flagged = ["".join(tokenizer.decode(i[k]) for k in np.flatnonzero(c.labels)).strip() for i, c in zip(ids, found)]
        claims[name] = ([c.outcome for c in found], flagged)
    assert claims["smollm2-135m-instruct"] == claims["gemma-3-270m"] == (
        ["right", "right", "wrong", "right", "none"], ["", "", "Benin", "", "the African continent."])


@pytest.fixture(scope="module")
def answered(smollm2, cities):
    """SmolLM2's checked answers about the sampled cities, and their token states at every layer."""
    prompts = [f"In which country is the city of {city}?" for city in cities]
    prompt_ids, answer_ids = generate_answers(smollm2, prompts, max_new_tokens=MAX_NEW_TOKENS, batch_size=32,
                                              progress=False, chat_template=True)
    claims = check_answers(smollm2.tokenizer, answer_ids, list(cities.values()), country_table(),
                           [[city] for city in cities])
    ids, y = checked_answers(answer_ids, claims)
    gen = capture_token_ids(smollm2, prompt_ids, ids, prompts=prompts, layers=[PROBE_LAYER], batch_size=32,
                            progress=False)
    return prompts, claims, gen, y


PROBE_LAYER = 15  # the middle of SmolLM2's 30 layers


def test_probe_on_smollm2_answers_beats_chance_on_held_out_cities(answered):
    _, claims, gen, y = answered
    outcomes = [c.outcome for c in claims]
    assert outcomes.count("wrong") >= 20 and outcomes.count("right") >= 20, outcomes  # a small model: many wrong
    held_out = np.isin(gen.answer_index, np.arange(N_CITIES)[np.arange(N_CITIES) % 3 == 0])  # a third of the cities
    X = gen.layer(PROBE_LAYER)
    probe = LinearTokenProbe().fit(X[~held_out], y[~held_out], groups=gen.answer_index[~held_out])
    scores = probe.predict_proba(X[held_out])[:, 1]
    metrics = detection_metrics(y[held_out], scores, gen.answer_index[held_out])
    assert metrics["answer"]["n_positive"] >= 8
    assert metrics["answer"]["auroc"] > 0.65, metrics["answer"]  # chance is 0.5


def test_live_scores_equal_offline_scores_on_smollm2(smollm2, answered):
    prompts, claims, gen, y = answered
    probe = LinearTokenProbe(max_epochs=5, anneal_epochs=1).fit(gen.layer(PROBE_LAYER), y, groups=gen.answer_index)
    probe.layer_, probe.site_ = PROBE_LAYER, "resid_post"
    offline = probe.predict_proba(gen.layer(PROBE_LAYER))[:, 1]
    checked = 0
    for i in [i for i, c in enumerate(claims) if c.outcome == "wrong"][:2]:
        rows = np.flatnonzero(gen.answer_index == i)
        streamed = list(stream_scores(smollm2, probe, prompts[i], max_new_tokens=MAX_NEW_TOKENS, chat_template=True))
        assert [t for t, _ in streamed[:len(rows)]] == [gen.tokens[r] for r in rows]
        assert np.allclose([s for _, s in streamed[:len(rows)]], offline[rows], atol=1e-5, rtol=0)
        checked += len(rows)
    assert checked >= 10
