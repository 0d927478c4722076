"""Resolving what the user passed to ``load_model`` into a transformers model + tokenizer.

This is the loading path every model takes, the embedded demo model included: a
local directory or a hub id through ``AutoModelForCausalLM.from_pretrained``. GGUF files
(a ``.gguf`` path, a folder holding one) and the named real models of
:mod:`steerlab.models.registry` (``"smollm2-135m-instruct"``, ``"gemma-3-270m"``) resolve to
their converted folder in steerlab's cache. Nothing here depends on the backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DEMO_NAME = "demo"
DEMO_ENV_VAR = "STEERLAB_DEMO_MODEL"


def demo_model_path() -> Path:
    """Where the embedded demo model lives: ``$STEERLAB_DEMO_MODEL`` or the shipped ``demo-model``
    (``assets/demo-model``, inside the package in a wheel install: see :mod:`steerlab.shipped`)."""
    override = os.environ.get(DEMO_ENV_VAR)
    if override:
        return Path(override)
    from steerlab.shipped import shipped_path

    return shipped_path("demo-model")


def resolve_source(model: str | os.PathLike) -> str:
    """Turn ``"demo"``, a real model's name, a GGUF, a local directory or a hub id into what ``from_pretrained`` takes.

    Names (``"demo"``, :data:`steerlab.models.registry.MODELS`) win over a same-named folder
    in the working directory. A ``.gguf`` file (any file: it must start with the GGUF magic
    bytes), or a folder holding one and no config.json, is converted into steerlab's cache on
    first use (:func:`steerlab.models.gguf.convert_gguf`) and its cache folder returned.

    Raises FileNotFoundError for a path that does not exist (anything that looks like a
    path rather than a hub id ``name`` or ``org/name``), and for a real model that is not
    pulled yet (the message gives the ``steerlab models pull NAME`` command).
    """
    from steerlab.models import registry

    text = os.fspath(model)
    if text in registry.MODELS:
        return str(registry.require_pulled(text))
    if text == DEMO_NAME:
        path = demo_model_path()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"The demo model is missing at {path}. Train it with `python -m steerlab.organism.train "
                f"--out {path}`, or point ${DEMO_ENV_VAR} at a trained copy."
            )
        return str(path)
    path = Path(text).expanduser()
    if path.suffix.lower() == ".gguf" or path.is_file() or path.is_dir() and _holds_only_gguf(path):
        from steerlab.models.gguf import convert_gguf

        return str(convert_gguf(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is a directory but has no config.json: is it a save_pretrained directory?")
        return str(path)
    looks_like_path = text.startswith((".", "/", "~")) or text.count("/") > 1 or os.sep != "/" and os.sep in text
    if looks_like_path or path.exists():
        raise FileNotFoundError(
            f"No model directory at {text!r}. Pass an existing directory written by save_pretrained, "
            "a hub id such as 'gpt2' or 'EleutherAI/pythia-70m', or 'demo'."
        )
    return text


def _holds_only_gguf(folder: Path) -> bool:
    """A folder to load as GGUF: .gguf files and no config.json (a save_pretrained folder wins)."""
    return not (folder / "config.json").is_file() and any(folder.glob("*.gguf"))


def source_provenance(source: str) -> dict[str, Any] | None:
    """Where a resolved source came from, for models converted from GGUF; None otherwise.

    Returns:
        The converted folder's ``steerlab-source.json``: ``source`` (the GGUF's file name),
        ``sha256``, ``quantisation`` (e.g. ``"Q4_1"``), ``architecture``, ``model`` (the
        registry name, filled in from the sha256 when the file was converted by path), ...
    """
    from steerlab.models.cache import read_provenance
    from steerlab.models.registry import MODELS

    path = Path(source).expanduser()
    provenance = read_provenance(path) if path.is_dir() else None
    if provenance is not None and not provenance.get("model"):
        named = [model.name for model in MODELS.values() if model.sha256 == provenance.get("sha256")]
        provenance["model"] = named[0] if named else None
    return provenance


def input_device(hf_model: Any) -> "torch.device | None":
    """Where the inputs of a model dispatched with a ``device_map`` go; None for a model without one.

    That is the device on which the input embeddings *compute*, read from ``hf_device_map``
    (the longest module prefix naming the embedding module). A module placed on ``"disk"``
    or ``"cpu"`` (offloaded: its parameters are ``meta`` tensors, streamed in at each
    forward) computes on accelerate's main device, the first device of the map that is
    neither (``cpu`` when there is none), as ``accelerate.dispatch_model`` does. The
    parameters themselves are no guide: an offloaded embedding's are on ``meta``.
    """
    import torch

    device_map = getattr(hf_model, "hf_device_map", None)
    if not device_map:
        return None
    embeddings = hf_model.get_input_embeddings()
    name = next((name for name, module in hf_model.named_modules() if module is embeddings), "")
    owners = [key for key in device_map if key == "" or name == key or name.startswith(key + ".")]
    placement = device_map[max(owners, key=len)] if owners else next(iter(device_map.values()))
    if placement in ("disk", "cpu", "meta"):
        placement = next((device for device in device_map.values() if device not in ("disk", "cpu", "meta")), "cpu")
    return torch.device(placement)


def load_hf(source: str, *, dtype: Any = None, device_map: Any = None, **kwargs: Any) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer with transformers (SDPA attention, eval mode)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        if "attn_implementation" in kwargs:
            hf_model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, device_map=device_map, **kwargs)
        else:
            hf_model = _load_preferring_sdpa(AutoModelForCausalLM, source, dtype=dtype, device_map=device_map, **kwargs)
    except OSError as error:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " HF_HUB_OFFLINE=1 is set, so only the local cache is searched." if offline else ""
        raise OSError(
            f"Could not load {source!r} from the hub or the local cache.{hint} Pass a local directory "
            f"(save_pretrained) or download it first. Original error: {error}"
        ) from error
    hf_model.eval()
    return hf_model, tokenizer


def _load_preferring_sdpa(auto_class: Any, source: str, **kwargs: Any) -> Any:
    """SDPA attention is several times faster on CPU; some architectures (Gemma-2) lack it."""
    try:
        return auto_class.from_pretrained(source, attn_implementation="sdpa", **kwargs)
    except ValueError as error:
        if "scaled_dot_product_attention" not in str(error):
            raise
        return auto_class.from_pretrained(source, **kwargs)
