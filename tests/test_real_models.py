"""The real-model tier: the named real LLMs, loaded from steerlab's cache (``pytest -m real``).

Each model's tests skip, with the exact pull command in the reason, until it is pulled
(``steerlab models pull NAME``: a minute or two, once per machine). When pulled, each model
is loaded once per module from the cache (seconds) and asked for a few tokens only.
"""

from __future__ import annotations

import pytest
import torch

import steerlab
from steerlab.models import registry

pytestmark = pytest.mark.real

PROMPT = "The capital of France is"
# Through its chat template SmolLM2 answers the question form; the bare sentence start, wrapped as a
# user message, gets a greeting instead ("L'aujourcé! I am your friendly AI"; identical logits to the
# GGUF read directly by transformers, so it is the model, not the conversion).
QUESTION = "What is the capital of France?"
GEMMA_PROMPT = "The capital of France is the city of"  # the bare PROMPT gets " the capital of the country of France."

def pulled_model(name: str):
    """The model loaded by name on the hf backend, or a skip naming the command that pulls it."""
    if registry.cached_folder(name) is None:
        pytest.skip(f"{name} is not pulled: run `{registry.get(name).pull_command}`")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return steerlab.load_model(name)


@pytest.fixture(scope="module")
def smollm2():
    return pulled_model("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def gemma():
    return pulled_model("gemma-3-270m")


def test_smollm2_loads_by_name_with_its_provenance(smollm2):
    entry = registry.get("smollm2-135m-instruct")
    assert (smollm2.name, smollm2.n_layers, smollm2.d_model) == (entry.name, 30, 576)
    assert smollm2.provenance["sha256"] == entry.sha256
    assert smollm2.provenance["quantisation"] == "Q4_1"
    assert smollm2.provenance["source"] == entry.file_name
    assert next(smollm2.hf_model.parameters()).dtype == torch.float32


def test_smollm2_answers_paris_plain_and_through_its_chat_template(smollm2):
    chat, plain = smollm2.generate([QUESTION], max_new_tokens=8, chat_template=True)[0], \
        smollm2.generate([PROMPT], max_new_tokens=3)[0]
    assert chat.startswith("The capital of France is Paris"), chat
    assert plain.startswith(" Paris"), plain


def test_gemma_loads_by_name_with_its_provenance(gemma):
    entry = registry.get("gemma-3-270m")
    assert (gemma.name, gemma.n_layers, gemma.d_model) == (entry.name, 18, 640)
    assert gemma.provenance["sha256"] == entry.sha256
    assert gemma.provenance["quantisation"] == "Q4_K_M"
    assert gemma.hf_model.config.model_type == "gemma3_text"


def test_gemma_adds_bos_and_continues_with_paris(gemma):
    ids = gemma.tokenizer(PROMPT)["input_ids"]
    assert ids[0] == gemma.tokenizer.bos_token_id  # Gemma needs BOS; the converted tokenizer adds it
    [answer] = gemma.generate([GEMMA_PROMPT], max_new_tokens=2)
    assert answer.startswith(" Paris"), answer
