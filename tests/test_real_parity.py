"""Parity on real pretrained architectures: SmolLM2-135M-Instruct (Llama) and Gemma-3-270M.

Every backend (hf, transformer_lens, nnsight) must read the same numbers as plain
transformers: the references here come from torch hooks put directly on the decoder
layers (and on the modules whose outputs are added to the residual stream) of the HF
model, each text run alone, with no steerlab code involved. Differences are measured
relative to the activation scale of each compared vector (``max |h|`` of that token at
that layer): SmolLM2 has a massive activation (|h| ~ 2e4) on its first token, so a
tolerance relative to the global ``max |h|`` would be blind to errors on other tokens.

The models come from steerlab's cache (``steerlab models pull NAME``); each one is loaded
once per module (the fixture is module-scoped and parametrized, so pytest runs all tests
of one model, then frees it) and wrapped for the other backends. Run this tier alone with
``HF_HUB_OFFLINE=1 python -m pytest -q -m real``; benchmarks/real_parity.py prints the
measured differences (benchmarks/results_real_parity.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

import steerlab
from steerlab.models import registry

pytestmark = pytest.mark.real

MODELS = ["smollm2-135m-instruct", "gemma-3-270m"]
BACKENDS = ["hf", "transformer_lens", "nnsight"]
SITES = ["resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post"]
# Mixed lengths (1 to ~20 tokens) in one batch: padding is exercised on every forward.
TEXTS = ["The capital of France is", "Hi", "Water boils at one hundred degrees Celsius, and ice melts at zero."]
PROMPTS = ["The capital of France is", "My favourite food is"]
TOLERANCE = 1e-4  # max abs diff / max |h|, per compared vector

# The HF modules whose outputs are what attention and the MLP add to the residual stream,
# read from the transformers modeling code (Gemma-3 normalises both outputs before adding
# them). resid_mid is then resid_pre + attn_out, and resid_post = resid_mid + mlp_out is
# asserted on the references themselves, so these choices are checked, not assumed.
ADDED = {
    "llama": ("self_attn", "mlp"),
    "gemma3_text": ("post_attention_layernorm", "post_feedforward_layernorm"),
}
# The factor the input embeddings are multiplied by before block 0.
EMBED_SCALE = {"llama": lambda d: 1.0, "gemma3_text": lambda d: math.sqrt(d)}


@dataclass
class Real:
    name: str
    hf_model: Any
    tokenizer: Any
    adapters: dict[str, Any]
    references: dict[str, list[dict[str, torch.Tensor]]] = field(default_factory=dict)  # text -> site -> [L, pos, d]
    memo: dict[str, Any] = field(default_factory=dict)

    @property
    def model_type(self) -> str:
        return self.hf_model.config.model_type

    def reference(self, text: str | list[int]) -> dict[str, torch.Tensor]:
        key = text if isinstance(text, str) else tuple(text)
        if key not in self.references:
            ids = self.tokenizer(text)["input_ids"] if isinstance(text, str) else list(text)
            self.references[key] = hf_references(self.hf_model, ids)
        return self.references[key]


def hf_references(hf_model: Any, ids: list[int], layers: list[int] | None = None) -> dict[str, torch.Tensor]:
    """Every site at every layer (or ``layers``) for one unpadded text: ``site -> [n_layers, pos, d]``.

    Torch hooks on the decoder layers of the plain transformers model (block input and
    output) and on the modules in :data:`ADDED`; no steerlab code runs.
    """
    attn_name, mlp_name = ADDED[hf_model.config.model_type]
    blocks = hf_model.model.layers
    layers = list(range(len(blocks))) if layers is None else layers
    seen: dict[tuple[str, int], torch.Tensor] = {}
    first = lambda value: value[0] if isinstance(value, tuple) else value  # noqa: E731
    handles = []
    for i in layers:
        block = blocks[i]
        handles += [
            block.register_forward_pre_hook(
                lambda m, args, kwargs, i=i: seen.__setitem__(("resid_pre", i), (args[0] if args else kwargs["hidden_states"])[0].clone()),
                with_kwargs=True),
            block.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(("resid_post", i), first(out)[0].clone())),
            block.get_submodule(attn_name).register_forward_hook(
                lambda m, a, out, i=i: seen.__setitem__(("attn_out", i), first(out)[0].clone())),
            block.get_submodule(mlp_name).register_forward_hook(
                lambda m, a, out, i=i: seen.__setitem__(("mlp_out", i), first(out)[0].clone())),
        ]
    try:
        with torch.no_grad():
            hf_model.model(input_ids=torch.tensor([ids]))  # the base model: block outputs need no LM head
    finally:
        for handle in handles:
            handle.remove()
    out = {site: torch.stack([seen[site, i] for i in layers]) for site in ("resid_pre", "attn_out", "mlp_out", "resid_post")}
    out["resid_mid"] = out["resid_pre"] + out["attn_out"]
    return out


def relative_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max over vectors (last dim) of max|actual - expected| / max|expected| of that vector."""
    scale = expected.abs().amax(dim=-1).clamp_min(1e-6)
    return ((actual - expected).abs().amax(dim=-1) / scale).max().item()


