"""Steering on the demo model at a stated KL budget: a truth direction flips held-out verdicts; a random one does not.

The full protocol (alpha chosen on calibration cities under the KL budget, every layer) is
steerlab.steering.calibration (the demo, benchmarks/steering_demo.py); this test pins its
central claims at the setting the demo chooses within 0.1 nats per token, and the price of more.
"""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

DEMO = Path(__file__).parents[1] / "assets" / "demo-model" / "config.json"
pytestmark = pytest.mark.skipif(not DEMO.is_file(), reason="assets/demo-model not trained yet")

LAYER, ALPHA = 0, 0.35  # the demo's choice within KL 0.1 (alpha in units of the layer's median token norm)
CLAMP_LAYER = 2


@pytest.fixture(scope="module")
def setup():
    import steerlab
    from steerlab.datasets import load
    from steerlab.probes import DiffMeans
    from steerlab.steering import SteeringVector

    model = steerlab.load_model("demo")
    train, test = load("demo/cities", split="train"), load("demo/cities", split="test")
    acts = steerlab.capture(model, train.texts, layers=[LAYER, CLAMP_LAYER], position="last", progress=False)
    probe = DiffMeans().fit(acts, train.labels)
    neutral = load("demo/topic", split="test").texts[:64]
    vector = SteeringVector.from_probe(probe, layer=LAYER).with_typical_norm(model, neutral)
    return model, test, probe, replace(vector, direction=vector.unit * vector.typical_norm), neutral


def test_truth_direction_flips_held_out_verdicts_within_the_kl_budget_and_a_random_one_does_not(setup):
    from steerlab.steering import KL_BUDGET, evaluate_many, flip_rate, random_control
    from steerlab.steering.verdicts import prompts_with_label
    from steerlab.steering.verdicts import verdict_flips as flips

    model, test, _, vector, neutral = setup
    control = random_control(vector, seed=0)
    steered, random = evaluate_many(model, [(vector, ALPHA), (control, ALPHA)],
                                    flip_rate(model, prompts_with_label(test, 0), *test.verdict_words), neutral)
    assert steered.kl <= KL_BUDGET == 0.1  # measured 0.089 (the random direction: 0.008)
    assert steered.efficacy == pytest.approx(flips(model, test, vector, ALPHA, 0))  # batched == one setting
    assert steered.efficacy >= 0.6  # rejected false statements -> "true": measured 0.70
    assert flips(model, test, vector, -ALPHA, 1) >= 0.25  # accepted true statements -> "false": measured 0.33
    assert random.efficacy <= 0.05 and flips(model, test, control, -ALPHA, 1) <= 0.05  # measured 0 and 0


def test_flipping_nearly_every_verdict_costs_far_more_than_the_budget(setup):
    from steerlab.steering import KL_BUDGET, evaluate_many, flip_rate
    from steerlab.steering.verdicts import prompts_with_label

    model, test, _, vector, neutral = setup
    [far] = evaluate_many(model, [(vector, 0.75)], flip_rate(model, prompts_with_label(test, 0), *test.verdict_words),
                          neutral)
    assert far.efficacy >= 0.95 and far.kl > 5 * KL_BUDGET  # measured 0.99 at KL 0.86 nats per token


def test_clamp_reaches_the_target_probability_on_the_demo_model(setup):
    from steerlab.steering import SteeringVector, steer

    model, test, probe, _, _ = setup
    with steer(model, SteeringVector.from_probe(probe, layer=CLAMP_LAYER), mode="clamp", target=0.9999) as stats:
        model.generate(test.verdict_prompts[:32], max_new_tokens=2)
    assert stats.edited_tokens > 100
    assert stats.clamp_reached(0.9999, tolerance=1e-4) >= 0.99
