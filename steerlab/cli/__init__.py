"""The ``steerlab`` command line. Heavy imports happen inside the commands, so ``--help`` is instant.

    steerlab demo                                   # the whole pipeline on the embedded demo model
    steerlab run run.toml                           # the same on your model and data (steerlab run --example)
    steerlab capture demo "q : where is Varo ? a :" --layers -1 --out acts/
    steerlab probe demo --dataset demo/cities --out probes/
    steerlab steer demo probes/artifacts/probe_diff_means --layer 1 --alpha 1 "varo is in"   # alpha x token norm
    steerlab report probes/ --overwrite
"""

from __future__ import annotations

import sys
from typing import Sequence

from steerlab.cli import commands
from steerlab.cli.parser import build_parser

COMMANDS = {"capture": commands.run_capture, "demo": commands.run_demo, "run": commands.run_pipeline_config,
            "probe": commands.run_probe, "steer": commands.run_steer, "hallucination": commands.run_hallucination,
            "train-sae": commands.run_train_sae, "report": commands.run_report, "models": commands.run_models}


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
    except KeyboardInterrupt:  # Ctrl-C: one line saying what was kept, the shell's code for SIGINT
        print(f"steerlab {args.command}: interrupted. {commands.after_interrupt(args)}", file=sys.stderr)
        return 130
    except (ValueError, OSError) as error:  # bad input: one line (FileNotFoundError, FileExistsError are OSErrors)
        prefix = f"steerlab {args.command}: "
        message = str(error)
        print(message if message.startswith(prefix) else prefix + message, file=sys.stderr)
        return 2