def expected_at(references: list[torch.Tensor], position: str) -> torch.Tensor:
    """Per-text ``[L, pos, d]`` references -> what capture returns for ``position``."""
    if position == "last":
        return torch.stack([r[:, -1] for r in references])
    if position == "mean":
        return torch.stack([r.mean(dim=1) for r in references])
    return torch.cat([r.transpose(0, 1) for r in references])  # "all": [n_tokens, L, d]


def forward_recording(adapter: Any, batch: Any, sites: list[str], layers: list[int]) -> dict[tuple[str, int], torch.Tensor]:
    """One adapter forward; each of ``sites`` at each of ``layers`` as ``[batch, pos, d]``."""
    seen: dict[tuple[str, int], torch.Tensor] = {}

    def keep(key: tuple[str, int]):
        return lambda activation: seen.__setitem__(key, activation.detach().clone())

    with torch.no_grad():
        adapter.forward(batch, [(adapter.point(site, layer), keep((site, layer))) for site in sites for layer in layers])
    return seen


@pytest.fixture(scope="module", params=MODELS)
def real(request) -> Real:
    name = request.param
    if registry.cached_folder(name) is None:
        pytest.skip(f"{name} is not in steerlab's cache: run `{registry.get(name).pull_command}`")
    hf = steerlab.load_model(name)  # the named model, from the cache (hf backend)
    assert hf.backend == "hf" and hf.name == name
    adapters = {"hf": hf}
    for backend in BACKENDS[1:]:
        adapters[backend] = steerlab.load_model(hf.hf_model, tokenizer=hf.tokenizer, backend=backend)
    model = Real(name, hf.hf_model, hf.tokenizer, adapters)
    yield model
    model.adapters.clear()


def test_registry_facts(real):
    model = registry.get(real.name)
    for adapter in real.adapters.values():
        assert (adapter.n_layers, adapter.d_model) == (model.n_layers, model.d_model)
    assert type(real.hf_model).__name__ == model.architecture


@pytest.mark.parametrize("backend", BACKENDS)
def test_resid_post_equals_hf_block_outputs(real, backend):
    """resid_post at every layer, positions last/mean/all, one mixed-length batch."""
    references = [real.reference(text)["resid_post"] for text in TEXTS]
    for reference in references:
        assert reference.shape[0] == real.adapters["hf"].n_layers
    for position in ["all", "last", "mean"]:
        acts = steerlab.capture(real.adapters[backend], TEXTS, position=position, batch_size=len(TEXTS), progress=False)
        assert acts.layers == list(range(real.adapters[backend].n_layers))
        diff = relative_diff(acts.values, expected_at(references, position))
        assert diff <= TOLERANCE, f"{real.name} {backend} resid_post position={position}: relative diff {diff:.2e}"


