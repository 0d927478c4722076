"""Steering on the demo model: a truth direction flips held-out verdicts; a random one does not.

The full protocol (alpha chosen on train, every layer, both methods) is
benchmarks/steering_demo.py; this test pins its central claims at the chosen setting.
"""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

DEMO = Path(__file__).parents[1] / "assets" / "demo-model" / "config.json"
pytestmark = pytest.mark.skipif(not DEMO.is_file(), reason="assets/demo-model not trained yet")

LAYER, ALPHA = 2, 1.0  # alpha in units of the layer's median token norm


@pytest.fixture(scope="module")
def setup():
    import steerlab
    from steerlab.datasets import load
    from steerlab.probes import DiffMeans
    from steerlab.steering import SteeringVector

    model = steerlab.load_model("demo")
    train, test = load("demo/cities", split="train"), load("demo/cities", split="test")
    acts = steerlab.capture(model, train.texts, layers=[LAYER], position="last", progress=False)
    probe = DiffMeans().fit(acts, train.labels)
    vector = SteeringVector.from_probe(probe, layer=LAYER)
    vector = vector.with_typical_norm(model, load("demo/topic", split="test").texts[:64])
    return model, test, probe, replace(vector, direction=vector.unit * vector.typical_norm)


def test_truth_direction_flips_held_out_verdicts_and_a_random_one_does_not(setup):
    from steerlab.steering import random_control
    from steerlab.steering.verdicts import verdict_flips as flips

    model, test, _, vector = setup
    assert flips(model, test, vector, ALPHA, 0) >= 0.9  # rejected false statements -> "true"
    assert flips(model, test, vector, -ALPHA, 1) >= 0.9  # accepted true statements -> "false"
    control = random_control(vector, seed=0)
    assert flips(model, test, control, ALPHA, 0) <= 0.2
    assert flips(model, test, control, -ALPHA, 1) <= 0.2


def test_clamp_reaches_the_target_probability_on_the_demo_model(setup):
    from steerlab.steering import SteeringVector, steer

    model, test, probe, _ = setup
    with steer(model, SteeringVector.from_probe(probe, layer=LAYER), mode="clamp", target=0.9999) as stats:
        model.generate(test.verdict_prompts[:32], max_new_tokens=2)
    assert stats.edited_tokens > 100
    assert stats.clamp_reached(0.9999, tolerance=1e-4) >= 0.99
