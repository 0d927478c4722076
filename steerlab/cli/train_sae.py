"""``steerlab train-sae MODEL``: train an SAE on a model's activations and save it (sae-lens format).

The command-line side of :func:`steerlab.sae.train_sae`: options, checks that run before the
model loads, and the folder it writes: ``cfg.json`` + ``sae_weights.safetensors``
(``SAE.load_from_disk`` / :func:`steerlab.sae.load_sae`) and ``card.json`` (the command, the
settings and the quality on held-out text).

Example (the shipped demo SAE; about a minute on one CPU thread)::

    OMP_NUM_THREADS=1 steerlab train-sae demo --layer 2 --architecture topk --k 8 \\
        --out assets/demo-sae/topk-blocks.2.hook_resid_post
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from steerlab.output_folder import check_output, staged_output


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The training options of ``steerlab train-sae`` (after the model arguments every command shares)."""
    parser.add_argument("--file", type=Path, default=None,
                        help="train on these texts, one per line (default: the demo world's corpus); the last "
                             "--eval-lines lines are held out for the quality numbers")
    parser.add_argument("--layer", type=int, required=True)
    parser.add_argument("--site", default="resid_post")
    parser.add_argument("--architecture", choices=("topk", "standard"), default="topk")
    parser.add_argument("--d-sae", type=int, default=512)
    parser.add_argument("--k", type=int, default=8, help="active latents per token (topk)")
    parser.add_argument("--l1-coefficient", type=float, default=2.0, help="L1 penalty (standard)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lines", type=int, default=6000, help="demo-corpus lines to capture for training")
    parser.add_argument("--eval-lines", type=int, default=500, help="held-out lines for the quality numbers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, required=True, help="directory to write the SAE to (must not hold one already)")
    return parser


def texts_for(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts): from ``--file`` or the demo corpus."""
    from steerlab.sae.training import demo_corpus

    if args.file is None:
        return demo_corpus(args.lines, seed=1000 + args.seed), demo_corpus(args.eval_lines, seed=999)
    from steerlab.datasets import read_lines

    lines = read_lines(args.file)
    if len(lines) <= args.eval_lines:
        raise ValueError(f"{args.file} has {len(lines)} texts: need more than --eval-lines ({args.eval_lines}), "
                         "or lower --eval-lines.")
    return lines[:-args.eval_lines], lines[-args.eval_lines:]


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse bad settings and an unusable ``--out`` before any model is loaded (ValueError / FileExistsError)."""
    for option, value in (("--d-sae", args.d_sae), ("--steps", args.steps), ("--batch-size", args.batch_size),
                          ("--eval-lines", args.eval_lines), ("--threads", args.threads)):
        if value < 1:
            raise ValueError(f"{option} must be at least 1 (got {value}).")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr must be a positive finite number (got {args.lr}); the default is 1e-3.")
    if not (math.isfinite(args.l1_coefficient) and args.l1_coefficient >= 0):
        raise ValueError(f"--l1-coefficient must be a finite number >= 0 (got {args.l1_coefficient}).")
    if args.architecture == "topk" and not 1 <= args.k <= args.d_sae:
        raise ValueError(f"--k must be between 1 and --d-sae ({args.d_sae}) for a topk SAE (got {args.k}); "
                         "pick a smaller --k or a larger --d-sae.")
    if args.file is None and args.lines < 1:
        raise ValueError(f"--lines must be at least 1 (got {args.lines}).")
    if args.file is not None and not Path(args.file).is_file():
        raise FileNotFoundError(f"--file {args.file}: no such file; pass a text file with one text per line.")
    out = Path(args.out)
    if (out / "cfg.json").exists():
        raise FileExistsError(f"{out} already holds an SAE: choose another --out or delete it first.")
    check_output(out, overwrite=False)


def run(args: argparse.Namespace, command: str) -> dict:
    """Train, save the SAE and its card; returns the card."""
    check_arguments(args)
    import torch

    from steerlab.cli.model_options import load_model_from_args
    from steerlab.sae.quality import sae_quality
    from steerlab.sae.training import train_sae

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    train_texts, eval_texts = texts_for(args)  # before the model: a too-short --file fails fast
    model = load_model_from_args(args)
    started = time.perf_counter()
    sae = train_sae(model, train_texts, layer=args.layer, site=args.site,
                    architecture=args.architecture, d_sae=args.d_sae, k=args.k, l1_coefficient=args.l1_coefficient,
                    steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    seconds = time.perf_counter() - started
    quality = sae_quality(model, sae, eval_texts)
    card = {"command": command, "hook_name": sae.cfg.metadata.hook_name, "architecture": args.architecture,
            "d_in": sae.cfg.d_in, "d_sae": sae.cfg.d_sae, "train_seconds": round(seconds, 1),
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                         if k not in ("out", "command", "handler")},
            "quality_heldout": {k: round(v, 4) if isinstance(v, float) else v for k, v in quality.items()},
            "ce_loss_recovered_baseline": "mean ablation of the site (sae-lens' CE loss score uses zero ablation)"}
    with staged_output(out, overwrite=False) as work:  # a killed run leaves no half-written SAE at --out
        sae.save_model(work)
        (work / "card.json").write_text(json.dumps(card, indent=1))
    return card
