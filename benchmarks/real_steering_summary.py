"""The held-out tables of every `real_steering.py` run in one markdown block (issue 14).

    .venv/bin/python benchmarks/real_steering_summary.py benchmarks/results_real_steering/*.json

Reads each run's OUT.json (never a number typed by hand) and prints, per run: the readout and
its held-out AUROC, verdict flips on the test statements at the KL budget beside the same-norm
random control at the same alpha, the causal test (Ying et al.) beside its random null, RAPTOR's
clamp, and for sentiment runs the judge's P(positive) and the lexicon rate at +/- alpha beside the
control. Paste the output into ``results_real_steering.md``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from real_steering import fmt, table  # the run script's own markdown helpers (benchmarks/ is on sys.path)


def truth_block(name: str, run: dict) -> list[str]:
    truth = run["truth"]
    readout = truth["readout"]
    out = [f"**{name}**, readout `{readout['name']}` (held-out AUROC {readout['test']['auroc']:.3f}, "
           f"{truth['n_statements']['test']} test statements of {truth['n_statements']['test'] // 2} cities; "
           f"KL budget {run['budget']} nats/token on {run['n_neutral']} neutral sentences; `{run['command']}`):", ""]
    rows = []
    for method, row in truth["test_verdicts"].items():
        control = row.get("control", {})
        rows.append([f"{method}@{row['layer']}", row["alpha"], row["kl_plus"], row["kl_minus"],
                     f"{fmt(row['false_to_true'])} ({row['false_to_true_candidates']})",
                     f"{fmt(row['true_to_false'])} ({row['true_to_false_candidates']})",
                     control.get("false_to_true"), control.get("true_to_false"), row.get("control_kl_plus")])
    out += [table(["method@layer", "alpha", "KL +", "KL -", "flips f->t (of n)", "flips t->f (of n)",
                   "control f->t", "control t->f", "control KL"], rows), ""]
    unsteered = truth["causal_unsteered"]["test"]
    out += [f"Causal test on {unsteered['n']} test cities (unsteered: correct country preferred "
            f"{unsteered['correct_preferred']:.2f}, mean gap {unsteered['mean_gap']:.2f} nats); shift of "
            "log P(correct) - log P(incorrect) in nats:", ""]
    rows = [[f"{method}@{row['layer']}", row["alpha"], row["kl_plus"], row["plus"], row["minus"], row.get("control_plus"),
             row.get("control_minus"), row.get("null_abs_mean"), row.get("null_abs_max")]
            for method, row in truth["test_causal"].items()]
    out += [table(["method@layer", "alpha", "KL +", "shift +alpha", "shift -alpha", "control +", "control -",
                   "null mean abs", "null max abs"], rows), ""]
    clamp = truth["clamp"]
    out += [f"RAPTOR clamp at layer {clamp['layer']} (probe test accuracy {clamp['probe_accuracy_test']:.3f}): "
            f"p* = 0.9999 flips false->true {fmt(clamp['false_to_true_all'])} (every token; KL "
            f"{clamp['false_to_true_kl_all']:.3f}), p* = 0.0001 flips true->false {fmt(clamp['true_to_false_all'])} "
            f"(KL {clamp['true_to_false_kl_all']:.3f}).", ""]
    return out


def sentiment_block(name: str, run: dict) -> list[str]:
    sentiment = run["sentiment"]
    unsteered = sentiment["unsteered"]["test"]
    accuracy = sentiment["judge_val_accuracy"]
    accuracy = accuracy.get(str(sentiment["judge_layer"]), accuracy) if isinstance(accuracy, dict) else accuracy
    out = [f"**{name}, sentiment** (judge: {sentiment['judge']} probe at layer {sentiment['judge_layer']}, SST-2 "
           f"validation accuracy {accuracy}; unsteered test reviews P(positive) "
           f"{unsteered['p_positive']:.3f}, lexicon {unsteered['lexicon']:.3f}; `{run['command']}`):", ""]
    rows = []
    for method, row in sentiment["test"].items():
        for sign in ("+", "-"):
            r = row[sign]
            control = r.get("control", {})
            rows.append([f"{method}@{row['layer']} {sign}", r["alpha"], r["kl"], r["p_positive"], r["lexicon"],
                         r["judge_perplexity"], control.get("p_positive"), control.get("lexicon"), control.get("kl")])
    out += [table(["vector", "alpha", "KL", "judge P(positive)", "lexicon", "judge ppl", "control P(positive)",
                   "control lexicon", "control KL"], rows), ""]
    return out


def main(paths: list[str]) -> None:
    lines: list[str] = []
    for path in paths:
        run = json.loads(Path(path).read_text(encoding="utf-8"))
        name = run["model"]
        if "truth" in run:
            lines += truth_block(name, run)
        if "sentiment" in run:
            lines += sentiment_block(name, run)
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
