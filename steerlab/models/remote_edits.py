"""Steering edits as plain data, and the torch-only code that applies them inside a remote trace.

NDIF (nnsight's remote execution) runs a trace where steerlab is not installed, in a
sandbox that admits a whitelist of modules (torch, numpy, math, einops, nnsight...).
So a remote trace cannot call steerlab's site functions. Instead, before the trace is
sent, each steering site function is turned into plain data for every forward pass it
will see: a dict of builtins and tensors (:func:`plain_edit`)::

    {"op": "add" | "ablate" | "set" | "clamp", "sel": [batch, pos] bool,
     "direction": [d_model], "unit": [d_model], "alpha": float | [batch, 1],
     "value": float | None, "weight_norm": float | None, "intercept": float | None}

and the trace runs :func:`run_step`, which visits the sites of one forward pass in
execution order, applies those dicts with the same formulas as
:mod:`steerlab.steering.edits` (so results equal the local backends bit for bit), and
returns the activations that local reading functions asked for (their values come back
through ``.save()``).

:func:`run_step` and :func:`apply_edit` use nothing but torch and builtins: this module
is registered with cloudpickle to be serialized *by value* (:func:`ship_by_value`; nnsight ships such functions
as source, the mechanism ``nnsight.ndif.register`` offers for a user's own helpers), so
the server compiles them from the payload and never imports steerlab.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import torch

from steerlab.models.source_pin import pin_source

OPS = ("add", "ablate", "set", "clamp")
pin_source(__name__)  # shipped as source: the source of the code that runs here, even if the file changes


def plain_edit(op: str, sel: torch.Tensor, *, direction: torch.Tensor, unit: torch.Tensor,
               alpha: float | torch.Tensor | None = None, value: float | None = None,
               weight_norm: float | None = None, intercept: float | None = None) -> dict[str, Any]:
    """One edit of one forward pass as plain data (see the module docstring); tensors detached, on cpu.

    ``sel [batch, pos]`` marks the tokens to edit; ``alpha`` (add) is a float or per-row
    ``[batch, 1]``; ``value`` is the projection (set) or the target probability (clamp,
    stored as its logit); ``weight_norm`` / ``intercept`` describe the source probe (clamp).
    """
    if op not in OPS:
        raise ValueError(f"Unknown edit op {op!r}: choose one of {', '.join(OPS)}.")
    if op == "clamp":
        value = math.log(value / (1.0 - value))  # the target probability as a probe logit

    def cpu(tensor: Any) -> Any:
        return tensor.detach().cpu() if isinstance(tensor, torch.Tensor) else tensor
    return {"op": op, "sel": cpu(sel), "direction": cpu(direction), "unit": cpu(unit), "alpha": cpu(alpha),
            "value": value, "weight_norm": weight_norm, "intercept": intercept}


def apply_edit(h, edit):
    """``h [batch, pos, d_model]`` edited by one plain edit, with the formulas of the local edits (steering/edits.py).

    Torch and builtins only (it runs on the server). Returns ``(edited h, probe logits after
    the edit on the clamped tokens, or None)``.
    """
    op, sel = edit["op"], edit["sel"].to(h.device).to(h.dtype)
    if op == "add":
        alpha = edit["alpha"]
        alpha = alpha.to(h.device, h.dtype) if isinstance(alpha, torch.Tensor) else alpha
        return h + (sel * alpha).unsqueeze(-1) * edit["direction"].to(h.device, h.dtype), None
    unit = edit["unit"].to(h.device, h.dtype)
    if op == "ablate":
        return h - (sel * (h @ unit)).unsqueeze(-1) * unit, None
    if op == "set":
        return h + (sel * (edit["value"] - h @ unit)).unsqueeze(-1) * unit, None
    weight_norm, intercept, target_logit = edit["weight_norm"], edit["intercept"], edit["value"]
    logit = intercept + weight_norm * (h @ unit)
    short = logit < target_logit if target_logit >= 0.0 else logit > target_logit
    edited = sel.bool() & short
    step = torch.where(edited, (target_logit - logit) / weight_norm, torch.zeros_like(logit))
    h = h + step.unsqueeze(-1) * unit
    return h, (intercept + weight_norm * (h @ unit))[edited]


def run_step(points, entries):
    """Visit one forward pass's sites in execution order, applying plain edits, collecting reads.

    ``points`` are ``(envoy, is_output)`` pairs (nnsight envoys of the modules holding the
    sites, in execution order); ``entries[i]`` is point ``i``'s list, in order, of plain
    edits (dicts) and reads (None). Returns ``(reads, clamped)``: the activation each read
    saw (after the edits before it), and the probe logits after each clamp edit.
    """
    reads, clamped = [], []
    for (envoy, is_output), todo in zip(points, entries):
        if not todo:
            continue
        value = envoy.output if is_output else envoy.input
        h = value[0] if isinstance(value, tuple) else value
        edits = 0
        for edit in todo:
            if edit is None:
                reads.append(h)
                continue
            h, after = apply_edit(h, edit)
            edits += 1
            if after is not None:
                clamped.append(after)
        if edits and is_output:
            envoy.output = (h, *value[1:]) if isinstance(value, tuple) else h
        elif edits:
            envoy.input = h
    return reads, clamped


def ship_by_value() -> None:
    """Have cloudpickle (hence nnsight) serialize this module's functions by source, not by reference.

    Called by the nnsight adapter before it builds a remote trace (cloudpickle comes with nnsight).
    """
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
