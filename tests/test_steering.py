"""Steering vectors and injection: semantics, backend parity, cleanup, errors."""

import dataclasses

import pytest
import torch

import steerlab
from conftest import TEXTS
from steerlab import SteeringVector, steer
from steerlab.steering.injection import select_positions

BACKENDS = ["hf", "transformer_lens", "nnsight"]


def random_vector(model, layer=1, scale=4.0, seed=1, **kwargs):
    direction = torch.randn(model.d_model, generator=torch.Generator().manual_seed(seed)) * scale
    return SteeringVector(direction, layers=layer, model_name=model.name, **kwargs)


@pytest.fixture(scope="module")
def models(model_dir):
    directory = str(model_dir("llama"))
    return {backend: steerlab.load_model(directory, backend=backend) for backend in BACKENDS}


@pytest.mark.parametrize("positions", ["all", "prompt", "generated", "last", 0, -1, (2, None), (1, 3)])
def test_steered_generation_is_identical_on_every_backend(models, positions):
    outputs = {}
    for backend, model in models.items():
        with steer(model, random_vector(model), alpha=1.0, positions=positions):
            outputs[backend] = model.generate(TEXTS, max_new_tokens=4)
    assert outputs["hf"] == outputs["transformer_lens"] == outputs["nnsight"]
    plain = models["hf"].generate(TEXTS, max_new_tokens=4)
    assert outputs["hf"] != plain


def test_position_selection_during_cached_generation(models):
    model = models["hf"]
    seen = []
    with model.token_positions() as tracker:
        point = model.point("resid_post", 0)
        record = lambda h: seen.append({p: select_positions(tracker, p).clone()
                                        for p in ["prompt", "generated", "last", 0, -1, (1, None), (0, 2)]})
        model.generate(["w1 w2 w3", "w4"], max_new_tokens=2, fns=[(point, record)])
    first, second = seen
    # prompt forward, left-padded: row 1 is [pad, pad, w4]
    assert first["prompt"].tolist() == [[True, True, True], [False, False, True]]
    assert not first["generated"].any()
    assert first["last"].tolist() == [[False, False, True], [False, False, True]]
    assert first[(1, None)].tolist() == [[False, True, True], [False, False, False]]
    assert first[0].tolist() == [[True, False, False], [False, False, True]]  # each text's first token
    assert first[-1].tolist() == [[False, False, True], [False, False, True]]  # each prompt's last token
    assert first[(0, 2)].tolist() == [[True, True, False], [False, False, True]]
    # second forward: one new token per row, at text positions 3 and 1
    assert second["generated"].tolist() == [[True], [True]] and not second["prompt"].any()
    assert second[(1, None)].tolist() == [[True], [True]]
    assert not second[0].any() and not second[-1].any()  # an int refers to the prompt: prompt pass only
    assert second[(0, 2)].tolist() == [[False], [True]]


def test_add_is_exactly_h_plus_alpha_v_at_selected_positions(models):
    model = models["hf"]
    vector = random_vector(model, layer=1)
    plain = steerlab.capture(model, TEXTS, layers=[1], position="all", progress=False).values[:, 0]
    with steer(model, vector, alpha=0.5, positions=(2, None)):
        steered = steerlab.capture(model, TEXTS, layers=[1], position="all", progress=False)
    expected = plain + 0.5 * vector.direction * (steered.token_index >= 2).unsqueeze(1)
    assert torch.allclose(steered.values[:, 0], expected, atol=1e-5)


def test_ablate_and_set_projection(models):
    model = models["nnsight"]
    vector = random_vector(model, layer=0)
    with steer(model, vector, mode="ablate"):
        ablated = steerlab.capture(model, TEXTS, layers=[0], position="all", progress=False).values[:, 0]
    assert (ablated @ vector.unit).abs().max() < 1e-5
    with steer(model, vector, mode="set", target=3.0):
        set_ = steerlab.capture(model, TEXTS, layers=[0], position="all", progress=False).values[:, 0]
    assert torch.allclose(set_ @ vector.unit, torch.full((len(set_),), 3.0), atol=1e-4)


def test_clamp_reaches_the_target_probe_probability(models):
    model = models["transformer_lens"]
    unit = torch.nn.functional.normalize(torch.randn(model.d_model, generator=torch.Generator().manual_seed(3)), dim=0)
    vector = SteeringVector(unit, layers=1, model_name=model.name, probe_weight_norm=2.5, probe_intercept=-0.3)
    for target in (0.9999, 0.0001):
        with steer(model, vector, mode="clamp", target=target, positions="all") as stats:
            model.generate(TEXTS, max_new_tokens=3)
        assert stats.edited_tokens > 0
        assert stats.clamp_reached(target, tolerance=1e-4) >= 0.99


