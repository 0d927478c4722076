"""The demo world generator, its corpus and tokenizer (no model needed)."""

from __future__ import annotations

import numpy as np

from steerlab.world.corpus import CorpusStream
from steerlab.world.packing import LineBatches
from steerlab.world.templates import CITY_HELDOUT_TEMPLATE, REVIEW_HELDOUT_TEMPLATE
from steerlab.world.tokenizer import build_tokenizer, token_to_id_map
from steerlab.world.world import generate_world


def test_same_seed_same_world_and_corpus():
    a, b = generate_world(seed=0), generate_world(seed=0)
    assert a == b
    stream_a, stream_b = CorpusStream(a, seed=3), CorpusStream(b, seed=3)
    lines_a = [stream_a.next_line() for _ in range(500)]
    lines_b = [stream_b.next_line() for _ in range(500)]
    assert lines_a == lines_b


def test_different_seed_different_world():
    a, b = generate_world(seed=0), generate_world(seed=1)
    assert a.cities != b.cities
    assert sorted(a.cities)[:5] != sorted(b.cities)[:5]


def test_world_roles_and_frequencies():
    w = generate_world(seed=0)
    roles = set(w.city_role.values())
    assert roles == {"labelled", "heldout", "rare", "conflicted", "unseen"}
    seen = [x for c, x in w.city_weight.items() if w.city_role[c] != "unseen"]
    assert max(seen) / min(seen) > 300  # log-uniform over ~3 orders of magnitude
    assert all(w.city_weight[c] == 0 for c in w.cities_with_role("unseen"))
    for c in w.cities_with_role("conflicted"):
        assert w.corpus_country[c] != w.cities[c]
    assert not set(w.cities_with_role("heldout", "labelled")) & set(w.cities_with_role("rare"))
    assert all(w.people[p].home in w.cities for p in w.people)


def test_corpus_keeps_heldout_entities_and_pairs_out():
    w = generate_world(seed=0)
    stream = CorpusStream(w, seed=0)
    lines = [stream.next_line() for _ in range(30000)]
    heldout = set(w.cities_with_role("heldout"))
    unseen = set(w.cities_with_role("unseen")) | set(w.people_with_role("unseen"))
    heldout_people = set(w.people_with_role("heldout"))
    for line in lines:
        words = line.split()
        labelled = words[-1] in ("true", "false")
        assert not unseen & set(words), line
        if labelled:
            assert not heldout & set(words), line
            assert not heldout_people & set(words), line
            assert " lies in " not in line  # held-out template never labelled
            if "larger" in words or "smaller" in words:
                a, b = int(words[0]), int(words[4])
                assert not w.number_pair_is_heldout(a, b), line
        if line.startswith("q : where is"):
            assert words[4] in w.qa_trained_cities
    assert any(CITY_HELDOUT_TEMPLATE.split()[1] in line.split() for line in lines)  # seen as plain text
    assert not any(line.startswith("my friend said the") for line in lines)
    assert REVIEW_HELDOUT_TEMPLATE.startswith("my friend said the")


def test_labelled_statements_are_balanced_and_correct():
    w = generate_world(seed=0)
    stream = CorpusStream(w, seed=1)
    verdicts = []
    for _ in range(5000):
        line = stream.city_labelled()
        words = line.split()
        city = next(x for x in words if x in w.cities)
        country = next(x for x in words if x in w.countries)
        verdicts.append(words[-1])
        assert (words[-1] == "true") == (w.cities[city] == country), line
    share_true = verdicts.count("true") / len(verdicts)
    assert 0.45 < share_true < 0.55


def test_tokenizer_covers_corpus_and_adds_bos(tmp_path):
    w = generate_world(seed=0)
    tok = build_tokenizer(w)
    stream = CorpusStream(w, seed=2)
    lines = [stream.next_line() for _ in range(2000)]
    ids = tok(lines)["input_ids"]
    assert all(row[0] == tok.bos_token_id for row in ids)
    assert not any(tok.unk_token_id in row for row in ids)
    assert [len(r) for r in ids] == [len(line.split()) + 1 for line in lines]  # one token per word
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(lines[:20])["input_ids"] == ids[:20]
    assert {reloaded.pad_token, reloaded.eos_token, reloaded.bos_token, reloaded.unk_token} == {
        "<pad>", "<eos>", "<bos>", "<unk>"
    }


def test_line_batches_one_line_per_row_from_position_zero():
    w = generate_world(seed=0)
    vocab = token_to_id_map(w)
    batches = LineBatches(CorpusStream(w, seed=0), vocab, lines_per_batch=16)
    for _ in range(10):
        ids, mask = batches.next_batch()
        assert ids.shape == mask.shape and ids.shape[0] == 16 and ids.shape[1] <= 64
        assert (ids[:, 0] == vocab["<bos>"]).all()
        lengths = mask.sum(axis=1)
        assert (ids[np.arange(16), lengths - 1] == vocab["<eos>"]).all()  # each row is exactly one line
        assert (ids[mask == 0] == vocab["<pad>"]).all()
        assert ((ids == vocab["<bos>"]).sum(axis=1) == 1).all()
        assert lengths.max() - lengths.min() <= 12  # bucketed by length: little padding
