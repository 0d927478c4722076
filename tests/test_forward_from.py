"""`adapter.forward_from`: the blocks from a layer on, from that layer's captured input, equal to a full forward."""

import pytest
import torch

import steerlab
from conftest import ARCHITECTURES, load_objects

TEXTS = ["the cat sat on the mat", "a dog", "the bird flew over the red house"]


def _resid_pre(model, batch, layer):
    held = {}
    model.read(batch, [(model.point("resid_pre", layer), lambda h: held.__setitem__("h", h.clone()))])
    return held["h"]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_forward_from_a_layer_equals_the_full_forward_on_every_architecture(model_dir, architecture):
    hf_model, tokenizer = load_objects(model_dir(architecture))  # AutoTokenizer cannot read every test vocabulary
    model = steerlab.load_model(hf_model, tokenizer=tokenizer)
    batch = model.tokenize(TEXTS)
    direction = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    steered = [(model.point("resid_post", 1), lambda h: h + direction)]
    with torch.no_grad():
        before = model.forward(batch)
        full = model.forward(batch, steered)
        resumed = model.forward_from(batch, 1, _resid_pre(model, batch, 1), steered)
        assert torch.equal(resumed, full) and not torch.equal(full, before)  # the steering did something
        assert torch.equal(model.forward(batch), before)  # the blocks are back: nothing left behind
    assert model.hook_snapshot() == set()


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_forward_from_gives_the_same_logits_on_backends_that_run_every_block(model_dir, backend):
    directory = str(model_dir("gpt2"))
    hf, other = steerlab.load_model(directory), steerlab.load_model(directory, backend=backend)
    batch = hf.tokenize(TEXTS)
    with torch.no_grad():
        expected = hf.forward(batch)
        resumed = other.forward_from(batch, 2, _resid_pre(hf, batch, 2))
    assert (resumed - expected).abs().max() <= 1e-4


def test_the_blocks_come_back_when_a_site_function_raises(model_dir):
    model = steerlab.load_model(str(model_dir("llama")))
    batch = model.tokenize(TEXTS)
    before = model.forward(batch)

    def broken(h):
        raise RuntimeError("broken site function")

    with pytest.raises(RuntimeError, match="broken site function"):
        model.forward_from(batch, 2, _resid_pre(model, batch, 2), [(model.point("mlp_out", 2), broken)])
    assert torch.equal(model.forward(batch), before) and model.hook_snapshot() == set()
    assert not any("forward" in vars(block) for block in model.blocks)


def test_forward_from_refuses_what_it_cannot_do(model_dir):
    model = steerlab.load_model(str(model_dir("gpt2")))
    batch = model.tokenize(TEXTS)
    held = _resid_pre(model, batch, 2)
    with pytest.raises(ValueError, match=r"site functions at \['blocks.1.hook_resid_post'\] would never run"):
        model.forward_from(batch, 2, held, [(model.point("resid_post", 1), lambda h: h)])
    with pytest.raises(ValueError, match=r"resid_pre has shape \(3, \d+, 32\).*is \(2, \d+, 32\)"):
        model.forward_from(_first_two(model.tokenize(TEXTS)), 2, held)
    with pytest.raises(ValueError, match="layer"):
        model.forward_from(batch, 7, held)


def _first_two(batch):
    from steerlab.models.tokenization import TokenBatch

    return TokenBatch(batch.input_ids[:2], batch.attention_mask[:2], batch.padding_side)


def test_attached_hooks_at_or_before_the_start_are_refused_later_ones_run(model_dir):
    """A hook already attached (steer, sae_splice, model.hooks) at the start layer's input would be overwritten
    by the given input, and one before it skipped: refused by name. One after it runs as in a full forward."""
    model = steerlab.load_model(str(model_dir("gpt2")))
    batch = model.tokenize(TEXTS)
    held = _resid_pre(model, batch, 2)
    shift = torch.randn(model.d_model, generator=torch.Generator().manual_seed(1))
    for site, layer in (("resid_pre", 2), ("resid_post", 1)):
        with model.hooks([(model.point(site, layer), lambda h: h + shift)]):
            with pytest.raises(ValueError, match=rf"hooks already attached at \['blocks.{layer}.hook_{site}'\]"):
                model.forward_from(batch, 2, held)
    with torch.no_grad(), model.hooks([(model.point("mlp_out", 2), lambda h: h + shift)]):
        full = model.forward(batch)
        assert torch.equal(model.forward_from(batch, 2, held), full)
    assert torch.equal(model.forward_from(batch, 2, held), model.forward(batch))  # the hooks are gone


def test_the_layer_input_helpers_give_what_forward_from_needs(model_dir):
    model = steerlab.load_model(str(model_dir("llama")))
    batch = model.tokenize(TEXTS)
    with torch.no_grad():
        logits, kept = model.forward_keeping_input(batch, 2)
        assert torch.equal(logits, model.forward(batch))
        assert torch.equal(kept, _resid_pre(model, batch, 2)) and torch.equal(model.layer_input(batch, 2), kept)
        assert torch.equal(model.forward_from(batch, 2, kept), logits)
    assert model.hook_snapshot() == set()
