"""What the commands print: plain-text tables of the numbers a run produced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steerlab.report.terminal import text_table


def held_out_table(probes: dict[str, Any]) -> str:
    """Layers down, methods across: held-out accuracy (AUROC)."""
    rows: dict[int, dict[str, Any]] = {}
    for r in probes["held_out"]:
        rows.setdefault(r["layer"], {"layer": r["layer"]})[r["method"]] = f"{r['accuracy']:.3f} ({r['auroc']:.3f})"
    return text_table(list(rows.values()))


def steering_line(steering: dict[str, Any]) -> str:
    """The chosen layer and alpha, flips both ways, the random control's, KL; or why there are none."""
    if "skipped" in steering:
        return f"  steering: skipped ({steering['skipped']})"
    if steering.get("nothing_to_flip"):
        return ("  steering: not measured: the model judges every false calibration statement true under this verdict "
                "readout (nothing to flip; see report.html)")
    budget = steering.get("kl_budget")
    if steering.get("layer") is None:
        return f"  steering: no (layer, alpha) kept KL on neutral text within {budget} nats/token (see report.html)"
    status = ("" if steering.get("qualified", True) else
              f" [target {steering['target']:.0%} not reached within the budget: best within it shown]")
    return (f"  steering: {steering.get('direction', 'mass-mean')} at layer {steering['layer']}, alpha "
            f"{steering['alpha_norm_units']} x median norm: flips {steering['test_flip_false_to_true']:.0%} / "
            f"{steering['test_flip_true_to_false']:.0%} (random control {steering['test_control_flip_false_to_true']:.0%}"
            f" / {steering['test_control_flip_true_to_false']:.0%}), KL {steering['kl_neutral']:.3f} "
            f"(budget {budget}){status}")


def hallucination_table(hallucination: dict[str, Any]) -> str:
    """One row per detector: token and answer AUROC, answer recall at 5% FPR."""
    return text_table([{"method": name, "token AUROC": result["token"]["auroc"],
                        "answer AUROC": result["answer"]["auroc"], "answer recall@5% FPR": result["answer"]["recall@5%fpr"]}
                       for name, result in hallucination["methods"].items()])


def print_run_summary(out: Path, metrics: dict[str, Any]) -> None:
    """``steerlab run`` / ``probe``: where the outputs are, held-out probes, steering, the optional stages."""
    print(f"\nsteerlab -> {out}/report.html, {out}/metrics.json, {out}/artifacts/")
    print(f"  {metrics['data']['name']}: {metrics['data']['n_train']} train / {metrics['data']['n_test']} test texts; "
          "held-out accuracy (AUROC) by layer:")
    print(held_out_table(metrics["probes"]))
    print(steering_line(metrics["steering"]))
    if "hallucination" in metrics:
        print(f"  hallucination: {metrics['hallucination']['data']['test']['answers']} test answers, "
              f"{metrics['hallucination']['data']['test']['wrong_answers']} wrong:")
        print(hallucination_table(metrics["hallucination"]))
    if "sae" in metrics:
        sae = metrics["sae"]
        print(f"  SAE {sae['hook_name']}: explained variance {sae['quality']['explained_variance']:.3f}; {sae['summary']}")
    print(f"  timings (s): {metrics['timings']}")


def print_demo_summary(out: Path, metrics: dict[str, Any]) -> None:
    """``steerlab demo``: probes, transfer, truth steering, hallucination detectors, the SAE comparison."""
    probes, hallucination, sae = metrics["probes"], metrics["hallucination"], metrics["sae"]
    print(f"\nsteerlab demo -> {out}/report.html, {out}/metrics.json, {out}/artifacts/")
    print("  held-out cities, RaptorProbe by layer:")
    print(text_table([{"layer": layer, "accuracy": accuracy} for layer, accuracy in enumerate(probes["held_out_accuracy"])]))
    print(f"  transfer AUROC ~ Mahalanobis cosine: R^2 = {probes['transfer_r2']['mahalanobis']['r2']:.2f}")
    print(steering_line(metrics["steering"]["truth"]))
    print(f"  hallucination detection on {hallucination['methods']['mlp']['answer']['n']} QA answers (papers' probes "
          f"at layer {hallucination['layer']}, steerlab's detector mlp_plus at layer "
          f"{hallucination['probe_inputs']['mlp_plus']['layer']}):")
    print(hallucination_table(hallucination))
    quality = next(row for row in sae["quality"] if row["name"] == sae["sae_name"])
    print(f"  SAE {sae['sae_name']}: explained variance {quality['explained_variance']:.3f}, L0 {quality['l0']:.1f}, "
          f"CE +{quality['ce_increase']:.3f} nats; detection AUROC / steering efficacy at KL "
          f"{sae['concepts']['truth']['kl_budget']}:")
    print(text_table([_comparison_row(sae, row["method"]) for row in sae["concepts"]["truth"]["comparison"]]))
    print(f"  timings (s): {metrics['timings']}")


def _comparison_row(sae: dict[str, Any], method: str) -> dict[str, Any]:
    """One method's detection AUROC and steering efficacy on each demo concept."""
    row: dict[str, Any] = {"method": method}
    for concept in ("truth", "sentiment"):
        match = next((r for r in sae["concepts"][concept]["comparison"] if r["method"] == method), {})
        row[f"{concept} AUROC"], row[f"{concept} efficacy"] = match.get("detection_auroc"), match.get("efficacy")
    return row
