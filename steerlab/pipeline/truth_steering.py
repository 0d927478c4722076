"""Turning a per-layer truth probe into a calibrated steering vector, with its controls.

Protocol (used by ``steerlab demo`` and ``benchmarks/steering_demo.py``):
every layer's own probe direction competes; alpha is in units of the layer's median
token norm; on the CALIBRATION statements, the chosen (layer, alpha) is the smallest
alpha that flips >= ``target`` of the false statements the model rejects, with KL on
neutral text within budget and a same-norm random direction flipping at most
``control_max``. Reported numbers come from separate TEST statements.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

from steerlab.models.adapter import ModelAdapter
from steerlab.steering.evaluation import SweepResult, flip_rate, random_control, sweep
from steerlab.steering.vector import SteeringVector
from steerlab.steering.verdicts import judged_true, prompts_with_label, verdict_flips

ALPHAS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)  # x the layer's median token norm


@dataclass
class TruthSteering:
    """The calibration sweep, the chosen vector (None if no setting qualified) and test results."""

    sweep: SweepResult
    vector: SteeringVector | None
    results: dict[str, Any]


def norm_scaled_vectors(model: ModelAdapter, probe: Any, neutral_texts: Sequence[str],
                        layers: Sequence[int] | None = None) -> dict[int, SteeringVector]:
    """``{layer: vector}``: the probe's unit direction at each layer (or ``layers`` of them), scaled to that
    layer's median norm."""
    vectors = {}
    for layer in layers if layers is not None else (getattr(probe, "layers_", None) or range(model.n_layers)):
        vector = SteeringVector.from_probe(probe, layer=layer).with_typical_norm(model, neutral_texts)
        vectors[layer] = replace(vector, direction=vector.unit * vector.typical_norm)
    return vectors


def calibrate_truth_steering(model: ModelAdapter, probe: Any, calibration: Any, test: Any,
                             neutral_texts: Sequence[str], alphas: Sequence[float] = ALPHAS, target: float = 0.95,
                             kl_budget: float = 1.0, control_max: float = 0.2, progress: bool = False,
                             layers: Sequence[int] | None = None) -> TruthSteering:
    """Choose (layer, alpha) on ``calibration`` (among ``layers``, default every probe layer) and measure
    flips and controls on ``test``."""
    candidates = norm_scaled_vectors(model, probe, neutral_texts, layers)
    efficacy = flip_rate(model, prompts_with_label(calibration, 0), *calibration.verdict_words, toward_positive=True)
    result = sweep(model, candidates, list(alphas), efficacy, neutral_texts, progress=progress)
    chosen = result.choose(target_efficacy=target, kl_budget=kl_budget, control_max=control_max)
    if chosen is None:
        return TruthSteering(result, None, {"chosen": None})
    vector, alpha = candidates[chosen.layer], chosen.alpha
    control = random_control(vector, seed=0)
    results = {
        "layer": chosen.layer, "alpha_norm_units": alpha, "median_norm": vector.typical_norm,
        "calibration_flip_false_to_true": chosen.efficacy, "kl_neutral": chosen.kl,
        "perplexity_neutral": chosen.perplexity, "perplexity_unsteered": result.baseline_perplexity,
        "test_flip_false_to_true": verdict_flips(model, test, vector, alpha, 0),
        "test_flip_true_to_false": verdict_flips(model, test, vector, -alpha, 1),
        "test_control_flip_false_to_true": verdict_flips(model, test, control, alpha, 0),
        "test_control_flip_true_to_false": verdict_flips(model, test, control, -alpha, 1),
        "test_unsteered_false_judged_true": judged_true(model, test, 0),
        "test_unsteered_true_judged_true": judged_true(model, test, 1),
    }
    return TruthSteering(result, vector, results)
