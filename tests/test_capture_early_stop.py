"""Capture stops the forward pass after the deepest requested site, on every backend.

``adapter.read`` (what ``capture`` runs) must give exactly the activations a full
``adapter.forward`` gives the same site functions (today's capture), never run the blocks
after the deepest site, the final norm or the LM head, and leave no hook and no state behind:
the model computes the same logits and generations afterwards.
"""

from __future__ import annotations

import pytest
import torch

import steerlab
from steerlab.hooks import edit
from steerlab.models import registry
from steerlab.models.tokenization import encode, pad
from steerlab.sites import SITES

BACKENDS = ["hf", "transformer_lens", "nnsight"]
# Sorted by token count, so that capture's length-sorted batch is this very batch.
TEXTS = ["the food was", "q : where is Varo ? a :", "a b c d e f g h i j"]


@pytest.fixture(scope="module")
def organism_hf():
    return steerlab.load_model("demo")


@pytest.fixture(scope="module", params=BACKENDS)
def organism(request, organism_hf):
    if request.param == "hf":
        return organism_hf
    return steerlab.load_model(organism_hf.hf_model, tokenizer=organism_hf.tokenizer, backend=request.param)


def full_forward_reference(model, texts: list[str], site: str, layers: list[int]) -> torch.Tensor:
    """Today's capture: the same batch through a full ``adapter.forward`` (logits computed),
    every real token of each text: ``[n_tokens, n_layers, d_model]`` as ``position="all"``."""
    batch = pad(encode(model.tokenizer, texts, max_length=model.context_length), pad_id=model.pad_token_id,
                side="right")
    seen: dict[int, torch.Tensor] = {}

    def keep(layer: int):
        return lambda activation: seen.__setitem__(layer, activation.detach().clone())

    with torch.no_grad():
        logits = model.forward(batch, [(model.point(site, layer), keep(layer)) for layer in layers])
    assert logits.shape[-1] == len(model.tokenizer)  # a full pass, LM head included
    real = batch.attention_mask.bool()
    return torch.stack([seen[layer][real] for layer in layers], dim=1)


def captured(model, texts: list[str], site: str, layers: list[int]) -> torch.Tensor:
    return steerlab.capture(model, texts, layers=layers, site=site, position="all", batch_size=len(texts),
                            progress=False).values


