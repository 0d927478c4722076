"""The foundation's acceptance test: capture equals the HF block outputs on every backend."""

import pytest
import torch

import steerlab
from conftest import TEXTS, block_outputs, load_objects

BACKENDS = ["hf", "transformer_lens", "nnsight"]


def expected(references, position):
    """From per-text references ``[n_layers, pos, d]`` to what capture should return."""
    if position == "last":
        return torch.stack([r[:, -1] for r in references])
    if position == "mean":
        return torch.stack([r.mean(dim=1) for r in references])
    if position == "all":
        return torch.cat([r.transpose(0, 1) for r in references])
    return torch.stack([r[:, position] for r in references])


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_resid_post_matches_hf_block_outputs(model_dir, architecture, backend):
    directory = model_dir(architecture)
    references = block_outputs(directory, TEXTS)
    model = steerlab.load_model(str(directory), backend=backend)
    assert model.backend == backend and model.n_layers == 3 and model.d_model == 32
    for position in ["last", "mean", "all", 0, -2]:
        texts = TEXTS if position not in (0, -2) else [t for t in TEXTS if len(t.split()) >= 2]
        refs = references if texts is TEXTS else [r for r, t in zip(references, TEXTS) if t in texts]
        # batch_size=3 mixes lengths 7, 2, 4 in one batch
        acts = steerlab.capture(model, texts, position=position, batch_size=3, progress=False)
        assert acts.layers == [0, 1, 2]
        assert acts.values.shape[1:] == (3, 32)
        diff = (acts.values - expected(refs, position)).abs().max().item()
        assert diff <= 1e-4, f"{backend} {position}: max abs diff {diff}"
        if position == "all":
            lengths = [len(t.split()) for t in TEXTS]
            assert acts.sequence_index.tolist() == [i for i, n in enumerate(lengths) for _ in range(n)]
            assert acts.token_index.tolist() == [j for n in lengths for j in range(n)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_left_padding_tokenizer_gives_same_activations(model_dir, backend):
    directory = model_dir("gpt2")
    model = steerlab.load_model(str(directory), backend=backend)
    right = steerlab.capture(model, TEXTS, position="last", batch_size=5, progress=False).values
    model.tokenizer.padding_side = "left"
    try:
        left = steerlab.capture(model, TEXTS, position="last", batch_size=5, progress=False).values
        alone = torch.cat([steerlab.capture(model, [t], position="last", progress=False).values for t in TEXTS])
    finally:
        model.tokenizer.padding_side = "right"
    assert (left - right).abs().max() <= 1e-5
    assert (alone - right).abs().max() <= 1e-5


@pytest.mark.parametrize("architecture", ["gpt2", "gpt_neox", "llama", "mistral", "qwen2", "gemma", "gemma2"])
def test_every_site_agrees_between_hf_and_transformer_lens(model_dir, architecture):
    """The architecture table's module choices agree with TransformerLens' own hook points."""
    hf_model, tokenizer = load_objects(model_dir(architecture))
    hf = steerlab.load_model(hf_model, tokenizer=tokenizer, backend="hf")
    tl = steerlab.load_model(hf_model, tokenizer=tokenizer, backend="transformer_lens")
    assert tl.hf_model is not hf_model  # booting a bridge rewrites modules: the user's object is copied
    sites = ["resid_pre", "attn_out", "mlp_out", "resid_post"] + ([] if architecture == "gpt_neox" else ["resid_mid"])
    for site in sites:
        a = steerlab.capture(hf, TEXTS, site=site, position="mean", progress=False).values
        b = steerlab.capture(tl, TEXTS, site=site, position="mean", progress=False).values
        assert a.abs().max() > 0
        assert (a - b).abs().max() <= 1e-4, f"{architecture} {site}: {(a - b).abs().max()}"
