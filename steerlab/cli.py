"""The ``steerlab`` command line. Heavy imports happen inside the commands, so ``--help`` is instant.

    steerlab demo                                   # the whole pipeline on the embedded demo model
    steerlab run run.toml                           # the same on your model and data (steerlab run --example)
    steerlab capture demo "q : where is Varo ? a :" --layers -1 --out acts/
    steerlab probe demo --dataset demo/cities --out probes/
    steerlab steer demo probes/artifacts/probe_diff_means --layer 1 --alpha 1 "varo is in"   # alpha x token norm
    steerlab report probes/ --overwrite
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

EPILOG = """\
a first session:
  steerlab demo --out demo-run          # ~1 min; open demo-run/report.html
  steerlab run --example > run.toml     # edit the model and data, then
  steerlab run run.toml

each stage on its own:
  capture        activations to a folder (safetensors shards + JSON)
  probe          probes at every layer of a model on a labelled dataset
  steer          generate with and without a steering vector or probe direction
  hallucination  token-level hallucination probes on the model's own answers
  train-sae      a sparse autoencoder on a model's activations (sae-lens)
  report         rebuild report.html from a run folder's saved sections

`steerlab COMMAND --help` explains each one."""


def _layers(text: str) -> list[int] | None:
    if text == "all":
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers takes 'all' or comma-separated ints like '0,2,-1', got {text!r}")


def _position(text: str) -> str | int:
    try:
        return int(text)
    except ValueError:
        return text


def _command(commands: Any, name: str, help: str, description: str, example: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=help, description=description, epilog=f"example:\n  {example}",
                               formatter_class=argparse.RawDescriptionHelpFormatter)


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="'demo' (the embedded model), a save_pretrained directory or a hub id")
    parser.add_argument("--backend", default="auto", choices=["auto", "hf", "transformer_lens", "nnsight"])


def _output_arguments(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument("--out", type=Path, default=None if default is None else Path(default), required=default is None,
                        help="output directory" + (f" (default: {default})" if default else ""))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output directory")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steerlab", description="Interpretability and steering of language models: "
                                     "capture activations, probe concepts, steer generation, compare SAE features.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = _command(commands, "demo", "the whole pipeline on the embedded demo model, with a report",
                    "Capture, probe sweep, transfer across truth domains, calibrated steering with a random control, "
                    "sentiment steering, then the later stages; writes metrics.json, artifacts/ and report.html.",
                    "steerlab demo --out demo-run")
    _output_arguments(demo, default="steerlab-demo")

    run = _command(commands, "run", "the pipeline on any model and dataset, from a TOML / YAML config",
                   "Capture -> probes at every layer -> steering with the chosen probe's direction -> report. "
                   "`steerlab run --example` prints a commented config to start from; unknown keys are errors.",
                   "steerlab run --example > run.toml && steerlab run run.toml --out my-run")
    run.add_argument("config", nargs="?", type=Path, help="a .toml, .yaml or .yml file")
    run.add_argument("--example", action="store_true", help="print an example config and exit")
    run.add_argument("--out", type=Path, help="output directory (default: the config's [output] dir)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output directory")

    capture = _command(commands, "capture", "capture activations to a directory (safetensors + JSON)",
                       "Capture one site's activations at chosen layers and token positions, streamed to disk; "
                       "running it again on the same --out resumes an unfinished capture.",
                       "steerlab capture demo --file texts.txt --layers 0,-1 --position mean --out acts/")
    _model_arguments(capture)
    capture.add_argument("texts", nargs="*", help="texts to run (or use --file)")
    capture.add_argument("--file", type=Path, help="a text file with one input per line")
    capture.add_argument("--out", type=Path, required=True, help="output directory (must be new, or a capture to resume)")
    capture.add_argument("--site", default="resid_post", help="resid_pre, resid_mid, resid_post, attn_out, mlp_out")
    capture.add_argument("--layers", type=_layers, default=None, help="'all' (default) or e.g. '0,2,-1'")
    capture.add_argument("--position", type=_position, default="last", help="last, mean, all, or a token index")
    capture.add_argument("--batch-size", type=int, default=32)

    probe = _command(commands, "probe", "probes at every layer on a labelled dataset (no steering)",
                     "Capture the dataset's texts, sweep probe methods over layers, fit each on the training rows, "
                     "score the held-out rows; writes probes as artifacts, metrics.json and report.html.",
                     "steerlab probe demo --dataset demo/cities --methods raptor,diff_means --out probes/")
    _model_arguments(probe)
    data = probe.add_mutually_exclusive_group(required=True)
    data.add_argument("--dataset", help="a built-in dataset, e.g. demo/cities, demo/sentiment")
    data.add_argument("--file", help="your CSV / JSONL with a text and a 0/1 label column")
    probe.add_argument("--text-column", default="text")
    probe.add_argument("--label-column", default="label")
    probe.add_argument("--group-column", default=None, help="keep rows of one entity on one side of the split")
    probe.add_argument("--concept", default=None, help="what the labels mean, for the report (default: file name)")
    probe.add_argument("--site", default="resid_post")
    probe.add_argument("--layers", type=_layers, default=None, help="'all' (default) or e.g. '0,2,-1'")
    probe.add_argument("--position", type=_position, default="last", help="last, mean or a token index")
    probe.add_argument("--methods", default="raptor,diff_means,lda,logistic", help="comma-separated probe methods")
    _output_arguments(probe)

    steer = _command(commands, "steer", "generate with and without a steering vector or probe direction",
                     "Load a saved steering vector or probe (NAME.safetensors + NAME.json), add it while generating, "
                     "and print each prompt's unsteered and steered continuations side by side.",
                     "steerlab steer demo steerlab-demo/artifacts/sentiment_vector --alpha 2 \"the food was\"")
    _model_arguments(steer)
    steer.add_argument("vector", type=Path, help="a saved SteeringVector or probe artifact (path without suffix)")
    steer.add_argument("prompts", nargs="*", help="prompts (or use --file)")
    steer.add_argument("--file", type=Path, help="a text file with one prompt per line")
    steer.add_argument("--layer", type=int, default=None, help="which layer of a per-layer probe to steer at")
    steer.add_argument("--alpha", type=float, default=1.0, help="coefficient (x the vector's norm; see --norm-units)")
    steer.add_argument("--norm-units", action="store_true",
                       help="alpha in units of the layer's median token norm (always so for a probe artifact)")
    steer.add_argument("--mode", default="add", choices=["add", "ablate", "set", "clamp"])
    steer.add_argument("--target", type=float, default=None, help="the projection (set) or probe probability (clamp)")
    steer.add_argument("--positions", default="all", type=_position,
                       help="all, prompt, generated, last, or a token index to start at")
    steer.add_argument("--max-new-tokens", type=int, default=12)

    hallucination = _command(
        commands, "hallucination", "token-level hallucination probes on the model's own answers",
        "Generate answers to questions, label each answer token against the reference answer, choose the layer "
        "by Bayesian optimisation, fit the MLP probe (Liang & Wang), the linear probe (Obeso et al.) and "
        "steerlab's detector, and compare them with output confidence; writes metrics.json, artifacts/ and "
        "report.html. Without --file: the demo world's QA set.",
        "steerlab hallucination demo --file qa.csv --question-column question --answer-column answer --out halluc/")
    _model_arguments(hallucination)
    hallucination.add_argument("--file", type=Path, help="a CSV of questions and reference answers")
    hallucination.add_argument("--question-column", default="question")
    hallucination.add_argument("--answer-column", default="answer")
    hallucination.add_argument("--group-column", default=None, help="keep questions about one entity together")
    hallucination.add_argument("--test-share", type=_share, default=0.5, help="held-out share of the questions")
    hallucination.add_argument("--max-new-tokens", type=int, default=8)
    _output_arguments(hallucination)

    train_sae = _command(commands, "train-sae", "train a sparse autoencoder on a model's activations (sae-lens)",
                         "Capture one site at one layer over texts (--file, or the demo world's corpus), train a TopK "
                         "or L1 SAE with sae-lens' SAETrainer, save it in sae-lens format (cfg.json + "
                         "sae_weights.safetensors) with card.json: settings and held-out quality (explained variance, "
                         "L0, dead latents, CE increase).",
                         "steerlab train-sae --layer 2 --architecture topk --k 8 --out my-sae")
    from steerlab.sae.train import add_arguments  # argparse only: keeps --help instant

    add_arguments(train_sae)

    report = _command(commands, "report", "rebuild report.html from a run folder",
                      "Assemble report.html from the sections each stage saved under DIR/sections/ "
                      "(plotly embedded once, opens offline).",
                      "steerlab report steerlab-demo --overwrite")
    report.add_argument("dir", type=Path, help="a folder written by demo, run or probe")
    report.add_argument("--title", default=None, help="page title (default: the folder's name)")
    report.add_argument("--overwrite", action="store_true", help="replace an existing report.html")
    return parser


def _run_capture(args: argparse.Namespace) -> int:
    import steerlab
    from steerlab.report.terminal import text_table

    texts = list(args.texts) + _file_lines(args.file)
    if not texts:
        raise ValueError("no texts given; pass them as arguments or with --file.")
    model = steerlab.load_model(args.model, backend=args.backend)
    acts = steerlab.capture(model, texts, layers=args.layers, site=args.site, position=args.position,
                            batch_size=args.batch_size, out=args.out)
    values = acts.values
    print(acts)
    print(text_table([{"layer": layer, "mean |h|": values[:, slot].norm(dim=-1).mean().item()}
                      for slot, layer in enumerate(acts.layers)]))
    return 0


def _file_lines(path: Path | None) -> list[str]:
    if path is None:
        return []
    return [line for line in path.read_text().splitlines() if line.strip()]


def _held_out_table(probes: dict[str, Any]) -> str:
    """Layers down, methods across: held-out accuracy (AUROC)."""
    from steerlab.report.terminal import text_table

    rows: dict[int, dict[str, Any]] = {}
    for r in probes["held_out"]:
        rows.setdefault(r["layer"], {"layer": r["layer"]})[r["method"]] = f"{r['accuracy']:.3f} ({r['auroc']:.3f})"
    return text_table(list(rows.values()))


def _steering_line(steering: dict[str, Any]) -> str:
    if "skipped" in steering:
        return f"  steering: skipped ({steering['skipped']})"
    if steering.get("layer") is None:
        return "  steering: no (layer, alpha) met the calibration criteria (see report.html)"
    return (f"  steering: {steering.get('direction', 'mass-mean')} at layer {steering['layer']}, alpha "
            f"{steering['alpha_norm_units']} x median norm: flips {steering['test_flip_false_to_true']:.0%} / "
            f"{steering['test_flip_true_to_false']:.0%} (random control {steering['test_control_flip_false_to_true']:.0%}"
            f" / {steering['test_control_flip_true_to_false']:.0%}), KL {steering['kl_neutral']:.3f}")


def _run_pipeline_config(args: argparse.Namespace) -> int:
    from steerlab.pipeline.config import EXAMPLE_CONFIG, load_config

    if args.example:
        print(EXAMPLE_CONFIG, end="")
        return 0
    if args.config is None:
        raise ValueError("give a config file (steerlab run --example > run.toml writes one to start from).")
    from steerlab.pipeline.run import run_pipeline

    config = load_config(args.config)
    out = args.out or Path(config.resolve(config.output.dir))
    metrics = run_pipeline(config, out, overwrite=args.overwrite)
    _print_run_summary(out, metrics)
    return 0


def _print_run_summary(out: Path, metrics: dict[str, Any]) -> None:
    print(f"\nsteerlab -> {out}/report.html, {out}/metrics.json, {out}/artifacts/")
    print(f"  {metrics['data']['name']}: {metrics['data']['n_train']} train / {metrics['data']['n_test']} test texts; "
          "held-out accuracy (AUROC) by layer:")
    print(_held_out_table(metrics["probes"]))
    print(_steering_line(metrics["steering"]))
    if "hallucination" in metrics:
        print(f"  hallucination: {metrics['hallucination']['data']['test']['answers']} test answers, "
              f"{metrics['hallucination']['data']['test']['wrong_answers']} wrong:")
        print(_hallucination_table(metrics["hallucination"]))
    if "sae" in metrics:
        sae = metrics["sae"]
        print(f"  SAE {sae['hook_name']}: explained variance {sae['quality']['explained_variance']:.3f}; {sae['summary']}")
    print(f"  timings (s): {metrics['timings']}")


def _run_probe(args: argparse.Namespace) -> int:
    from steerlab.pipeline.config import parse_config
    from steerlab.pipeline.run import run_pipeline

    data = ({"dataset": args.dataset} if args.dataset else
            {"file": str(Path(args.file).resolve()), "text_column": args.text_column,
             "label_column": args.label_column, "group_column": args.group_column, "concept": args.concept})
    config = parse_config({"model": {"name": args.model, "backend": args.backend}, "data": data,
                           "capture": {"site": args.site, "layers": args.layers or "all", "position": args.position},
                           "probes": {"methods": [m.strip() for m in args.methods.split(",") if m.strip()]},
                           "steering": {"direction": "none"}}, source="steerlab probe")
    metrics = run_pipeline(config, args.out, overwrite=args.overwrite, steer=False)
    _print_run_summary(args.out, metrics)
    return 0


def _run_steer(args: argparse.Namespace) -> int:
    import steerlab
    from steerlab.artifacts import artifact_kind
    from steerlab.report.terminal import text_table
    from steerlab.steering import SteeringVector

    prompts = list(args.prompts) + _file_lines(args.file)
    if not prompts:
        raise ValueError("no prompts given; pass them as arguments or with --file.")
    if args.mode in ("set", "clamp") and args.target is None:
        raise ValueError(f"--mode {args.mode} needs --target (the projection for set, the probe probability for clamp).")
    model = steerlab.load_model(args.model, backend=args.backend)
    norm_units = args.norm_units
    if artifact_kind(args.vector) == "steering_vector":
        vector = SteeringVector.load(args.vector)
    else:  # a probe artifact: its unit direction at one layer, so alpha is in units of that layer's token norm
        vector = _probe_vector(args, model)
        norm_units = True
    if norm_units and vector.typical_norm is None:
        vector = vector.with_typical_norm(model, prompts)
    before = model.generate(prompts, max_new_tokens=args.max_new_tokens)
    with steerlab.steer(model, vector, alpha=args.alpha, mode=args.mode, target=args.target,
                        positions=args.positions, norm_units=norm_units):
        after = model.generate(prompts, max_new_tokens=args.max_new_tokens)
    units = f" x the layer's median token norm ({vector.typical_norm:.3g})" if norm_units else ""
    print(f"{vector!r}, alpha={args.alpha}{units}, mode={args.mode}")
    print(text_table([{"prompt": p, "unsteered": b, "steered": a} for p, b, a in zip(prompts, before, after)]))
    return 0


def _probe_vector(args: argparse.Namespace, model: Any) -> Any:
    """The steering direction of a saved probe at ``--layer`` (negative counts from the end)."""
    from steerlab.probes import load_probe
    from steerlab.sites import resolve_layer
    from steerlab.steering import SteeringVector

    probe = load_probe(args.vector)
    if getattr(probe, "coef_", None) is None:  # e.g. a token-level hallucination probe (an MLP)
        raise ValueError(f"{args.vector} is a {type(probe).__name__}: it has no single direction to steer with. "
                         "Use a linear probe (probe_*, raptor_*) or a steering vector (*_vector) artifact.")
    layers = list(getattr(probe, "layers_", None) or [])
    if args.layer is None and len(layers) > 1:
        raise ValueError(f"{args.vector} holds a probe per layer ({layers}): pass --layer (one of them).")
    layer = None if args.layer is None else resolve_layer(args.layer, model.n_layers)
    return SteeringVector.from_probe(probe, layer=layer)


def _share(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def _hallucination_table(hallucination: dict[str, Any]) -> str:
    from steerlab.report.terminal import text_table

    return text_table([{"method": name, "token AUROC": result["token"]["auroc"],
                        "answer AUROC": result["answer"]["auroc"], "answer recall@5% FPR": result["answer"]["recall@5%fpr"]}
                       for name, result in hallucination["methods"].items()])


def _run_hallucination(args: argparse.Namespace) -> int:
    import steerlab
    from steerlab.pipeline.hallucination_stage import run_hallucination_stage
    from steerlab.pipeline.output import prepare_output, versions, write_json
    from steerlab.pipeline.run import qa_splits
    from steerlab.report import write_report
    from steerlab.report.sections_file import save_sections

    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}.")
    data = qa_splits(args.file, args.question_column, args.answer_column, args.group_column, args.test_share)
    model = steerlab.load_model(args.model, backend=args.backend)
    out = prepare_output(args.out, args.overwrite)  # only once the inputs are known to be good
    metrics, sections = run_hallucination_stage(model, artifacts=out / "artifacts", data=data,
                                                max_new_tokens=args.max_new_tokens)
    write_json(out / "metrics.json", {"schema": 1, "model": {"name": model.name, "n_layers": model.n_layers,
                                                             "d_model": model.d_model},
                                      "hallucination": metrics, "versions": versions()})
    save_sections(out, "hallucination", sections)
    write_report(out / "report.html", f"steerlab hallucination: {model.name}", sections)
    print(f"\nsteerlab hallucination -> {out}/report.html, {out}/metrics.json, {out}/artifacts/")
    print(f"  {metrics['data']['test']['answers']} test answers, {metrics['data']['test']['wrong_answers']} wrong:")
    print(_hallucination_table(metrics))
    return 0


def _run_train_sae(args: argparse.Namespace) -> int:
    import json
    import shlex

    from steerlab.sae.train import run

    command = "steerlab train-sae " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    card = run(args, command)
    print(json.dumps(card["quality_heldout"], indent=1))
    print(f"steerlab train-sae -> {args.out} (load it with steerlab.sae.load_sae({str(args.out)!r}, model=...))")
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from steerlab.report import write_report
    from steerlab.report.sections_file import load_sections

    path = args.dir / "report.html"
    if path.exists() and not args.overwrite:
        raise FileExistsError(f"{path} exists: pass --overwrite to rebuild it.")
    write_report(path, args.title or f"steerlab: {args.dir.name}", load_sections(args.dir))
    print(f"steerlab report -> {path}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from steerlab.pipeline.demo import run_demo
    from steerlab.report.terminal import text_table

    metrics = run_demo(args.out, overwrite=args.overwrite)
    probes = metrics["probes"]
    print(f"\nsteerlab demo -> {args.out}/report.html, {args.out}/metrics.json, {args.out}/artifacts/")
    print("  held-out cities, RaptorProbe by layer:")
    print(text_table([{"layer": layer, "accuracy": accuracy} for layer, accuracy in enumerate(probes["held_out_accuracy"])]))
    print(f"  transfer AUROC ~ Mahalanobis cosine: R^2 = {probes['transfer_r2']['mahalanobis']['r2']:.2f}")
    print(_steering_line(metrics["steering"]["truth"]))
    hallucination = metrics["hallucination"]
    print(f"  hallucination detection on {hallucination['methods']['mlp']['answer']['n']} QA answers (papers' probes "
          f"at layer {hallucination['layer']}, steerlab's detector mlp_plus at layer "
          f"{hallucination['probe_inputs']['mlp_plus']['layer']}):")
    print(_hallucination_table(hallucination))
    sae = metrics["sae"]
    quality = next(row for row in sae["quality"] if row["name"] == sae["sae_name"])
    print(f"  SAE {sae['sae_name']}: explained variance {quality['explained_variance']:.3f}, L0 {quality['l0']:.1f}, "
          f"CE +{quality['ce_increase']:.3f} nats; detection AUROC / steering efficacy at KL "
          f"{sae['concepts']['truth']['kl_budget']}:")
    print(text_table([{"method": row["method"], **{f"{concept} {key}": next(
        (r[field] for r in sae["concepts"][concept]["comparison"] if r["method"] == row["method"]), None)
        for concept in ("truth", "sentiment") for key, field in (("AUROC", "detection_auroc"), ("efficacy", "efficacy"))}}
        for row in sae["concepts"]["truth"]["comparison"]]))
    print(f"  timings (s): {metrics['timings']}")
    return 0


COMMANDS = {"capture": _run_capture, "demo": _run_demo, "run": _run_pipeline_config, "probe": _run_probe,
            "steer": _run_steer, "hallucination": _run_hallucination, "train-sae": _run_train_sae,
            "report": _run_report}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # texts / prompts may also come after options (`steer demo v --alpha 2 "the food was"`)
    free = {"capture": "texts", "steer": "prompts"}.get(args.command)
    if extra and (free is None or any(item.startswith("-") for item in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        setattr(args, free, getattr(args, free) + extra)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, OSError) as error:  # bad input: one line (FileNotFoundError, FileExistsError are OSErrors)
        prefix = f"steerlab {args.command}: "
        message = str(error)
        print(message if message.startswith(prefix) else prefix + message, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
