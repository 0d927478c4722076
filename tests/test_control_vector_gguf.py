"""llama.cpp control vectors: SteeringVector.to_gguf / from_gguf, the format's limits, and what it means."""

import json

import gguf
import numpy as np
import pytest
import torch

import steerlab
from steerlab.steering import SteeringVector
from steerlab.steering.control_vector_gguf import read_control_vector, write_control_vector


@pytest.fixture(scope="module")
def model():
    return steerlab.load_model("demo")


def _vector(layers=(2,), d_model=128, seed=0, **fields):
    generator = torch.Generator().manual_seed(seed)
    return SteeringVector(torch.randn(d_model, generator=generator), layers=layers, **fields)


def _fields(vector):
    return (vector.direction, vector.layers, vector.site, vector.model_name, vector.probe_weight_norm,
            vector.probe_intercept, vector.typical_norm, vector.provenance)


def _assert_same(a, b):
    assert torch.equal(a.direction, b.direction) and a.direction.dtype == b.direction.dtype == torch.float32
    assert _fields(a)[1:] == _fields(b)[1:]


def _write_like_repeng(path, directions, model_type="llama"):
    """A file as repeng's ControlVector.export_gguf writes it (one direction per layer, keys as there)."""
    writer = gguf.GGUFWriter(str(path), "controlvector")
    writer.add_string("controlvector.model_hint", model_type)
    writer.add_uint32("controlvector.layer_count", len(directions))
    for layer, direction in directions.items():
        writer.add_tensor(f"direction.{layer}", direction)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# ---------------------------------------------------------------- the file


def test_round_trip_is_exact(tmp_path):
    vector = _vector(layers=[1, 3], model_name="demo", typical_norm=41.123456789012345, probe_weight_norm=2.5e-3,
                     probe_intercept=-0.0123456789, provenance={"method": "CAA", "n_pairs": 7, "position": "last"})
    path = vector.to_gguf(tmp_path / "v.gguf")
    [back] = SteeringVector.from_gguf(path)
    _assert_same(back, vector)


def test_the_file_is_what_llama_cpp_reads(tmp_path):
    vector = _vector(layers=[1, 3], model_name="demo")
    reader = gguf.GGUFReader(str(vector.to_gguf(tmp_path / "v.gguf", model_hint="gpt2")))
    text = lambda key: bytes(reader.get_field(key).parts[reader.get_field(key).data[0]]).decode()  # noqa: E731
    assert text("general.architecture") == "controlvector" and text("controlvector.model_hint") == "gpt2"
    assert reader.get_field("controlvector.layer_count").parts[-1][0] == 2
    assert [(t.name, t.tensor_type.name, tuple(np.asarray(t.data).shape)) for t in reader.tensors] == [
        ("direction.1", "F32", (128,)), ("direction.3", "F32", (128,))]
    for tensor in reader.tensors:
        assert np.array_equal(np.asarray(tensor.data), vector.direction.numpy())


def test_alpha_is_baked_into_the_file(tmp_path):
    vector = _vector(typical_norm=10.0)
    [scaled] = SteeringVector.from_gguf(vector.to_gguf(tmp_path / "a.gguf", alpha=-2.5))
    assert torch.equal(scaled.direction, -2.5 * vector.direction)
    assert scaled.provenance["control_vector"] == {"alpha": -2.5, "norm_units": False, "source_norm": vector.norm}
    [normed] = SteeringVector.from_gguf(vector.to_gguf(tmp_path / "n.gguf", alpha=2.0, norm_units=True))
    assert torch.equal(normed.direction, 2.0 * (vector.unit * 10.0))


def test_repeng_files_read_as_one_vector_per_layer(tmp_path):
    rng = np.random.default_rng(0)
    directions = {layer: rng.standard_normal(64).astype(np.float32) for layer in range(1, 12)}
    _write_like_repeng(tmp_path / "repeng.gguf", directions)
    vectors = SteeringVector.from_gguf(tmp_path / "repeng.gguf")
    assert [v.layers for v in vectors] == [(layer,) for layer in range(1, 12)]
    for vector in vectors:
        assert np.array_equal(vector.direction.numpy(), directions[vector.layers[0]])
        assert vector.site == "resid_post" and vector.model_name is None
        assert vector.provenance == {"method": "llama.cpp control vector", "model_hint": "llama",
                                     "source": "repeng.gguf"}


