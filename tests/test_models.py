"""load_model: names, paths, objects, generation, tokenisation rules and errors."""

import warnings

import pytest
import torch

import steerlab
from conftest import TEXTS, VOCAB, block_outputs, load_objects, make_tokenizer
from steerlab.models.loading import DEMO_ENV_VAR


def test_wrapping_a_transformers_object_does_not_reload_it(model_dir):
    hf_model, tokenizer = load_objects(model_dir("llama"))
    model = steerlab.load_model(hf_model, tokenizer=tokenizer)
    assert model.hf_model is hf_model and model.backend == "hf"
    assert model.tokenizer is tokenizer


def test_wrapping_bridge_and_nnsight_objects(model_dir):
    from nnsight import LanguageModel
    from transformer_lens.model_bridge import TransformerBridge

    directory = model_dir("gpt2")
    references = block_outputs(directory, TEXTS)
    expected = torch.stack([r[:, -1] for r in references])

    hf_model, tokenizer = load_objects(directory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nn_model = LanguageModel(hf_model, tokenizer=tokenizer)
    wrapped = steerlab.load_model(nn_model)
    assert wrapped.backend == "nnsight" and wrapped.nnsight_model is nn_model
    assert (steerlab.capture(wrapped, TEXTS, progress=False).values - expected).abs().max() <= 1e-4

    hf_model, tokenizer = load_objects(directory)
    bridge = TransformerBridge.boot_transformers(str(directory), hf_model=hf_model, tokenizer=tokenizer)
    wrapped = steerlab.load_model(bridge, tokenizer=tokenizer)
    assert wrapped.backend == "transformer_lens" and wrapped.tl_model is bridge
    assert (steerlab.capture(wrapped, TEXTS, progress=False).values - expected).abs().max() <= 1e-4
    with pytest.raises(ValueError, match="runs on the 'transformer_lens' backend"):
        steerlab.load_model(bridge, backend="hf")


def test_hooked_transformer_object(model_dir):
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

    directory = model_dir("gpt2")
    hf_model, tokenizer = load_objects(directory)
    config = HookedTransformerConfig(n_layers=3, d_model=32, n_ctx=64, d_head=16, n_heads=2, d_mlp=128,
                                     d_vocab=len(VOCAB), act_fn="gelu_new", normalization_type="LN",
                                     default_prepend_bos=False)
    hooked = HookedTransformer(config, tokenizer=tokenizer)
    hooked.load_state_dict(convert_gpt2_weights(hf_model, config), strict=False)
    # HookedTransformer keeps a BOS-prepending copy of the tokenizer; pass the original to match HF.
    model = steerlab.load_model(hooked, tokenizer=tokenizer)
    assert model.backend == "transformer_lens" and model.hf_model is None
    expected = torch.stack([r[:, -1] for r in block_outputs(directory, TEXTS)])
    assert (steerlab.capture(model, TEXTS, progress=False).values - expected).abs().max() <= 1e-4
    reference = steerlab.load_model(str(directory)).generate(TEXTS[:2], max_new_tokens=4)
    assert model.generate(TEXTS[:2], max_new_tokens=4) == reference


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_greedy_generation_is_the_same_on_every_backend(model_dir, architecture):
    directory = str(model_dir(architecture))
    outputs = {backend: steerlab.load_model(directory, backend=backend).generate(TEXTS, max_new_tokens=5)
               for backend in ["hf", "transformer_lens", "nnsight"]}
    assert outputs["hf"] == outputs["transformer_lens"] == outputs["nnsight"]
    assert all(len(text.split()) == 5 for text in outputs["hf"])  # no eos in a random model's top choices


@pytest.mark.parametrize("backend", ["hf", "transformer_lens", "nnsight"])
def test_no_backend_adds_a_bos_token(model_dir, backend):
    directory = model_dir("llama", add_bos=True)  # this tokenizer itself prepends <bos>
    model = steerlab.load_model(str(directory), backend=backend)
    acts = steerlab.capture(model, TEXTS, position="all", layers=[0], progress=False)
    assert len(acts) == sum(len(t.split()) + 1 for t in TEXTS)  # exactly the tokenizer's own ids


def test_pad_token_comes_from_eos_without_touching_the_tokenizer(model_dir):
    hf_model, tokenizer = load_objects(model_dir("gpt2"))
    assert tokenizer.pad_token is None
    model = steerlab.load_model(hf_model, tokenizer=tokenizer)
    assert model.pad_token_id == tokenizer.eos_token_id == 1
    assert tokenizer.pad_token is None


def test_texts_past_the_context_warn_or_raise(model_dir):
    model = steerlab.load_model(str(model_dir("gpt2")))
    long_text = " ".join(["w3"] * 80)  # context is 64
    with pytest.warns(UserWarning, match="exceed the model's context of 64 tokens"):
        acts = steerlab.capture(model, [long_text, "w1"], position="all", layers=[0], progress=False)
    assert len(acts) == 64 + 1
    with pytest.raises(ValueError, match="shorten them, or pass strict=False"):
        steerlab.capture(model, [long_text], strict=True, progress=False)


def test_clear_errors(model_dir, tmp_path, monkeypatch):
    model = steerlab.load_model(str(model_dir("gpt2")))
    with pytest.raises(ValueError, match="Unknown site 'resid'.*resid_post"):
        steerlab.capture(model, TEXTS, site="resid")
    with pytest.raises(ValueError, match="Layer 3 is out of range: the model has 3 layers"):
        steerlab.capture(model, TEXTS, layers=[3])
    with pytest.raises(ValueError, match="empty"):
        steerlab.capture(model, [])
    with pytest.raises(TypeError, match="not a single string"):
        steerlab.capture(model, "w1 w2")
    with pytest.raises(TypeError, match="Unsupported model object of type dict"):
        steerlab.load_model({"not": "a model"})
    with pytest.raises(FileNotFoundError, match="No model directory at"):
        steerlab.load_model(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        steerlab.load_model(str(tmp_path))
    with pytest.raises(ValueError, match="Pass the model's tokenizer"):
        steerlab.load_model(model.hf_model)
    with pytest.raises(ValueError, match="Unknown backend"):
        steerlab.load_model(str(model_dir("gpt2")), backend="jax")
    monkeypatch.setenv(DEMO_ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="demo model is missing.*steerlab.organism.train"):
        steerlab.load_model("demo")


def test_a_local_folder_has_one_name_however_it_is_typed(model_dir, monkeypatch):
    """A vector saved from `probe mymodel` must match `steer /abs/path/mymodel`: names are absolute paths."""
    directory = model_dir("gpt2")
    monkeypatch.chdir(directory.parent)
    names = {steerlab.load_model(typed).name
             for typed in (directory.name, f"./{directory.name}/", str(directory), directory)}
    assert names == {str(directory.resolve())}
    hf_model, tokenizer = load_objects(directory)
    hf_model.config._name_or_path = directory.name  # as from_pretrained("relative-folder") records it
    assert steerlab.load_model(hf_model, tokenizer=tokenizer).name == str(directory.resolve())
    from steerlab.models.adapter import _model_name

    assert _model_name("EleutherAI/pythia-70m") == "EleutherAI/pythia-70m"  # hub ids are kept as given


def test_offline_hub_id_error_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="Could not load 'steerlab-test/does-not-exist'.*HF_HUB_OFFLINE=1"):
        steerlab.load_model("steerlab-test/does-not-exist")


def test_parallel_residual_has_no_resid_mid(model_dir):
    model = steerlab.load_model(str(model_dir("gpt_neox")))
    with pytest.raises(ValueError, match="no resid_mid"):
        steerlab.capture(model, TEXTS, site="resid_mid")


def test_negative_layers_count_from_the_end(model_dir):
    model = steerlab.load_model(str(model_dir("gpt2")))
    last = steerlab.capture(model, TEXTS, layers=[-1], progress=False)
    assert last.layers == [2]
    assert torch.equal(last.values[:, 0], steerlab.capture(model, TEXTS, progress=False).layer(2))


def test_import_is_lazy():
    import subprocess
    import sys

    code = "import sys, steerlab; print(any(m in sys.modules for m in ('torch', 'transformer_lens', 'nnsight', 'sae_lens')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_chat_template_is_applied_when_asked(model_dir):
    hf_model, tokenizer = load_objects(model_dir("gpt2"))
    tokenizer.chat_template = "{% for m in messages %}<bos> {{ m['content'] }} <eos>{% endfor %}{% if add_generation_prompt %} w0{% endif %}"
    model = steerlab.load_model(hf_model, tokenizer=tokenizer)
    plain = steerlab.capture(model, ["w5 w6"], position="all", layers=[0], progress=False)
    chat = steerlab.capture(model, ["w5 w6"], position="all", layers=[0], chat_template=True, progress=False)
    assert len(plain) == 2 and len(chat) == 5  # <bos> w5 w6 <eos> w0, special tokens not doubled
    assert torch.allclose(chat.values[1:3], steerlab.capture(model, ["<bos> w5 w6"], position="all", layers=[0],
                                                             progress=False).values[1:3], atol=1e-5)
    no_template = steerlab.load_model(*load_objects(model_dir("gpt2"))[:1], tokenizer=make_tokenizer())
    with pytest.raises(ValueError, match="no chat template"):
        steerlab.capture(no_template, ["w1"], chat_template=True)