def test_reference_bookkeeping(real):
    """The references' own sums: the residual stream is resid_pre + attn_out + mlp_out, block to block."""
    for text in TEXTS:
        ref = real.reference(text)
        assert relative_diff(ref["resid_mid"] + ref["mlp_out"], ref["resid_post"]) <= TOLERANCE
        assert torch.equal(ref["resid_pre"][1:], ref["resid_post"][:-1])


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_site_every_layer_either_padding_side(real, backend, side):
    """adapter.tokenize(padding_side=...) and one forward recording all five sites at every layer:
    each text's real tokens read as the HF modules give them when the text runs alone."""
    adapter = real.adapters[backend]
    layers = list(range(adapter.n_layers))
    batch = adapter.tokenize(TEXTS, padding_side=side)
    assert batch.input_ids.shape[1] > int(batch.lengths.min())  # really padded
    seen = forward_recording(adapter, batch, SITES, layers)
    for site in SITES:
        for row, text in enumerate(TEXTS):
            mask = batch.attention_mask[row].bool()
            got = torch.stack([seen[site, layer][row][mask] for layer in layers])
            diff = relative_diff(got, real.reference(text)[site])
            assert diff <= TOLERANCE, f"{real.name} {backend} {side} padding, {site}, text {row}: relative diff {diff:.2e}"


def test_token_ids_are_the_tokenizers_own(real):
    """No backend adds or drops a BOS: ids are exactly tokenizer(text) (Gemma's tokenizer adds one BOS)."""
    expected = [real.tokenizer(text)["input_ids"] for text in TEXTS]
    bos = real.tokenizer.bos_token_id
    if real.model_type == "gemma3_text":
        assert all(ids[0] == bos and bos not in ids[1:] for ids in expected)
    for backend, adapter in real.adapters.items():
        batch = adapter.tokenize(TEXTS)
        got = [row[mask.bool()].tolist() for row, mask in zip(batch.input_ids, batch.attention_mask)]
        assert got == expected, backend
    # What TransformerLens' own tokenizer copy would do is not what runs: capture parity above
    # is on these ids, and the bridge's first block sees as many tokens as tokenizer(text) has.
    acts = steerlab.capture(real.adapters["transformer_lens"], [TEXTS[1]], layers=[0], position="all", progress=False)
    assert acts.values.shape[0] == len(expected[1])


def test_embedding_scale(real):
    """resid_pre of layer 0 is the scaled token embeddings (Gemma: x sqrt(d_model); Llama: x 1)."""
    ids = real.tokenizer(TEXTS[0])["input_ids"]
    scale = EMBED_SCALE[real.model_type](real.hf_model.config.hidden_size)
    weight = real.hf_model.get_input_embeddings().weight.detach()
    expected = weight[ids] * torch.tensor(scale, dtype=weight.dtype)
    for backend, adapter in real.adapters.items():
        got = steerlab.capture(adapter, [TEXTS[0]], layers=[0], site="resid_pre", position="all", progress=False).values[:, 0]
        assert relative_diff(got, expected) <= 1e-6, backend
    if scale != 1.0:
        assert relative_diff(weight[ids], expected) > 0.5  # the unscaled embeddings would fail


def test_final_norm_placement(real):
    """resid_post of the last block is before the final norm: hidden_states[-1] is norm(resid_post[-1])."""
    ids = real.tokenizer(TEXTS[2])["input_ids"]
    with torch.no_grad():
        hidden = real.hf_model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        last_block = real.reference(TEXTS[2])["resid_post"][-1]
        assert relative_diff(real.hf_model.model.norm(last_block), hidden[-1][0]) <= TOLERANCE
    assert relative_diff(last_block, hidden[-1][0]) > 0.1  # hidden_states[-1] is not the block output
    for backend, adapter in real.adapters.items():
        got = steerlab.capture(adapter, [TEXTS[2]], layers=[-1], position="all", progress=False).values[:, 0]
        assert relative_diff(got, last_block) <= TOLERANCE, backend
        assert relative_diff(got, hidden[-1][0]) > 0.1, backend


