"""Hook contexts: read and edit during forward and generate, always cleaned up."""

import pytest
import torch

import steerlab
from conftest import TEXTS
from steerlab.hooks import edit, no_leftover_hooks, record

BACKENDS = ["hf", "transformer_lens", "nnsight"]


@pytest.fixture(scope="module", params=BACKENDS)
def model(request, model_dir):
    return steerlab.load_model(str(model_dir("gpt2")), backend=request.param)


def logits(model, texts=TEXTS):
    with torch.no_grad():
        return model.forward(model.tokenize(texts))


def test_exception_inside_a_hook_context_leaves_the_model_bit_identical(model):
    before = logits(model)
    snapshot = model.hook_snapshot()
    shift = torch.randn(model.d_model)
    with pytest.raises(RuntimeError, match="boom"):
        with edit(model, lambda h, point: h + shift, layers=[0, 1]):
            assert not torch.equal(logits(model), before)
            raise RuntimeError("boom")
    assert model.hook_snapshot() == snapshot
    assert torch.equal(logits(model), before)


def test_exception_inside_a_site_function_is_cleaned_up(model):
    before = logits(model)

    def broken(activation):
        raise KeyError("inside the hook")

    with pytest.raises(KeyError):
        model.forward(model.tokenize(TEXTS), [(model.point("resid_post", 1), broken)])
    assert torch.equal(logits(model), before)
    with no_leftover_hooks(model):
        logits(model)


def test_record_during_generation_sees_prompt_then_single_tokens(model):
    with record(model, "resid_post", layers=[1]) as recorded:
        model.generate(["w1 w2 w3"], max_new_tokens=3)
    shapes = [tuple(t.shape) for t in recorded["blocks.1.hook_resid_post"]]
    assert shapes == [(1, 3, 32), (1, 1, 32), (1, 1, 32)]


def test_edits_reach_direct_calls_of_the_hf_model(model_dir):
    for backend in ["hf", "nnsight"]:
        model = steerlab.load_model(str(model_dir("gpt2")), backend=backend)
        ids = model.tokenize(TEXTS[:1]).input_ids
        with torch.no_grad():
            plain = model.hf_model(ids).logits
            with edit(model, lambda h, point: h * 2.0, layers=[0]):
                edited = model.hf_model(ids).logits
            after = model.hf_model(ids).logits
        assert not torch.allclose(plain, edited)
        assert torch.equal(plain, after)


def test_steered_generation_is_the_same_on_every_backend(model_dir):
    shift = torch.randn(32, generator=torch.Generator().manual_seed(1)) * 4
    outputs = {}
    for backend in BACKENDS:
        model = steerlab.load_model(str(model_dir("llama")), backend=backend)
        point = model.point("resid_post", 1)
        plain = model.generate(TEXTS, max_new_tokens=4)
        outputs[backend] = model.generate(TEXTS, max_new_tokens=4, fns=[(point, lambda h: h + shift)])
        assert outputs[backend] != plain
        assert model.generate(TEXTS, max_new_tokens=4) == plain
    assert outputs["hf"] == outputs["transformer_lens"] == outputs["nnsight"]


def test_resid_mid_is_read_only(model):
    with pytest.raises(ValueError, match="read-only"):
        model.forward(model.tokenize(TEXTS), [(model.point("resid_mid", 0), lambda h: h + 1)])
    recorded = []
    model.forward(model.tokenize(TEXTS), [(model.point("resid_mid", 0), recorded.append)])
    assert recorded[0].shape == (5, 7, 32)


def test_leftover_hooks_are_found(model_dir):
    model = steerlab.load_model(str(model_dir("gpt2")))
    with pytest.raises(RuntimeError, match="1 hook\\(s\\) left behind on: transformer.h.0._forward_hooks"):
        with no_leftover_hooks(model):
            model.hf_model.transformer.h[0].register_forward_hook(lambda *args: None)
    model.hf_model.transformer.h[0]._forward_hooks.clear()


def test_wrong_shape_from_a_site_function_is_refused(model):
    with pytest.raises(ValueError, match="returned shape"):
        model.forward(model.tokenize(TEXTS), [(model.point("resid_post", 0), lambda h: h[:, :1])])
