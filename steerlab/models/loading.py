"""Resolving what the user passed to ``load_model`` into a transformers model + tokenizer.

This is the loading path every model takes, the embedded demo model included: a
local directory or a hub id through ``AutoModelForCausalLM.from_pretrained``. Nothing
here depends on the backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DEMO_NAME = "demo"
DEMO_ENV_VAR = "STEERLAB_DEMO_MODEL"


def demo_model_path() -> Path:
    """Where the embedded demo model lives: ``$STEERLAB_DEMO_MODEL`` or ``<repo>/assets/demo-model``."""
    override = os.environ.get(DEMO_ENV_VAR)
    return Path(override) if override else Path(__file__).resolve().parents[2] / "assets" / "demo-model"


def resolve_source(model: str | os.PathLike) -> str:
    """Turn ``"demo"``, a local directory or a hub id into what ``from_pretrained`` takes.

    Raises FileNotFoundError for a path that does not exist (anything that looks like a
    path rather than a hub id ``name`` or ``org/name``).
    """
    text = os.fspath(model)
    if text == DEMO_NAME:
        path = demo_model_path()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"The demo model is missing at {path}. Train it with `python -m steerlab.world.train "
                f"--out {path}`, or point ${DEMO_ENV_VAR} at a trained copy."
            )
        return str(path)
    path = Path(text).expanduser()
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