def test_sliding_window_layers(real):
    """A text longer than the sliding window: every backend still equals plain transformers.

    Gemma-3-270M has sliding-window layers (window 512, five of every six layers) and full
    attention layers; beyond the window, a backend that ignored the window (e.g. attention
    recomputed with a plain causal mask) would differ on its last tokens. 520 tokens is cheap
    on the base model; the check reads a few layers (the first full-attention layer, its
    neighbours and the last) at the last 8 positions.
    """
    config = real.hf_model.config
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None) or []
    if not window or "sliding_attention" not in layer_types:
        pytest.skip(f"{real.name} has no sliding-window layers")
    ids = real.tokenizer(" ".join(["one two three four five six seven eight nine ten"] * 60))["input_ids"]
    ids = ids[: window + 8]
    assert len(ids) == window + 8
    full = layer_types.index("full_attention")
    layers = sorted({0, full - 1, full, full + 1, config.num_hidden_layers - 1})
    reference = hf_references(real.hf_model, ids, layers)["resid_post"][:, -8:]
    text = real.tokenizer.decode(ids[1:]) if ids[0] == real.tokenizer.bos_token_id else real.tokenizer.decode(ids)
    assert real.tokenizer(text)["input_ids"] == ids  # the same tokens through capture's own tokenisation
    for backend, adapter in real.adapters.items():
        got = steerlab.capture(adapter, [text], layers=layers, position="all", progress=False).values[-8:]
        diff = relative_diff(got.transpose(0, 1), reference)
        assert diff <= TOLERANCE, f"{real.name} {backend} past the sliding window: relative diff {diff:.2e}"


def _plain_and_steered(real, adapter: Any) -> tuple[list[str], list[str]]:
    layer = adapter.n_layers // 2
    reference = real.reference(PROMPTS[0])["resid_post"][layer, 1:]  # the first token's massive norm left out
    typical = reference.norm(dim=-1).median().item()
    direction = torch.randn(adapter.d_model, generator=torch.Generator().manual_seed(0))
    vector = steerlab.SteeringVector(direction / direction.norm() * typical, layers=layer, model_name=None)
    plain = adapter.generate(PROMPTS, max_new_tokens=4)
    with steerlab.steer(adapter, vector, alpha=1.0):
        steered = adapter.generate(PROMPTS, max_new_tokens=4)
    return plain, steered


@pytest.mark.parametrize("backend", BACKENDS[1:])
def test_greedy_generation_plain_and_steered_identical_across_backends(real, backend):
    if "hf" not in real.memo:
        real.memo["hf"] = _plain_and_steered(real, real.adapters["hf"])
    plain, steered = real.memo["hf"]
    assert plain != steered  # the vector does change the continuations
    assert all(text.strip() for text in plain)
    assert _plain_and_steered(real, real.adapters[backend]) == (plain, steered)


def test_chat_template(real):
    """capture(..., chat_template=True) reads the chat-formatted tokens on every backend, and
    generate(..., chat_template=True) answers (SmolLM2: Paris).

    Chat generation runs on hf only: the chat formatting is ModelAdapter.generate's, shared by
    every backend, and greedy generation from the same ids is compared across backends above.
    """
    if getattr(real.tokenizer, "chat_template", None) is None:
        pytest.skip(f"{real.name}'s tokenizer has no chat template")
    question = "What is the capital of France?"
    ids = real.tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=True,
                                             add_generation_prompt=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    expected = real.reference(ids)["resid_post"][:, -1]
    for backend, adapter in real.adapters.items():
        batch = adapter.tokenize([question], chat_template=True)
        assert batch.input_ids[0].tolist() == ids, backend
        got = steerlab.capture(adapter, [question], position="last", chat_template=True, progress=False).values[0]
        assert relative_diff(got, expected) <= TOLERANCE, backend
    answer = real.adapters["hf"].generate([question], max_new_tokens=8, chat_template=True)[0]
    assert answer.strip()
    if real.name == "smollm2-135m-instruct":
        assert "Paris" in answer, answer
