"""Shared fixtures: tiny random models of each supported architecture, saved to disk.

Every model is loaded through the real ``from_pretrained`` path from a
``save_pretrained`` directory, exactly as a local copy of a hub model would be.
"""

from __future__ import annotations

import os
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest
import torch

VOCAB = ["<unk>", "<eos>", "<bos>"] + [f"w{i}" for i in range(61)]
TEXTS = ["w1 w2 w3 w4 w5 w6 w7", "w8 w9", "w10 w11 w12 w13", "w14", "w15 w16 w17 w18 w19 w20"]


def make_tokenizer(add_bos: bool = False):
    """A word-level tokenizer (optionally prepending <bos>, like Llama's)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if add_bos:
        core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<eos>", bos_token="<bos>")


def _config(architecture: str):
    import transformers as tf

    common = dict(vocab_size=len(VOCAB), bos_token_id=2, eos_token_id=1, max_position_embeddings=64)
    llama_like = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, **common)
    if architecture == "gpt2":
        return tf.GPT2Config(vocab_size=len(VOCAB), n_embd=32, n_layer=3, n_head=2, n_positions=64,
                             bos_token_id=2, eos_token_id=1)
    if architecture == "gpt_neox":
        return tf.GPTNeoXConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                                use_parallel_residual=True, **common)
    if architecture == "llama":
        return tf.LlamaConfig(**llama_like)
    if architecture == "mistral":
        return tf.MistralConfig(**llama_like)
    if architecture == "qwen2":
        return tf.Qwen2Config(**llama_like)
    if architecture == "gemma":
        return tf.GemmaConfig(head_dim=8, **llama_like)
    if architecture == "gemma2":
        return tf.Gemma2Config(head_dim=8, **llama_like)
    raise KeyError(architecture)


ARCHITECTURES = ["gpt2", "gpt_neox", "llama", "mistral", "qwen2", "gemma", "gemma2"]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """``model_dir(arch)`` -> a directory holding a saved random model and tokenizer."""
    from transformers import AutoModelForCausalLM

    made: dict[str, Path] = {}

    def build(architecture: str, add_bos: bool = False) -> Path:
        key = f"{architecture}-bos" if add_bos else architecture
        if key not in made:
            torch.manual_seed(0)
            directory = tmp_path_factory.mktemp(key)
            AutoModelForCausalLM.from_config(_config(architecture)).save_pretrained(directory)
            make_tokenizer(add_bos).save_pretrained(directory)
            made[key] = directory
        return made[key]

    return build


def load_objects(directory: Path):
    """A saved model and its word-level tokenizer as objects (AutoTokenizer would pick e.g.
    Qwen2's BPE class by model type, which cannot read a word-level vocabulary)."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    return AutoModelForCausalLM.from_pretrained(directory).eval(), PreTrainedTokenizerFast.from_pretrained(directory)


def block_outputs(directory: Path, texts: list[str]) -> list[torch.Tensor]:
    """Reference: each text run alone (no padding) through plain transformers, block outputs
    read with torch hooks: one ``[n_layers, pos, d_model]`` tensor per text."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steerlab.models.architectures import architecture_of

    model = AutoModelForCausalLM.from_pretrained(directory, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    blocks = model.get_submodule(architecture_of(model.config).blocks)
    references = []
    for text in texts:
        outputs = {}
        handles = [block.register_forward_hook(
            lambda module, args, output, i=i: outputs.__setitem__(i, output[0] if isinstance(output, tuple) else output))
            for i, block in enumerate(blocks)]
        try:
            with torch.no_grad():
                model(torch.tensor([tokenizer(text)["input_ids"]]))
        finally:
            for handle in handles:
                handle.remove()
        references.append(torch.stack([outputs[i][0] for i in range(len(blocks))]))
    return references


HEAVY_MODULES = ("torch", "transformers", "transformer_lens", "nnsight", "sae_lens", "sklearn", "plotly")


def imported_heavy_modules(argv: list[str]) -> list[str]:
    """The heavy libraries a CLI invocation imports (help must import none: that is what keeps it instant)."""
    code = ("import sys\nfrom steerlab.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print('heavy:' + ','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    line = next(line for line in result.stdout.splitlines() if line.startswith("heavy:"))
    return [name for name in line.removeprefix("heavy:").split(",") if name]