def test_layers_sharing_a_direction_read_as_one_vector(tmp_path):
    same = np.arange(16, dtype=np.float32)
    _write_like_repeng(tmp_path / "v.gguf", {5: same, 2: same, 9: -same})
    first, second = read_control_vector(tmp_path / "v.gguf")
    assert first.layers == (2, 5) and second.layers == (9,)
    assert np.array_equal(second.direction.numpy(), -same)


def test_several_vectors_are_summed_where_they_share_a_layer(tmp_path):
    a, b = _vector(layers=[1, 2], seed=1), _vector(layers=[2], seed=2)
    vectors = read_control_vector(write_control_vector([a, b], tmp_path / "ab.gguf", alpha=0.5))
    by_layer = {layer: v.direction for v in vectors for layer in v.layers}
    assert torch.equal(by_layer[1], 0.5 * a.direction)
    assert torch.equal(by_layer[2], 0.5 * a.direction + 0.5 * b.direction)


# ---------------------------------------------------------------- what the format cannot express


@pytest.mark.parametrize("vector, options, message", [
    (SteeringVector(torch.ones(4), layers=2, site="attn_out"), {},
     r"site 'attn_out'.*block's output only.*site='resid_post'"),
    (_vector(layers=[0, 2]), {}, r"output of block 0.*direction\.0.*layer >= 1"),
    (_vector(), {"mode": "ablate"}, r"mode='ablate' depends on h.*mode='add'"),
    (_vector(), {"positions": "last"}, r"every token.*positions='last' cannot be expressed"),
    (_vector(), {"positions": (0, 3)}, r"positions=\(0, 3\) cannot be expressed"),
    (_vector(layers=[-1]), {}, r"layer -1, counted from the end: pass model="),
    (_vector(), {"norm_units": True}, r"norm_units=True needs a positive vector.typical_norm"),
    (_vector(), {"alpha": float("nan")}, r"alpha is nan: it must be a finite number"),
])
def test_what_llama_cpp_cannot_apply_is_refused(tmp_path, vector, options, message):
    with pytest.raises(ValueError, match=message):
        vector.to_gguf(tmp_path / "v.gguf", **options)
    assert not (tmp_path / "v.gguf").exists() and not list(tmp_path.iterdir())


def test_layers_and_width_are_checked_against_the_model(model, tmp_path):
    with pytest.raises(ValueError, match=r"Layer 4 is out of range: the model has 4 layers.*silently ignore"):
        _vector(layers=[4]).to_gguf(tmp_path / "v.gguf", model=model)
    with pytest.raises(ValueError, match=r"d_model 64 but the model has 128"):
        _vector(d_model=64).to_gguf(tmp_path / "v.gguf", model=model)
    with pytest.raises(ValueError, match=r"built on 'gpt2-xl', not on 'demo'"):
        _vector(model_name="gpt2-xl").to_gguf(tmp_path / "v.gguf", model=model)
    [vector] = SteeringVector.from_gguf(_vector(layers=[-1]).to_gguf(tmp_path / "v.gguf", model=model))
    assert vector.layers == (3,)
    reader = gguf.GGUFReader(str(tmp_path / "v.gguf"))
    hint = reader.get_field("controlvector.model_hint")
    assert bytes(hint.parts[hint.data[0]]).decode() == "gpt2"  # the demo model's transformers architecture


def test_existing_files_are_kept_without_overwrite(tmp_path):
    path = tmp_path / "v.gguf"
    path.write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        _vector().to_gguf(path)
    assert path.read_bytes() == b"mine"
    _vector().to_gguf(path, overwrite=True)
    assert len(SteeringVector.from_gguf(path)) == 1 and len(list(tmp_path.iterdir())) == 1


