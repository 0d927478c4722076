"""Where the sites live inside each supported transformers architecture.

One row per ``config.model_type``. Module paths are relative: ``blocks`` from the
causal-LM model, the others from one block. ``attn_out``/``mlp_out`` name the module
whose *output is added to the residual stream* (for Gemma-2/3 that is the post-norm
after attention/MLP, matching TransformerLens). ``resid_mid_input`` names the module
whose *input* is the mid-block residual (the pre-MLP norm); ``None`` where the block
has no resid_mid (GPT-NeoX/Pythia with parallel attention and MLP).

To support a new architecture, add a row here; nothing else branches on architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ArchitectureSpec:
    blocks: str
    attn_out: str
    mlp_out: str
    resid_mid_input: str | None


_LLAMA_LIKE = ArchitectureSpec("model.layers", "self_attn", "mlp", "post_attention_layernorm")
_GEMMA2_LIKE = ArchitectureSpec(
    "model.layers", "post_attention_layernorm", "post_feedforward_layernorm", "pre_feedforward_layernorm"
)

ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "gpt2": ArchitectureSpec("transformer.h", "attn", "mlp", "ln_2"),
    "gpt_neox": ArchitectureSpec("gpt_neox.layers", "attention", "mlp", "post_attention_layernorm"),
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,  # Gemma-1's post_attention_layernorm is its pre-MLP norm
    "gemma2": _GEMMA2_LIKE,
    "gemma3_text": _GEMMA2_LIKE,
}


def architecture_of(config: Any) -> ArchitectureSpec:
    """The spec for a transformers config; GPT-NeoX with parallel residual has no resid_mid."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ValueError(
            f"Unsupported architecture {model_type!r}. Supported: {', '.join(sorted(ARCHITECTURES))}. "
            "Add a row to steerlab.models.architectures.ARCHITECTURES, or use "
            "backend='transformer_lens', which has its own architecture table."
        )
    spec = ARCHITECTURES[model_type]
    if model_type == "gpt_neox" and getattr(config, "use_parallel_residual", True):
        spec = ArchitectureSpec(spec.blocks, spec.attn_out, spec.mlp_out, resid_mid_input=None)
    return spec


def context_length(config: Any) -> int | None:
    """The longest input the model was configured for, or None when the config does not say."""
    for attribute in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length"):
        value = getattr(config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
