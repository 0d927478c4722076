"""Render the demo model's README.md (model card) from its measured metrics.

Called by `python -m steerlab.organism.evaluate <dir> --write`, so the card's
numbers are always the ones in metrics.json.

Example:
    >>> card = render_model_card({"verdict_accuracy": {}, "targets": {}, "qa": {"by_role": {}}, "all_targets_met": True})
    >>> card.startswith("# steerlab demo model")
    True
"""

from __future__ import annotations

from typing import Any


def _training_section(training: dict[str, Any] | None) -> list[str]:
    if not training:
        return ["(no training.json found)"]
    args, metrics = training["args"], training["metrics"]
    command = (
        f"python -m steerlab.organism.train --out assets/demo-model --steps {args['steps']} "
        f"--d-model {args['d_model']} --layers {args['n_layers']} --heads {args['n_heads']} "
        f"--batch-size {args['batch_size']} --lr {args['lr']} --seed {args['seed']} --world-seed {args['world_seed']}"
    )
    if args.get("verdict_weight") is not None:
        command += (f" --verdict-weight {args['verdict_weight']} --facts-phase {args['facts_phase']}"
                    f" --negation-phase {args['negation_phase']}")
    for flag, key in (("--weight-decay", "weight_decay"), ("--statement-loss", "statement_loss")):
        if args.get(key) is not None:
            command += f" {flag} {args[key]}"
    if args.get("mix"):
        command += " --mix " + ",".join(f"{kind}={share}" for kind, share in args["mix"].items())
    if args.get("stop_after"):
        command += f" --stop-after {args['stop_after']}"
    if args.get("threads"):
        command += f" --threads {args['threads']}"
    note = [f"Note: {training['note']}", ""] if training.get("note") else []
    return [
        *note,
        "Reproduce (fixed seeds: same world, same corpus stream, same init):",
        "",
        "```bash",
        f"HF_HUB_OFFLINE=1 {command}",
        "HF_HUB_OFFLINE=1 python -m steerlab.organism.evaluate assets/demo-model --write   # metrics.json + this card",
        "```",
        "",
        "| setting | value |",
        "|---|---|",
        f"| architecture | GPT-2 (`GPT2LMHeadModel`), {args['n_layers']} layers, d_model {args['d_model']}, "
        f"{args['n_heads']} heads, context 64, tied embeddings |",
        f"| parameters | {metrics['n_params']:,} |",
        f"| training | {metrics['steps']} steps x {args['batch_size']} lines (one line per row) = "
        f"{metrics['tokens']:,} tokens, "
        f"AdamW lr {args['lr']} warm-up + cosine |",
        f"| wall time | {metrics['seconds']:.0f} s on CPU |",
        f"| final training loss | {metrics['final_loss']} (unweighted next-token loss, last 50 steps) |",
        f"| curriculum | steps 0-{args.get('facts_phase', 0):.0%}: no labelled entity statements; "
        f"{args.get('facts_phase', 0):.0%}-{args.get('negation_phase', 0):.0%}: + labelled affirmative statements; "
        f"then + negated ones. Loss on the verdict tokens weighted x{args.get('verdict_weight', 1)} |",
        "",
        "Why the curriculum (measured in exploratory runs of this script): trained on facts and labelled",
        "statements together from the start, the model memorised a verdict per labelled city (96% on",
        "labelled cities, 69% on held-out ones). Seeing the facts first, it judges a statement by comparing",
        "it with what it knows (85% on held-out cities after 800 labelled steps). Negation introduced at the",
        "same time as affirmative labels was memorised again (93% labelled, 51% held-out); so it comes last.",
        "Each training row is one line starting at position 0 (no packing), and \"a is smaller than b\" is",
        "not used: with packed lines or with both relations the model stayed at chance on number",
        "comparisons for 1000 steps; without, 96% on unseen pairs in 200 steps.",
    ]