def test_files_that_are_not_control_vectors_are_refused(tmp_path):
    writer = gguf.GGUFWriter(str(tmp_path / "model.gguf"), "llama")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match=r"architecture 'llama', not a control vector"):
        SteeringVector.from_gguf(tmp_path / "model.gguf")
    _write_like_repeng(tmp_path / "zero.gguf", {0: np.ones(8, dtype=np.float32)})
    with pytest.raises(ValueError, match=r"direction\.0.*N >= 1"):
        SteeringVector.from_gguf(tmp_path / "zero.gguf")
    _write_like_repeng(tmp_path / "half.gguf", {1: np.ones(8, dtype=np.float16)})
    with pytest.raises(ValueError, match=r"direction\.1 is F16.*float32"):
        SteeringVector.from_gguf(tmp_path / "half.gguf")
    (tmp_path / "v.json").write_text(json.dumps({"direction": [1, 2]}))
    with pytest.raises(ValueError, match="not a GGUF file"):
        SteeringVector.from_gguf(tmp_path / "v.json")


# ---------------------------------------------------------------- what the file means on a model


def test_direction_n_is_added_to_the_output_of_block_n(model, tmp_path):
    """llama.cpp's rule (``build_cvec(cur, il)`` at the end of block il), done by hand with a torch hook on the
    block module, equals steerlab's steering with the vectors read from the file."""
    texts = ["q : where is Varo ? a :", "the food was"]
    batch = model.tokenize(texts[:1])
    rng = np.random.default_rng(1)
    directions = {layer: (3 * rng.standard_normal(model.d_model)).astype(np.float32) for layer in (1, 3)}
    _write_like_repeng(tmp_path / "cv.gguf", directions, model_type="gpt2")

    def add_direction(layer):
        def hook(module, inputs, output):
            direction = torch.from_numpy(directions[layer])
            return (output[0] + direction, *output[1:]) if isinstance(output, tuple) else output + direction
        return hook

    blocks = model.hf_model.transformer.h
    handles = [blocks[layer].register_forward_hook(add_direction(layer)) for layer in directions]
    try:
        by_hand = model.forward(batch)
    finally:
        for handle in handles:
            handle.remove()
    plain = model.forward(batch)
    with steerlab.steer(model, SteeringVector.from_gguf(tmp_path / "cv.gguf")):
        steered = model.forward(batch)
    assert not torch.allclose(plain, by_hand, atol=1e-2)
    assert torch.allclose(steered, by_hand, atol=1e-5, rtol=0)


def test_to_gguf_then_from_gguf_steers_as_steer_with_alpha(model, tmp_path):
    vector = _vector(layers=[2], model_name=model.name)
    batch = model.tokenize(["q : where is Varo ? a :"])
    with steerlab.steer(model, vector, alpha=3.0):
        expected = model.forward(batch)
    with steerlab.steer(model, SteeringVector.from_gguf(vector.to_gguf(tmp_path / "v.gguf", alpha=3.0))):
        from_file = model.forward(batch)
    assert torch.allclose(from_file, expected, atol=1e-5, rtol=0)


@pytest.mark.real
def test_a_real_models_vector_names_its_architecture(tmp_path):
    from steerlab.models.registry import MODELS, status

    if not next(row for row in status() if row["name"] == "smollm2-135m-instruct")["pulled"]:
        pytest.skip("steerlab models pull smollm2-135m-instruct")
    model = steerlab.load_model("smollm2-135m-instruct")
    vector = SteeringVector.from_contrast_pairs(model, ["I love this."], ["I hate this."], layer=-5)
    [back] = SteeringVector.from_gguf(vector.to_gguf(tmp_path / "love.gguf", model=model))
    reader = gguf.GGUFReader(str(tmp_path / "love.gguf"))
    hint = reader.get_field("controlvector.model_hint")
    assert bytes(hint.parts[hint.data[0]]).decode() == "llama"
    assert back.layers == (MODELS["smollm2-135m-instruct"].n_layers - 5,) and torch.equal(back.direction,
                                                                                            vector.direction)