@pytest.mark.parametrize("site", SITES)
def test_every_site_equals_a_full_forward(organism, site):
    n = organism.n_layers
    for layers in [list(range(n)), list(range(max(1, n // 4))), [n // 2], [n - 1], [n - 1, 0]]:
        layers = [layer % n for layer in layers]
        got, expected = captured(organism, TEXTS, site, layers), full_forward_reference(organism, TEXTS, site, layers)
        assert got.shape == expected.shape
        diff = (got - expected).abs().max().item()
        assert diff <= 1e-6, f"{organism.backend} {site} layers={layers}: max abs diff {diff}"


class CallCounter:
    """Counts how often modules of the model's HF tree are entered (torch pre-hooks, removed by ``remove``)."""

    def __init__(self, modules: dict[str, torch.nn.Module]):
        self.calls = dict.fromkeys(modules, 0)
        self.handles = [module.register_forward_pre_hook(self._counter(name)) for name, module in modules.items()]

    def _counter(self, name: str):
        def hook(module, args):
            self.calls[name] += 1
        return hook

    def entered(self) -> set[str]:
        return {name for name, calls in self.calls.items() if calls}

    def reset(self) -> None:
        self.calls = dict.fromkeys(self.calls, 0)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def test_nothing_after_the_deepest_site_runs(organism):
    """The organism is a GPT-2: blocks transformer.h, final norm transformer.ln_f, LM head lm_head."""
    hf_model = organism.hf_model
    n = organism.n_layers
    blocks = {f"h.{i}": block for i, block in enumerate(hf_model.get_submodule("transformer.h"))}
    modules = {"lm_head": hf_model.get_output_embeddings(), "ln_f": hf_model.get_submodule("transformer.ln_f"),
               **blocks, "h.1.attn": hf_model.get_submodule("transformer.h.1.attn"),
               "h.1.mlp": hf_model.get_submodule("transformer.h.1.mlp")}
    counter = CallCounter(modules)
    try:
        with torch.no_grad():
            organism.forward(organism.tokenize(TEXTS))
        assert set(counter.calls.values()) == {1}, counter.calls  # the counters see a full pass

        head = {"ln_f", "lm_head"}
        cases = [  # site, layers, modules that must run, modules that must not
            ("resid_post", [0], {"h.0"}, {*blocks} - {"h.0"} | {"h.1.attn", "h.1.mlp"} | head),
            ("resid_post", [n - 1, 0], {*blocks, "h.1.attn", "h.1.mlp"}, head),
            ("attn_out", [1], {"h.0", "h.1", "h.1.attn"}, {*blocks} - {"h.0", "h.1"} | {"h.1.mlp"} | head),
            ("resid_pre", [2], {"h.0", "h.1", "h.1.attn", "h.1.mlp"}, {f"h.{i}" for i in range(3, n)} | head),
        ]
        for site, layers, ran, skipped in cases:
            counter.reset()
            steerlab.capture(organism, TEXTS, layers=layers, site=site, progress=False)
            assert ran <= counter.entered(), (site, layers, counter.calls)
            assert not skipped & counter.entered(), (site, layers, counter.calls)
    finally:
        counter.remove()


def test_no_hook_left_and_the_model_unchanged_after_a_stopped_pass(organism):
    batch = organism.tokenize(TEXTS)
    prompts = organism.tokenize(TEXTS, padding_side="left")
    snapshot = organism.hook_snapshot()
    with torch.no_grad():
        logits = organism.forward(batch)
    generated = organism.generate_ids(prompts, max_new_tokens=4)

    for site in SITES:
        steerlab.capture(organism, TEXTS, layers=[1], site=site, progress=False)
        assert organism.hook_snapshot() == snapshot, site

    def broken(activation):
        raise KeyError("inside a site function")

    with pytest.raises(KeyError, match="inside a site function"):
        organism.read(batch, [(organism.point("resid_post", 0), broken)])
    assert organism.hook_snapshot() == snapshot
    if organism.backend == "transformer_lens":
        assert not any(point.has_hooks() for point in organism.tl_model.hook_dict.values())

    with torch.no_grad():
        assert torch.equal(organism.forward(batch), logits)
    assert torch.equal(organism.generate_ids(prompts, max_new_tokens=4), generated)


def test_read_inside_an_open_hooks_block(organism):
    """Edits of an open block apply before the stop point (layer 1 changes layers 1 and 2);
    one past it (layer 3) is simply never reached."""
    shift = torch.randn(organism.d_model, generator=torch.Generator().manual_seed(0))
    plain = captured(organism, TEXTS, "resid_post", [0, 1, 2])
    for edited_layer in [1, 3]:
        with edit(organism, lambda h, point: h + shift, layers=[edited_layer]):
            got = captured(organism, TEXTS, "resid_post", [0, 1, 2])
            expected = full_forward_reference(organism, TEXTS, "resid_post", [0, 1, 2])
        assert (got - expected).abs().max().item() <= 1e-6, edited_layer
        assert torch.equal(got[:, 0], plain[:, 0])
        assert torch.equal(got[:, 1:], plain[:, 1:]) == (edited_layer == 3)


def test_read_needs_a_site_function(organism_hf):
    with pytest.raises(ValueError, match="at least one"):
        organism_hf.read(organism_hf.tokenize(TEXTS), [])


@pytest.mark.parametrize("architecture", ["llama", "gemma2"])
def test_llama_and_gemma2_sites_equal_a_full_forward(model_dir, architecture):
    """Block layouts where attn_out / resid_mid sit on other modules (Gemma-2: post-norms)."""
    for backend in BACKENDS:
        model = steerlab.load_model(str(model_dir(architecture)), backend=backend)
        texts = ["w14", "w8 w9", "w1 w2 w3 w4 w5 w6 w7"]
        for site in SITES:
            for layers in [[0], [1], [0, 1, 2]]:
                diff = (captured(model, texts, site, layers) - full_forward_reference(model, texts, site, layers)).abs()
                assert diff.max().item() <= 1e-6, f"{architecture} {backend} {site} {layers}"


@pytest.mark.real
def test_real_smollm2_capture_unchanged():
    """SmolLM2-135M-Instruct: the first quarter of the layers and the last layer, every backend,
    against a full forward; mixed lengths in one batch (the first token's |h| ~ 2e4 included)."""
    name = "smollm2-135m-instruct"
    if registry.cached_folder(name) is None:
        pytest.skip(f"{name} is not in steerlab's cache: run `{registry.get(name).pull_command}`")
    hf = steerlab.load_model(name)
    texts = ["Hi", "The capital of France is", "Water boils at one hundred degrees Celsius, and ice melts at zero."]
    layers = [*range(hf.n_layers // 4), hf.n_layers - 1]
    for backend in BACKENDS:
        model = hf if backend == "hf" else steerlab.load_model(hf.hf_model, tokenizer=hf.tokenizer, backend=backend)
        snapshot = model.hook_snapshot()
        got, expected = captured(model, texts, "resid_post", layers), full_forward_reference(model, texts, "resid_post", layers)
        diff = (got - expected).abs().max().item()
        assert diff <= 1e-6, f"{backend}: max abs diff {diff} (max |h| {expected.abs().max().item():.0f})"
        assert model.hook_snapshot() == snapshot
        del model
