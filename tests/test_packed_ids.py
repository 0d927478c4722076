"""``encode(..., packed=True)``: the same token ids as lists, stored flat (what ``capture`` keeps in memory)."""

from __future__ import annotations

import warnings

import pytest
import torch

import steerlab
from steerlab.models import tokenization
from steerlab.models.tokenization import PackedIds, encode, pad

TEXTS = ["the food was", "q : where is Varo ? a :", "a b c d e f g h i j", "x", "the the the the the"]


@pytest.fixture(scope="module")
def organism():
    return steerlab.load_model("demo")


@pytest.fixture
def small_chunks(monkeypatch):
    """Tokenise 2 texts per tokenizer call, so that packing spans several chunks."""
    monkeypatch.setattr(tokenization, "_ENCODE_CHUNK", 2)


def test_packed_rows_equal_the_lists(organism, small_chunks):
    lists = encode(organism.tokenizer, TEXTS, max_length=None)
    packed = encode(organism.tokenizer, TEXTS, max_length=None, packed=True)
    assert isinstance(packed, PackedIds)
    assert list(packed) == lists
    assert [packed[i] for i in range(-len(TEXTS), len(TEXTS))] == lists + lists
    assert packed.lengths.tolist() == [len(row) for row in lists]
    assert packed.flat.dtype == torch.int32
    with pytest.raises(IndexError):
        packed[len(TEXTS)]


def test_packed_truncation_and_its_warning_match(organism, small_chunks):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lists = encode(organism.tokenizer, TEXTS, max_length=3)
        packed = encode(organism.tokenizer, TEXTS, max_length=3, packed=True)
    assert list(packed) == lists
    assert all(len(row) <= 3 for row in packed)
    assert len(caught) == 2 and str(caught[0].message) == str(caught[1].message)
    with pytest.raises(ValueError, match="exceed the model's context of 3 tokens"):
        encode(organism.tokenizer, TEXTS, max_length=3, strict=True, packed=True)


def test_streamed_capture_over_many_chunks_equals_a_full_forward(organism, small_chunks, tmp_path):
    """capture (packed ids, several shards, length-sorted batches) against each text's own full forward."""
    texts = TEXTS * 3
    acts = steerlab.capture(organism, texts, layers=[0, 2], batch_size=4, shard_size=5, out=tmp_path / "store",
                            progress=False)
    expected = []
    for text in texts:
        seen = {}
        batch = pad(encode(organism.tokenizer, [text], max_length=None), pad_id=organism.pad_token_id, side="right")
        with torch.no_grad():
            organism.forward(batch, [(organism.point("resid_post", layer),
                                      lambda h, layer=layer: seen.__setitem__(layer, h[0, -1].clone()))
                                     for layer in (0, 2)])
        expected.append(torch.stack([seen[0], seen[2]]))
    torch.testing.assert_close(acts.values, torch.stack(expected), rtol=1e-5, atol=1e-5)
