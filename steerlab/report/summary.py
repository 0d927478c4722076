"""The report's summary: what a run found, one line per stage, each with its key numbers.

Reads the ``metrics.json`` dict of any command (demo, run, probe, hallucination); a stage that
did not run has no line. Every number is formatted from the metrics, none is written in.

    >>> findings({"probes": {"held_out": [{"method": "raptor", "layer": 2, "accuracy": 0.91, "auroc": 0.97},
    ...                                   {"method": "raptor", "layer": 3, "accuracy": 0.88, "auroc": 0.95}]}})
    ['Probes: the best held-out accuracy is 0.910 (raptor, layer 2; AUROC 0.970).']
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from steerlab.report.flags import is_number

Line = Callable[[Mapping[str, Any]], "str | None"]


def findings(metrics: Mapping[str, Any]) -> list[str]:
    """One line per stage present in ``metrics``."""
    lines = []
    for line in (_probes, _transfer, _truth_steering, _sentiment_steering, _run_steering, _hallucination, _sae):
        try:
            text = line(metrics)
        except (KeyError, TypeError, ValueError, IndexError):  # a stage whose schema this line does not know
            text = None
        if text:
            lines.append(text)
    return lines


def _probes(metrics: Mapping[str, Any]) -> str | None:
    probes = metrics.get("probes")
    if not isinstance(probes, Mapping):
        return None
    if isinstance(probes.get("held_out"), list) and probes["held_out"]:
        rows = [r for r in probes["held_out"] if is_number(r.get("accuracy"))]
        best = max(rows, key=lambda r: r["accuracy"])
        return (f"Probes: the best held-out accuracy is {best['accuracy']:.3f} ({best['method']}, layer "
                f"{best['layer']}; AUROC {_num(best.get('auroc'))}).")
    if isinstance(probes.get("held_out_accuracy"), list) and probes["held_out_accuracy"]:
        accuracy = probes["held_out_accuracy"]
        layer = max(range(len(accuracy)), key=accuracy.__getitem__)
        return (f"Probes: RaptorProbe's held-out accuracy is {accuracy[layer]:.3f} at its best layer ({layer}); "
                f"{min(accuracy):.2f}-{max(accuracy):.2f} across the {len(accuracy)} layers.")
    return None


def _transfer(metrics: Mapping[str, Any]) -> str | None:
    r2 = metrics["probes"]["transfer_r2"]
    return (f"Transfer across domains (layer {metrics['probes']['transfer_layer']}): R^2 of transfer AUROC on the "
            f"Mahalanobis cosine {r2['mahalanobis']['r2']:.2f}, on the plain cosine {r2['cosine']['r2']:.2f}.")


def _steering_line(name: str, result: Mapping[str, Any], positive: str = "true") -> str:
    budget = result["kl_budget"]
    if result.get("chosen", True) is None:
        return f"{name}: no (layer, alpha) kept KL on neutral text within {budget} nats per token."
    reached = ("reaches" if result["qualified"] else "does NOT reach")
    return (f"{name}: layer {result['layer']}, alpha {result['alpha_norm_units']:g} {reached} the "
            f"{result['target']:.0%} target within KL {budget}; held out it flips "
            f"{result['test_flip_false_to_true']:.0%} of false verdicts to {positive!r} (random direction "
            f"{result['test_control_flip_false_to_true']:.0%}) at KL {result['kl_neutral']:.3f} nats per token.")


def _truth_steering(metrics: Mapping[str, Any]) -> str | None:
    return _steering_line("Truth steering (mass-mean)", metrics["steering"]["truth"])


def _sentiment_steering(metrics: Mapping[str, Any]) -> str | None:
    s = metrics["steering"]["sentiment"]
    if s.get("chosen", True) is None:
        return f"Sentiment steering (CAA): no setting kept KL within {s['kl_budget']} nats per token."
    return (f"Sentiment steering (CAA): layer {s['layer']}, alpha {s['alpha']:g} turns {s['calibration_flip']:.0%} "
            f"of next adjectives positive (random direction {s['calibration_control_flip']:.0%}) at KL "
            f"{s['kl_neutral']:.3f} (budget {s['kl_budget']}).")


def _run_steering(metrics: Mapping[str, Any]) -> str | None:
    steering = metrics["steering"]
    if "truth" in steering:  # the demo's, above
        return None
    if "skipped" in steering:
        return f"Steering: not run ({steering['skipped']})."
    if steering.get("nothing_to_flip"):
        return "Steering: not measured, the verdict readout gives no verdict to flip on this model."
    return _steering_line(f"Steering ({steering.get('direction', 'probe')} direction)", steering)


def _hallucination(metrics: Mapping[str, Any]) -> str | None:
    methods = metrics["hallucination"]["methods"]
    aurocs = {name: m["answer"]["auroc"] for name, m in methods.items() if is_number(m["answer"].get("auroc"))}
    baselines = {name: a for name, a in aurocs.items() if name in ("max_prob", "entropy")}
    probes = {name: a for name, a in aurocs.items() if name not in baselines}
    if not probes or not baselines:
        return None
    probe, baseline = max(probes, key=probes.get), max(baselines, key=baselines.get)
    verdict = "beats" if probes[probe] > baselines[baseline] else "does NOT beat"
    return (f"Hallucination detection: the best probe ({probe}, answer AUROC {probes[probe]:.3f}) {verdict} output "
            f"confidence ({baseline}, {baselines[baseline]:.3f}) on the test split.")


def _sae(metrics: Mapping[str, Any]) -> str | None:
    sae = metrics["sae"]
    if isinstance(sae.get("quality"), list):  # the demo's shipped SAEs
        primary = next(row for row in sae["quality"] if row["name"] == sae["sae_name"])
        verdicts = "; ".join(_steer_vs_detect(name, c["comparison"]) for name, c in sae["concepts"].items())
        return (f"SAE ({sae['sae_name']}, {sae['d_sae']} latents): explains {primary['explained_variance']:.1%} of "
                f"held-out variance with L0 {primary['l0']:.0f}. Best steerer vs best detector at matched KL: "
                f"{verdicts}.")
    quality = sae["quality"]
    return (f"SAE ({sae['hook_name']}, {sae['d_sae']} latents): explains {quality['explained_variance']:.1%} of "
            f"held-out variance with L0 {quality['l0']:.1f}. {_sentence(sae['summary'])}")


def _steer_vs_detect(name: str, rows: list[Mapping[str, Any]]) -> str:
    """"truth: sae_output steers (efficacy 0.80, AUROC 0.500), diff_means detects (AUROC 0.990)"."""
    rows = [row for row in rows if row.get("matched", True) and is_number(row.get("efficacy"))]
    steerer = max(rows, key=lambda row: row["efficacy"])
    detector = max(rows, key=lambda row: row["detection_auroc"] if is_number(row.get("detection_auroc")) else -1)
    return (f"{name}: {steerer['method']} steers (efficacy {steerer['efficacy']:.2f}, AUROC "
            f"{_num(steerer['detection_auroc'])}), {detector['method']} detects (AUROC "
            f"{_num(detector['detection_auroc'])}, efficacy {detector['efficacy']:.2f})")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _num(value: Any) -> str:
    return f"{value:.3f}" if is_number(value) else "n/a"
