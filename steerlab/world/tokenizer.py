"""A word-level tokenizer for the demo world, as a normal HF tokenizer.

One token per word of the world's vocabulary, plus <pad>, <unk>, <bos>, <eos>.
Text is lowercased and split on whitespace; encoding prepends <bos> (like Llama
tokenizers), so `tok("varno is in keldar .")` gives [bos, varno, is, in, keldar, .].

Example:
    >>> from steerlab.world.world import generate_world
    >>> tok = build_tokenizer(generate_world(seed=0))
    >>> ids = tok("the food was great .")["input_ids"]
    >>> ids[0] == tok.bos_token_id, tok.unk_token_id in ids
    (True, False)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from steerlab.world.world import World

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")


def token_to_id_map(world: World) -> dict[str, int]:
    """Word -> id: special tokens first (pad=0, unk=1, bos=2, eos=3), then the world's vocabulary."""
    return {word: i for i, word in enumerate(SPECIAL_TOKENS + tuple(world.vocabulary))}


def build_tokenizer(world: World) -> PreTrainedTokenizerFast:
    """The HF fast tokenizer for `world`; `save_pretrained(dir)` makes a normal tokenizer dir."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = token_to_id_map(world)
    core = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=64,
    )
