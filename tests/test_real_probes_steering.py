"""Real tier (``pytest -m real``): RaptorProbe and steering at a KL budget on SmolLM2, small subsets.

benchmarks/results_real_probes.md and benchmarks/results_real_steering.md have the full runs;
these check the claims they rest on with a few hundred Geometry of Truth cities statements.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

import steerlab
from steerlab.models import registry
from steerlab.steering.calibration import norm_scaled_vectors
from steerlab.probes import DiffMeans, RaptorProbe
from steerlab.steering import evaluate, random_control
from steerlab.steering.kl_budget import alpha_at_kl
from steerlab.steering.readouts import first_token_ids, gap_shift

pytestmark = pytest.mark.real

NAME = "smollm2-135m-instruct"
CITIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "got_cities.csv"
LAYERS = [8, 12, 16, 20]
NEUTRAL = ["The weather was mild for most of the week.", "She put the book back on the shelf and left.",
           "Trains run every twenty minutes on weekdays.", "He made a cup of tea before starting work."]


@pytest.fixture(scope="module")
def smollm2():
    if registry.cached_folder(NAME) is None:
        pytest.skip(f"{NAME} is not pulled: run `{registry.get(NAME).pull_command}`")
    if not CITIES.exists():
        pytest.skip(f"{CITIES} is missing (the shared Geometry of Truth cities)")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return steerlab.load_model(NAME)


def city_rows(n_cities: int, skip: int = 0) -> list[dict]:
    """Both statements of ``n_cities`` cities (sorted by name, after ``skip`` of them): whole cities."""
    rows = list(csv.DictReader(open(CITIES, encoding="utf-8")))
    cities = sorted({row["city"] for row in rows})[skip:skip + n_cities]
    keep = set(cities)
    return [row for row in rows if row["city"] in keep]


def test_raptor_picks_a_layer_with_held_out_accuracy_above_075(smollm2):
    rows = city_rows(200)  # ~400 statements; cities split into fit / held-out by city
    texts, y = [r["statement"] for r in rows], np.array([int(r["label"]) for r in rows])
    cities = np.array([r["city"] for r in rows])
    acts = steerlab.capture(smollm2, texts, layers=LAYERS, position="last", progress=False).values.numpy()
    held_out = np.isin(cities, sorted(set(cities))[::4])  # a quarter of the cities, never seen in the fit
    probe = RaptorProbe(Cs=30, random_state=0).fit(acts[~held_out], y[~held_out], groups=cities[~held_out])
    chosen = int(np.argmax(probe.val_accuracy_.max(axis=1)))  # by validation accuracy: no held-out peeking
    accuracy = probe.score(acts[held_out], y[held_out])
    assert accuracy[chosen] >= 0.75, f"layer {LAYERS[chosen]}: held-out accuracy {accuracy}"


def test_steering_reports_efficacy_kl_and_random_control_at_the_same_alpha_and_budget(smollm2):
    budget = 0.1
    rows = city_rows(80, skip=200)
    y = np.array([int(r["label"]) for r in rows])
    acts = steerlab.capture(smollm2, [r["statement"] for r in rows], layers=[12], position="last", progress=False)
    vector = norm_scaled_vectors(smollm2, DiffMeans().fit(acts, y), NEUTRAL, [12])[12]
    control = random_control(vector, seed=0)
    assert control.norm == pytest.approx(vector.norm, rel=1e-5)

    # Ying et al.'s causal test as the efficacy: change of log P(correct) - log P(incorrect) after "The city of X is in"
    pairs = {}
    for row in city_rows(20, skip=300):
        pairs.setdefault(row["city"], {})[row["label"]] = row["country"]
    pairs = {c: p for c, p in pairs.items() if set(p) == {"0", "1"} and not any(v.startswith("the ") for v in p.values())}
    prompts = [f"The city of {city} is in" for city in pairs]
    correct = first_token_ids(smollm2.tokenizer, [" " + p["1"] for p in pairs.values()])
    incorrect = first_token_ids(smollm2.tokenizer, [" " + p["0"] for p in pairs.values()])
    efficacy = gap_shift(smollm2, prompts, correct, incorrect)

    point = alpha_at_kl(smollm2, vector, NEUTRAL, budget, start=0.1, max_steps=4)
    steered = evaluate(smollm2, vector, point.alpha, efficacy, NEUTRAL)
    random = evaluate(smollm2, control, point.alpha, efficacy, NEUTRAL, control=True)
    assert steered.alpha == random.alpha == point.alpha != 0
    assert steered.kl <= budget * (1 + point.tolerance) and steered.kl == pytest.approx(point.kl, rel=1e-4)
    assert random.control and not steered.control
    assert all(np.isfinite([steered.efficacy, steered.kl, steered.perplexity, random.efficacy, random.kl]))
    assert random.kl > 0 and steered.efficacy != random.efficacy