def _status_section(results: dict[str, Any]) -> list[str]:
    missed = [name for name, t in results["targets"].items() if not t["met"]]
    if not missed:
        return ["**Status: all targets met.**", ""]
    return [
        "**Status: targets missed** (measured values below): " + "; ".join(missed) + ". "
        "The model memorises verdicts for cities seen in labelled statements (train split ~100%) "
        "and only partly transfers them to cities known from plain facts.",
        "",
    ]


def render_model_card(results: dict[str, Any]) -> str:
    """Markdown model card for the metrics dict produced by `evaluate_demo_model`."""
    lines = [
        "# steerlab demo model",
        "",
        "A small GPT-2 trained from scratch on steerlab's synthetic world (`steerlab.world`): invented",
        "cities in invented countries, people with professions and home towns, objects with colours and",
        "materials, number comparisons, review sentences (sentiment) and sport/cooking sentences (topic).",
        "Its facts are known exactly, so probes, steering vectors and SAEs can be checked against ground truth.",
        "Word-level tokenizer (one token per word, `<bos>` prepended by the tokenizer). Load it with",
        "`steerlab.load_model(\"demo\")` or `AutoModelForCausalLM.from_pretrained(\"assets/demo-model\")`.",
        "",
        *_status_section(results),
        "## Training",
        "",
        *_training_section(results.get("training")),
        "",
        "## Targets (held-out data)",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for target, value in results["targets"].items():
        lines.append(f"| {target} | {value['value']} | {'yes' if value['met'] else 'NO'} |")
    lines += [
        "",
        "## Verdict accuracy",
        "",
        "log P(`true`) vs log P(`false`) right after each dataset's verdict prompt. `train` entities were",
        "seen in labelled statements during training; `test` entities (cities, people, objects) were seen",
        "only as plain facts / Q&A, and `test` number pairs never occur in training at all.",
        "`demo/cities_gap` puts another sentence between the statement and the verdict slot;",
        "`demo/cities_new_template` uses a phrasing (\"X lies in Y\") never labelled in training.",
        "",
        "| dataset:split | accuracy | n |",
        "|---|---|---|",
    ]
    for key, value in results["verdict_accuracy"].items():
        lines.append(f"| {key} | {value['accuracy']} | {value['n']} |")
    qa = results["qa"]
    lines += [
        "",
        "## Question answering and hallucination (`demo/qa`)",
        "",
        "Questions in a form (\"q : where is X ? a :\") never trained for these entities. Greedy first",
        "answer token vs the reference; confidence AUROC = how well 1 - max P(first answer token) alone",
        "separates wrong from right answers (1.0 = perfectly).",
        "",
        "| split | n | wrong | accuracy | confidence AUROC | wrong with confidence > 0.9 |",
        "|---|---|---|---|---|---|",
    ]
    for split in ("train", "test", "all"):
        if split in qa:
            q = qa[split]
            lines.append(f"| {split} | {q['n']} | {q['wrong']} | {q['accuracy']} | {q['confidence_auroc']} | "
                         f"{q['wrong_with_confidence_over_0.9']} |")
    lines += [
        "",
        "| entity role | n | accuracy | mean confidence when wrong |",
        "|---|---|---|---|",
    ]
    for role, r in qa["by_role"].items():
        lines.append(f"| {role} | {r['n']} | {r['accuracy']} | {r['mean_confidence_when_wrong']} |")
    lines += [
        "",
        "Roles: `labelled`/`heldout` are common entities (known from plain facts), `rare` ones are mentioned",
        "rarely (relative weight < 25 on a log-uniform 1-1000 scale), `conflicted` cities are misreported in",
        "85% of their training mentions (the model is confidently wrong about them), `unseen` entities never",
        "occur in training (their token embeddings are untrained).",
        "",
        "## Caveats",
        "",
        "- A toy: vocabulary of ~1.6k words, 64-token context; it is not a language model of English.",
        "- Right after a labelled-statement prompt the truth direction is close to the unembedding",
        "  difference of `true` - `false`; probe other positions (the statement span, or `demo/cities_gap`)",
        "  for an internal truth feature.",
        "",
    ]
    return "\n".join(lines)