def test_hf_model_calls_are_steered_and_everything_is_restored_after_an_exception(models):
    for model in models.values():
        batch = model.tokenize(TEXTS)
        with torch.no_grad():
            before = model.forward(batch)
            snapshot = model.hook_snapshot()
            with pytest.raises(RuntimeError, match="user code failed"):
                with steer(model, random_vector(model), alpha=2.0):
                    steered = model.hf_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
                    assert not torch.allclose(steered, before)
                    raise RuntimeError("user code failed")
            assert model.hook_snapshot() == snapshot
            assert torch.equal(model.forward(batch), before)


def test_several_vectors_at_once_compose(models):
    model = models["hf"]
    a, b = random_vector(model, layer=1, seed=1), random_vector(model, layer=1, seed=2)
    with steer(model, [a, b], alpha=[1.0, -0.5]):
        both = steerlab.capture(model, TEXTS, layers=[1], progress=False).values
    with steer(model, a - 0.5 * b):
        combined = steerlab.capture(model, TEXTS, layers=[1], progress=False).values
    assert torch.allclose(both, combined, atol=1e-5)


def test_mismatched_vectors_are_refused_on_entry(models):
    model = models["hf"]
    wrong_width = SteeringVector(torch.ones(model.d_model + 1), layers=0)
    with pytest.raises(ValueError, match="d_model=33 but .* has d_model=32"):
        with steer(model, wrong_width):
            pass
    other_model = dataclasses.replace(random_vector(model), model_name="gpt2")
    with pytest.raises(ValueError, match="built on 'gpt2'"):
        with steer(model, other_model):
            pass
    with pytest.raises(ValueError, match="Layer 7 is out of range"):
        with steer(model, random_vector(model, layer=7)):
            pass
    with pytest.raises(ValueError, match="needs a vector built from a probe"):
        with steer(model, random_vector(model), mode="clamp", target=0.9):
            pass
    for bad in ("middle", (3, 1), True):
        with pytest.raises(ValueError, match="positions must be one of"):
            with steer(model, random_vector(model), positions=bad):
                pass
    assert model.hook_snapshot() == steerlab.load_model(model.hf_model, tokenizer=model.tokenizer).hook_snapshot()


def test_vector_arithmetic_save_load_and_contrast_pairs(models, tmp_path):
    model = models["hf"]
    vector = SteeringVector.from_contrast_pairs(model, ["w1 w2 w3", "w4 w5"], ["w6 w7 w8", "w9 w10"], layer=-1)
    assert vector.layers == (2,) and vector.provenance["method"] == "CAA" and vector.typical_norm > 0
    plus = steerlab.capture(model, ["w1 w2 w3", "w4 w5"], layers=[2], progress=False).values[:, 0]
    minus = steerlab.capture(model, ["w6 w7 w8", "w9 w10"], layers=[2], progress=False).values[:, 0]
    assert torch.allclose(vector.direction, (plus - minus).mean(0), atol=1e-6)
    path = vector.save(tmp_path / "caa")
    assert path.suffix == ".safetensors" and (tmp_path / "caa.json").is_file()
    loaded = SteeringVector.load(tmp_path / "caa")
    assert torch.equal(loaded.direction, vector.direction) and loaded.layers == (2,) and loaded.model_name == model.name
    with pytest.raises(FileExistsError):
        vector.save(tmp_path / "caa")
    with pytest.raises(ValueError, match="differ in layers"):
        vector + vector.at(0)
    assert torch.allclose((3 * vector - vector).direction, 2 * vector.direction)


def test_from_probe_uses_the_unit_raw_space_direction():
    from sklearn.linear_model import LogisticRegression

    generator = torch.Generator().manual_seed(0)
    X = torch.randn(200, 8, generator=generator)
    y = (X[:, 0] - X[:, 1] > 0).long()
    probe = LogisticRegression().fit(X.numpy(), y.numpy())
    vector = SteeringVector.from_probe(probe, layer=3)
    w = torch.tensor(probe.coef_[0], dtype=torch.float32)
    assert torch.allclose(vector.direction, w / w.norm(), atol=1e-6)
    assert vector.probe_weight_norm == pytest.approx(float(w.norm()), rel=1e-5)
    assert vector.layers == (3,)
