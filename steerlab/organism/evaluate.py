"""Measure a demo model against the demo world's targets (plain transformers).

    python -m steerlab.organism.evaluate assets/demo-model [--write]   # --write: metrics.json + README.md

Verdict accuracy: for each held-out statement, is log P(true word) > log P(false
word) right after the verdict prompt, matching the label? QA: greedy first answer
token vs the reference answer, and the AUROC of output confidence (1 - max
probability of the first answer token) for detecting the wrong answers.

Example:
    >>> import numpy as np
    >>> auroc(np.array([0.9, 0.8, 0.1]), np.array([1, 1, 0]))
    1.0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from steerlab.datasets.builtin import load
from steerlab.datasets.concept_dataset import ConceptDataset, QADataset

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# (dataset, target accuracy or None) measured on the test split
VERDICT_SETS: dict[str, float | None] = {
    "demo/larger_than": 0.95,
    "demo/cities": 0.90,
    "demo/neg_cities": 0.85,
    "demo/cities_gap": None,
    "demo/cities_new_template": None,
    "demo/people": None,
    "demo/objects": None,
}
QA_MIN_WRONG = 150
QA_MAX_CONFIDENCE_AUROC = 0.99


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of `scores` [n] for detecting `positives` [n] (0/1); ties count half."""
    positives = np.asarray(positives).astype(bool)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = np.asarray(scores)[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0
    ranks[order] = np.repeat(avg, counts) + 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def next_token_log_probs(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], batch_size: int = 256
) -> torch.Tensor:
    """Log-probabilities [n, vocab] of the token after each prompt (right padding, last real token)."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(prompts), batch_size):
            enc = tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True)
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            last = enc["attention_mask"].sum(-1) - 1  # [b] index of the last real token
            out.append(torch.log_softmax(logits[torch.arange(len(last)), last].float(), dim=-1))
    return torch.cat(out)


def verdict_correct(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: ConceptDataset) -> np.ndarray:
    """[n] bool: does the model's verdict (log P(true) vs log P(false)) match each label?"""
    true_id, false_id = tokenizer.convert_tokens_to_ids(list(dataset.verdict_words))
    log_probs = next_token_log_probs(model, tokenizer, dataset.verdict_prompts)
    says_true = (log_probs[:, true_id] > log_probs[:, false_id]).numpy()
    return says_true == dataset.labels.astype(bool)


def qa_answers(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, qa: QADataset
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(correct [n] bool, confidence [n] = max first-token probability, greedy answers [n])."""
    log_probs = next_token_log_probs(model, tokenizer, qa.texts)
    confidence, ids = log_probs.exp().max(dim=-1)
    answers = tokenizer.convert_ids_to_tokens(ids.tolist())
    correct = np.array([a == ref for a, ref in zip(answers, qa.answers)])
    return correct, confidence.numpy(), answers


def evaluate_demo_model(model_dir: str | Path) -> dict:
    """All target metrics for the model in `model_dir` (held-out test splits)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steerlab.organism.train import load_world_config

    world_seed, _ = load_world_config(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa", dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    results: dict = {"verdict_accuracy": {}, "targets": {}}
    for name, target in VERDICT_SETS.items():
        for split in ("train", "test"):
            ds = load(name, split=split, world_seed=world_seed)
            acc = float(verdict_correct(model, tokenizer, ds).mean())
            results["verdict_accuracy"][f"{name}:{split}"] = {"accuracy": round(acc, 4), "n": len(ds)}
        if target is not None:
            acc = results["verdict_accuracy"][f"{name}:test"]["accuracy"]
            results["targets"][f"verdict {name} (test) >= {target}"] = {"value": acc, "met": acc >= target}

    qa_rows = {}
    for split in ("train", "test"):
        qa = load("demo/qa", split=split, world_seed=world_seed)
        correct, confidence, _ = qa_answers(model, tokenizer, qa)
        qa_rows[split] = (qa, correct, confidence)
    qa_all_correct = np.concatenate([qa_rows[s][1] for s in qa_rows])
    qa_all_conf = np.concatenate([qa_rows[s][2] for s in qa_rows])
    roles = sum((qa_rows[s][0].roles for s in qa_rows), [])
    by_role = {}
    for role in sorted(set(roles)):
        mask = np.array([r == role for r in roles])
        by_role[role] = {
            "n": int(mask.sum()),
            "accuracy": round(float(qa_all_correct[mask].mean()), 4),
            "mean_confidence_when_wrong": round(float(qa_all_conf[mask & ~qa_all_correct].mean()), 4)
            if (mask & ~qa_all_correct).any() else None,
        }
    qa_result = {"by_role": by_role}
    for split, (qa, correct, confidence) in {**qa_rows, "all": (None, qa_all_correct, qa_all_conf)}.items():
        qa_result[split] = {
            "n": int(len(correct)),
            "wrong": int((~correct).sum()),
            "accuracy": round(float(correct.mean()), 4),
            "confidence_auroc": round(auroc(1.0 - confidence, ~correct), 4),
            "wrong_with_confidence_over_0.9": int(((~correct) & (confidence > 0.9)).sum()),
        }
    results["qa"] = qa_result
    wrong, roc = qa_result["all"]["wrong"], qa_result["all"]["confidence_auroc"]
    results["targets"][f"qa wrong answers >= {QA_MIN_WRONG}"] = {"value": wrong, "met": wrong >= QA_MIN_WRONG}
    results["targets"][f"qa confidence AUROC < {QA_MAX_CONFIDENCE_AUROC}"] = {
        "value": roc, "met": roc < QA_MAX_CONFIDENCE_AUROC
    }
    results["all_targets_met"] = all(t["met"] for t in results["targets"].values())
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate a steerlab demo model on held-out world data.")
    parser.add_argument("model_dir")
    parser.add_argument("--write", action="store_true", help="write metrics.json into model_dir")
    args = parser.parse_args(argv)
    results = evaluate_demo_model(args.model_dir)
    training_file = Path(args.model_dir) / "training.json"
    if training_file.exists():
        results["training"] = json.loads(training_file.read_text())
    print(json.dumps(results, indent=2))
    if args.write:
        from steerlab.organism.model_card import render_model_card

        (Path(args.model_dir) / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
        (Path(args.model_dir) / "README.md").write_text(render_model_card(results))


if __name__ == "__main__":
    main()
