"""The ``steerlab`` command line. Heavy imports happen inside the commands, so ``--help`` is instant.

    steerlab demo                                   # the whole pipeline on the embedded demo model
    steerlab run run.toml                           # the same on your model and data (steerlab run --example)
    steerlab capture demo "q : where is Varo ? a :" --layers -1 --out acts/
    steerlab capture demo --file texts.txt --shard 0/2 --out acts-0/    # then 1/2, then:
    steerlab merge-captures acts-0 acts-1 --out acts/
    steerlab probe demo --dataset demo/cities --out probes/
    steerlab steer demo probes/artifacts/probe_diff_means --layer 1 --alpha 1 "varo is in"   # alpha x token norm
    steerlab report probes/ --overwrite
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Sequence

from steerlab.cli import commands
from steerlab.cli.parser import build_parser

COMMANDS = {"capture": commands.run_capture, "merge-captures": commands.run_merge_captures, "demo": commands.run_demo, "run": commands.run_pipeline_config,
            "probe": commands.run_probe, "steer": commands.run_steer, "hallucination": commands.run_hallucination,
            "train-sae": commands.run_train_sae, "sae-feature": commands.run_sae_feature, "report": commands.run_report, "models": commands.run_models}

MODEL_COMMANDS = {"capture", "demo", "run", "probe", "steer", "hallucination", "train-sae", "sae-feature"}  # the thread policy applies
BEFORE_TORCH = {"demo": commands.start_demo_sae_stage}  # work a command starts before torch is imported (as args.started)


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
        if args.command not in MODEL_COMMANDS:
            return COMMANDS[args.command](args)
        from steerlab.cli.threads import command_threads

        early = BEFORE_TORCH.get(args.command)
        args.started = early(args) if early else None
        try:
            with command_threads():  # torch threads for this command (see steerlab.cli.threads), restored after
                return COMMANDS[args.command](args)
        finally:
            if args.started is not None:
                args.started.close()  # a no-op once the command has used it; stops it if the command failed early
    except KeyboardInterrupt:  # Ctrl-C: one line saying what was kept, the shell's code for SIGINT
        print(f"steerlab {args.command}: interrupted. {commands.after_interrupt(args)}", file=sys.stderr)
        return 130
    except (ValueError, OSError) as error:  # bad input: one line (FileNotFoundError, FileExistsError are OSErrors)
        prefix = f"steerlab {args.command}: "
        message = flag_wording(str(error), command_flags(parser, args.command))
        print(message if message.startswith(prefix) else prefix + message, file=sys.stderr)
        return 2


def command_flags(parser: argparse.ArgumentParser, command: str) -> set[str]:
    """The long options of ``command`` (``--text-column``...)."""
    subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return {option for action in subparsers.choices[command]._actions for option in action.option_strings
            if option.startswith("--")}


def flag_wording(message: str, flags: set[str]) -> str:
    """The library names its keyword arguments (``text_column=``); on the command line they are flags
    (``--text-column``): rewrite each keyword that is one of this command's flags."""
    def flag(match: re.Match) -> str:
        option = "--" + match.group(1).replace("_", "-")
        return option if option in flags else match.group(0)

    return re.sub(r"(?<![\w-])([a-z][a-z0-9_]*)=(?![\w\"'])", flag, message)
