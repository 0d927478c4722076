"""The SAE and hallucination stages on save_pretrained hub architectures and every backend (no demo model).

The same semantics everywhere: an SAE trained on one backend's activations splices into the
others; editing through it with the error term kept is exact when nothing is edited; the
hidden states of generated tokens match plain transformers.
"""

import numpy as np
import pytest
import torch

import steerlab
from conftest import TEXTS, block_outputs

BACKENDS = ["hf", "nnsight", "transformer_lens"]


@pytest.fixture(scope="module")
def llama_sae(model_dir):
    from steerlab.sae import train_sae

    model = steerlab.load_model(str(model_dir("llama", add_bos=True)), backend="hf")
    texts = [" ".join(f"w{(i * 7 + j) % 60 + 1}" for j in range(12)) for i in range(200)]
    return train_sae(model, texts, layer=1, d_sae=64, k=4, steps=60, batch_size=128)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unedited_sae_edit_is_exact_and_an_edit_is_not(model_dir, llama_sae, backend):
    from steerlab.sae import check_sae, sae_edit, sae_splice

    model = steerlab.load_model(str(model_dir("llama", add_bos=True)), backend=backend)
    batch = model.tokenize(TEXTS)
    with torch.no_grad():
        before = model.forward(batch)
        with sae_edit(model, llama_sae, {3: lambda a: a}):  # identity edit: the hook runs, the error term is kept
            identity = model.forward(batch)
        with sae_edit(model, llama_sae, {3: 50.0}):
            edited = model.forward(batch)
        with sae_splice(model, llama_sae):  # reconstruction only: changes the output
            spliced = model.forward(batch)
        after = model.forward(batch)
    real = batch.attention_mask.bool()
    assert torch.allclose(identity[real], before[real], atol=1e-5)
    assert (edited[real] - before[real]).abs().max() > 1e-2 and (spliced[real] - before[real]).abs().max() > 1e-4
    assert torch.equal(after, before)  # hooks removed
    with pytest.raises(ValueError, match="33-dimensional .* d_model=32"):  # an SAE for a wider model is refused on every backend
        check_sae(_wider(llama_sae), model)


def _wider(sae):
    """An SAE of the same kind for a wider residual stream (d_in + 1)."""
    from sae_lens import TopKSAE, TopKSAEConfig

    config = TopKSAEConfig(d_in=sae.cfg.d_in + 1, d_sae=sae.cfg.d_sae, k=4)
    config.metadata.hook_name = sae.cfg.metadata.hook_name
    return TopKSAE(config)


@pytest.mark.parametrize("architecture", ["gpt2", "llama", "gpt_neox"])
def test_generated_token_states_match_plain_transformers(model_dir, architecture):
    from steerlab.hallucination import generate_and_capture

    directory = model_dir(architecture)
    model = steerlab.load_model(str(directory), backend="hf")
    gen = generate_and_capture(model, TEXTS[:3], max_new_tokens=3, progress=False)
    assert len(gen) > 0 and gen.hidden.shape[1:] == (model.n_layers, model.d_model)
    texts = [prompt + " " + answer for prompt, answer in zip(gen.prompts, gen.answers)]
    for answer, reference in enumerate(block_outputs(directory, texts)):
        rows = np.flatnonzero(gen.answer_index == answer)
        if len(rows):
            torch.testing.assert_close(gen.hidden[rows], reference[:, -len(rows):].transpose(0, 1), atol=1e-4, rtol=0)
            before = reference[:, -len(rows) - 1:-1].transpose(0, 1)
            torch.testing.assert_close(gen.producing[rows], before, atol=1e-4, rtol=0)
