"""Turning a per-layer truth probe into a calibrated steering vector, under a KL budget, with its controls.

Protocol (used by ``steerlab demo``, ``steerlab run`` and ``benchmarks/steering_demo.py``):
every layer's own probe direction competes; alpha is in units of the layer's median
token norm; every (layer, alpha) and a same-norm random direction at the same (layer, alpha)
are measured on the CALIBRATION statements (flips of the false statements the model rejects)
and on neutral text (KL, perplexity), all in batched forwards. The chosen setting is the
smallest alpha that flips >= ``target`` with KL on neutral text within ``kl_budget`` (default
0.1 nats per token) and the random direction flipping at most ``control_max``. When no setting
qualifies, that is said (``qualified: False``) and the setting with the highest efficacy within
the budget is reported instead: the budget is never loosened to reach the target. Reported
numbers come from separate TEST statements; the whole efficacy-KL frontier is in the sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

from steerlab.models.adapter import ModelAdapter
from steerlab.steering.evaluation import KL_BUDGET, SteeringSweep, flip_rate, random_control, steering_sweep
from steerlab.steering.vector import SteeringVector
from steerlab.steering.verdicts import judged_true, prompts_with_label, verdict_flips

# x the layer's median token norm: fine below 0.5, where KL on neutral text crosses 0.1 nats per token on the
# demo model's layers, and a few larger ones so that the efficacy-KL frontier is seen past the budget too
ALPHAS = (0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.75, 1.0)


@dataclass
class TruthSteering:
    """The calibration sweep, the reported vector and test results.

    ``vector`` is the chosen setting's vector when one met the criteria (``qualified``), else
    the best one within the KL budget (``qualified`` False), else None (nothing stayed within it).
    """

    sweep: SteeringSweep
    vector: SteeringVector | None
    results: dict[str, Any]
    qualified: bool = False


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
                             kl_budget: float = KL_BUDGET, control_max: float = 0.2, progress: bool = False,
                             layers: Sequence[int] | None = None) -> TruthSteering:
    """Choose (layer, alpha) on ``calibration`` (among ``layers``, default every probe layer) within the KL
    budget, and measure flips and controls on ``test``.

    ``results`` holds the setting (``layer``, ``alpha_norm_units``, ``qualified``, ``kl_budget``,
    ``target``, ``control_max``), its calibration numbers (flips, the control's flips at the
    same setting, KL and perplexity on neutral text for the vector and the control) and the
    test numbers (flips both ways, vector and control; the unsteered verdicts); or
    ``{"chosen": None, ...}`` when no setting stays within the budget.
    """
    candidates = norm_scaled_vectors(model, probe, neutral_texts, layers)
    efficacy = flip_rate(model, prompts_with_label(calibration, 0), *calibration.verdict_words, toward_positive=True)
    result = steering_sweep(model, candidates, list(alphas), efficacy, neutral_texts, progress=progress)
    chosen = result.choose(target_efficacy=target, kl_budget=kl_budget, control_max=control_max)
    criteria = {"kl_budget": kl_budget, "target": target, "control_max": control_max,
                "best_within_budget": None if result.best is None else result.best.efficacy}
    if result.best is None:
        return TruthSteering(result, None, {"chosen": None, "qualified": False, **criteria})
    point = result.best
    vector, alpha = candidates[point.layer], point.alpha
    control = random_control(vector, seed=0)
    control_row = next(row for row in result.rows if row.control and (row.layer, row.alpha) == (point.layer, alpha))
    results = {
        "layer": point.layer, "alpha_norm_units": alpha, "median_norm": vector.typical_norm,
        "qualified": chosen is not None, **criteria,
        "calibration_flip_false_to_true": point.efficacy, "calibration_control_flip_false_to_true": control_row.efficacy,
        "kl_neutral": point.kl, "perplexity_neutral": point.perplexity,
        "control_kl_neutral": control_row.kl, "perplexity_unsteered": result.baseline_perplexity,
        "test_flip_false_to_true": verdict_flips(model, test, vector, alpha, 0),
        "test_flip_true_to_false": verdict_flips(model, test, vector, -alpha, 1),
        "test_control_flip_false_to_true": verdict_flips(model, test, control, alpha, 0),
        "test_control_flip_true_to_false": verdict_flips(model, test, control, -alpha, 1),
        "test_unsteered_false_judged_true": judged_true(model, test, 0),
        "test_unsteered_true_judged_true": judged_true(model, test, 1),
    }
    return TruthSteering(result, vector, results, qualified=chosen is not None)


def steering_summary(results: dict[str, Any], direction: str, positive: str, negative: str) -> str:
    """One paragraph for the report: the chosen (or best within budget) setting, its flips, the control and KL."""
    budget = results["kl_budget"]
    if results.get("chosen", True) is None:
        return (f"No (layer, alpha) of the sweep kept KL on neutral text within the budget of {budget} nats per "
                "token, so nothing is reported as steering. The frontier below shows what larger KL would buy.")
    where = (f"The {direction} direction at layer {results['layer']}, alpha = {results['alpha_norm_units']:g} x the "
             "layer's median token norm")
    if results["qualified"]:
        head = (f"{where} is the smallest setting that flips >= {results['target']:.0%} of the calibration "
                f"statements with KL on neutral text within {budget} nats per token.")
    else:
        head = (f"No setting flips >= {results['target']:.0%} of the calibration statements within the KL budget of "
                f"{budget} nats per token (with the random control <= {results['control_max']:.0%}). The best "
                f"within budget: {where}, flipping {results['calibration_flip_false_to_true']:.0%} of them.")
    return (f"{head} On the held-out statements it turns {results['test_flip_false_to_true']:.0%} of the {negative!r} "
            f"verdicts on false statements to {positive!r} and {results['test_flip_true_to_false']:.0%} of the "
            f"{positive!r} verdicts on true ones to {negative!r} (alpha negated). A random direction of the same "
            f"norm at the same alpha: {results['test_control_flip_false_to_true']:.0%} / "
            f"{results['test_control_flip_true_to_false']:.0%}. KL on neutral text: {results['kl_neutral']:.3f} nats "
            f"per token (the random direction: {results['control_kl_neutral']:.3f}); perplexity "
            f"{results['perplexity_unsteered']:.2f} -> {results['perplexity_neutral']:.2f}.")
