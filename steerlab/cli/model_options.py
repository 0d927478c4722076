"""The model options every model-loading command shares, and the model they load.

``MODEL [--backend B] [--device D] [--dtype T]`` on ``capture``, ``probe``, ``steer``,
``hallucination``, ``train-sae`` and ``sae-feature``. Only argparse and the (stdlib-only) config
module are imported at the top, so ``steerlab --help`` stays instant.
"""

from __future__ import annotations

import argparse
from typing import Any

from steerlab.pipeline.config import BACKENDS, DTYPES  # the config's [model] keys take the same values (stdlib only)


def model_arguments(parser: argparse.ArgumentParser) -> None:
    """The positional ``model`` and ``--backend`` / ``--device`` / ``--dtype``."""
    parser.add_argument("model", help="'demo' (the embedded model), a real model's name (steerlab models), a "
                                      "save_pretrained directory or a hub id")
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
    parser.add_argument("--device", default=None, help="where to run the model, e.g. cpu, cuda, cuda:1")
    parser.add_argument("--dtype", default=None, choices=DTYPES, help="the model's weights dtype (default: as saved)")


def load_model_from_args(args: argparse.Namespace) -> Any:
    """``steerlab.load_model`` with the command's model options (a ``ModelAdapter``)."""
    import torch

    import steerlab

    return steerlab.load_model(args.model, backend=args.backend, device=args.device,
                               dtype=None if args.dtype is None else getattr(torch, args.dtype))
