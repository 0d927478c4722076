"""The ``steerlab`` command line. Heavy imports happen inside the commands, so ``--help`` is instant.

    steerlab capture demo "q : where is Varo ? a :" --layers -1 --out acts/
    steerlab capture ./my-model --file texts.txt --site resid_post --position mean --out acts/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steerlab", description="Interpretability and steering of language models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="the whole probe-then-steer pipeline on the embedded demo model, with a report",
        description="Capture, probe sweep, transfer, calibrated steering with a random control, sentiment "
                    "steering; writes metrics.json, artifacts/ and report.html.")
    demo.add_argument("--out", type=Path, default=Path("steerlab-demo"), help="output directory (default: steerlab-demo)")
    demo.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output directory")

    capture = commands.add_parser(
        "capture", help="capture activations to a directory (safetensors + JSON)",
        description="Capture one site's activations at chosen layers and token positions, streamed to disk.")
    capture.add_argument("model", help="'demo', a local save_pretrained directory or a hub id")
    capture.add_argument("texts", nargs="*", help="texts to run (or use --file)")
    capture.add_argument("--file", type=Path, help="a text file with one input per line")
    capture.add_argument("--out", type=Path, required=True, help="output directory (must be new, or a capture to resume)")
    capture.add_argument("--backend", default="auto", choices=["auto", "hf", "transformer_lens", "nnsight"])
    capture.add_argument("--site", default="resid_post", help="resid_pre, resid_mid, resid_post, attn_out, mlp_out")
    capture.add_argument("--layers", type=_layers, default=None, help="'all' (default) or e.g. '0,2,-1'")
    capture.add_argument("--position", type=_position, default="last", help="last, mean, all, or a token index")
    capture.add_argument("--batch-size", type=int, default=32)
    return parser


def _run_capture(args: argparse.Namespace) -> int:
    import steerlab

    texts = list(args.texts)
    if args.file is not None:
        texts += [line for line in args.file.read_text().splitlines() if line.strip()]
    if not texts:
        print("steerlab capture: no texts given; pass them as arguments or with --file.", file=sys.stderr)
        return 2
    model = steerlab.load_model(args.model, backend=args.backend)
    acts = steerlab.capture(model, texts, layers=args.layers, site=args.site, position=args.position,
                            batch_size=args.batch_size, out=args.out)
    values = acts.values
    print(acts)
    print(f"{'layer':>5}  {'mean |h|':>9}")
    for slot, layer in enumerate(acts.layers):
        print(f"{layer:>5}  {values[:, slot].norm(dim=-1).mean().item():>9.3f}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from steerlab.pipeline.demo import run_demo

    metrics = run_demo(args.out, overwrite=args.overwrite)
    truth = metrics["steering"]["truth"]
    print(f"\nsteerlab demo -> {args.out}/report.html, {args.out}/metrics.json, {args.out}/artifacts/")
    print(f"  held-out cities, RaptorProbe accuracy by layer: "
          f"{', '.join(f'{a:.2f}' for a in metrics['probes']['held_out_accuracy'])}")
    print(f"  transfer AUROC ~ Mahalanobis cosine: R^2 = {metrics['probes']['transfer_r2']['mahalanobis']['r2']:.2f}")
    if truth.get("layer") is not None:
        print(f"  truth steering at layer {truth['layer']}, alpha {truth['alpha_norm_units']}: false->true "
              f"{truth['test_flip_false_to_true']:.0%} (random {truth['test_control_flip_false_to_true']:.0%}), "
              f"true->false {truth['test_flip_true_to_false']:.0%}, KL {truth['kl_neutral']:.3f}")
    print(f"  timings (s): {metrics['timings']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"capture": _run_capture, "demo": _run_demo}[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, OSError) as error:
        print(f"steerlab {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
