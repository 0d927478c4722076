"""Which token a verdict word is read from: ``word_token_id`` and ``logprob_difference``.

After a prompt that does not end in a space (``"... This statement is"``) the next word is the
space-prefixed token (SmolLM2: " true" = 2629, not "true" = 10469). The organism tier uses a real
byte-level word tokenizer built with ``tokenizers``, where "true" and " true" are different tokens.
"""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from steerlab.steering.metrics import last_token_logprobs, logprob_difference, word_token_id

VOCAB = {"[UNK]": 0, "true": 1, "Ġtrue": 2, "True": 3, "ĠTrue": 4, "false": 5, "Ġfalse": 6, "w5": 7, "yes": 8}


@pytest.fixture(scope="module")
def byte_level():
    core = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]")


def test_bare_word_is_the_space_prefixed_token(byte_level):
    assert byte_level(" true", add_special_tokens=False)["input_ids"] == [2]  # the tokenizer itself tells them apart
    assert byte_level("true", add_special_tokens=False)["input_ids"] == [1]
    assert word_token_id(byte_level, "true") == 2
    assert word_token_id(byte_level, "false") == 6


def test_leading_space_or_exact_is_used_as_given(byte_level):
    assert word_token_id(byte_level, " True") == 4
    assert word_token_id(byte_level, "True", exact=True) == 3  # e.g. the first token of a chat answer
    assert word_token_id(byte_level, "true", exact=True) == 1


def test_word_level_tokenizer_gets_its_one_token_either_way():
    core = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()  # drops the space, as the organism's tokenizer does
    word_level = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]")
    assert word_token_id(word_level, "yes") == word_token_id(word_level, " yes") == 8


def test_multi_token_word_is_refused(byte_level):
    with pytest.raises(ValueError, match="not a single token"):
        word_token_id(byte_level, " true false")


@pytest.mark.real
def test_smollm2_reads_the_space_prefixed_verdict_after_this_statement_is():
    import steerlab
    from steerlab.models import registry

    name = "smollm2-135m-instruct"
    if registry.cached_folder(name) is None:
        pytest.skip(f"{name} is not pulled: run `{registry.get(name).pull_command}`")
    torch.set_num_threads(1)
    model = steerlab.load_model(name)
    tok = model.tokenizer
    assert word_token_id(tok, "true") == word_token_id(tok, " true") == tok(" true", add_special_tokens=False)["input_ids"][0]
    assert word_token_id(tok, "true") != tok("true", add_special_tokens=False)["input_ids"][0]
    assert word_token_id(tok, "True", exact=True) == tok("True", add_special_tokens=False)["input_ids"][0]
    prompts = ["The city of Paris is in France. This statement is", "The city of Paris is in Peru. This statement is"]
    logprobs = last_token_logprobs(model, prompts)
    spaced = [tok(w, add_special_tokens=False)["input_ids"][0] for w in (" true", " false")]
    expected = logprobs[:, spaced[0]] - logprobs[:, spaced[1]]
    torch.testing.assert_close(logprob_difference(model, prompts, "true", "false"), expected)
    # the space-prefixed verdicts are what the model actually predicts here: far likelier than the bare ones
    bare = [tok(w, add_special_tokens=False)["input_ids"][0] for w in ("true", "false")]
    assert (logprobs[:, spaced].logsumexp(-1) > logprobs[:, bare].logsumexp(-1) + 2).all()
