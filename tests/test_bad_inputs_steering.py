"""Bad inputs to steering, hooks and generation: refused at the call with a message naming the problem and the fix.

Call-time refusals are checked to run no forward pass and to leave no hook behind; errors
raised during a forward (inside a block or a site function) to leave the model computing
exactly what it computed before. Also: numpy / 0-d tensor scalars accepted where a number
or a layer is expected, and ``positions=int`` meaning capture's ``position=int``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import pytest
import torch

import steerlab
from steerlab import SteeringVector, steer
from steerlab.hooks import edit, no_leftover_hooks, record
from steerlab.steering import evaluate, steering_sweep

PROMPTS = ["q : where is Varo ? a :", "the food was"]  # different lengths: left padding in generation
NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def model():
    return steerlab.load_model("demo")


@pytest.fixture(scope="module")
def forwards(model):
    """A counter of forward passes of the model (a hook of this test module, present in every snapshot)."""
    count = {"n": 0}
    handle = model.hf_model.register_forward_pre_hook(lambda module, args: count.__setitem__("n", count["n"] + 1))
    yield count
    handle.remove()


def vector_for(model, layer: Any = 1, scale: float = 4.0, seed: int = 1, **fields: Any) -> SteeringVector:
    direction = torch.randn(model.d_model, generator=torch.Generator().manual_seed(seed)) * scale
    return SteeringVector(direction, layers=layer, model_name=model.name, **fields)


def probe_vector(model, **fields: Any) -> SteeringVector:
    """A vector as from_probe builds it (unit direction, weight norm, intercept)."""
    defaults = dict(probe_weight_norm=2.0, probe_intercept=-1.0)
    return vector_for(model, scale=1.0 / 11.3, **{**defaults, **fields})


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.forward(model.tokenize(PROMPTS))


def refused(model, forwards, error: type[Exception], match: str, call: Callable[[], Any]) -> None:
    """``call`` raises ``error`` matching ``match``, before any forward pass and leaving no hook."""
    snapshot, count = model.hook_snapshot(), forwards["n"]
    with pytest.raises(error, match=match):
        call()
    assert forwards["n"] == count, "the refusal came after a forward pass"
    assert model.hook_snapshot() == snapshot


def enter_steer(model, vectors: Any = None, **kwargs: Any) -> None:
    with steer(model, vector_for(model) if vectors is None else vectors, **kwargs):
        pass


# ---------------------------------------------------------------- steer(): refused at the call

STEER_CASES = [
    # alpha
    ("alpha nan", dict(alpha=NAN), ValueError, "alpha is nan: it must be a finite number"),
    ("alpha inf", dict(alpha=INF), ValueError, "alpha is inf: it must be a finite number"),
    ("alpha numpy nan", dict(alpha=np.float32(NAN)), ValueError, "alpha is nan"),
    ("alpha 0-d tensor -inf", dict(alpha=torch.tensor(-INF)), ValueError, "alpha is -inf"),
    ("alpha string", dict(alpha="2"), TypeError, "alpha must be a number, got str"),
    ("alpha bool", dict(alpha=True), TypeError, "alpha must be a number, got bool"),
    ("alpha list too long", dict(alpha=[1.0, 2.0]), ValueError, "Got 2 alphas for 1 vectors"),
    ("alpha 2-d array", dict(alpha=np.ones((1, 1))), TypeError,
     r"alpha must be one number, got an array of shape \(1, 1\)"),
    # mode and target
    ("unknown mode", dict(mode="steer"), ValueError, "Unknown mode 'steer': choose one of add, ablate, set, clamp"),
    ("target in add mode", dict(target=0.5), ValueError, "target is only used by mode='set' or 'clamp'"),
    ("target in ablate mode", dict(mode="ablate", target=1.0), ValueError,
     "target is only used by mode='set' or 'clamp'"),
    ("set without target", dict(mode="set"), ValueError, "mode='set' needs target="),
    ("set target nan", dict(mode="set", target=NAN), ValueError, "target is nan: it must be a finite number"),
    ("set target inf", dict(mode="set", target=np.float64(INF)), ValueError, "target is inf"),
    ("set target string", dict(mode="set", target="3"), TypeError, "target must be a number, got str"),
    # positions
    ("positions unknown string", dict(positions="middle"), ValueError,
     "positions must be one of 'all', 'prompt', 'generated', 'last'.*unknown string 'middle'"),
    ("positions reversed range", dict(positions=(3, 1)), ValueError, r"a range needs 0 <= start < end"),
    ("positions negative range", dict(positions=(-2, 4)), ValueError, r"a range needs 0 <= start < end"),
    ("positions float", dict(positions=1.5), ValueError, "positions must be one of.*got 1.5"),
    ("positions bool", dict(positions=True), ValueError, "positions must be one of.*got True"),
    ("positions list", dict(positions=[0, 2]), ValueError, r"positions must be one of.*got \[0, 2\]"),
    # norm units
    ("norm_units without typical_norm", dict(norm_units=True), ValueError,
     "norm_units=True needs a positive vector.typical_norm.*with_typical_norm"),
    ("norm_units not a bool", dict(norm_units="yes"), TypeError, "norm_units must be True or False"),
]


@pytest.mark.parametrize("kwargs, error, match", [case[1:] for case in STEER_CASES],
                         ids=[case[0] for case in STEER_CASES])
def test_steer_arguments_are_refused_at_the_call(model, forwards, kwargs, error, match):
    refused(model, forwards, error, match, lambda: enter_steer(model, **kwargs))


CLAMP_CASES = [
    ("clamp without target", dict(), ValueError, "mode='clamp' needs target="),
    ("clamp target nan", dict(target=NAN), ValueError, "target is nan"),
    ("clamp target inf", dict(target=torch.tensor(INF)), ValueError, "target is inf"),
    ("clamp target above 1", dict(target=1.5), ValueError, "probe probability strictly between 0 and 1, got 1.5"),
    ("clamp target 0", dict(target=0.0), ValueError, "probe probability strictly between 0 and 1, got 0.0"),
    ("clamp target 1", dict(target=1), ValueError, "probe probability strictly between 0 and 1, got 1.0"),
]


@pytest.mark.parametrize("kwargs, error, match", [case[1:] for case in CLAMP_CASES],
                         ids=[case[0] for case in CLAMP_CASES])
def test_clamp_targets_are_refused_at_the_call(model, forwards, kwargs, error, match):
    refused(model, forwards, error, match, lambda: enter_steer(model, probe_vector(model), mode="clamp", **kwargs))


@pytest.mark.parametrize("fields", [dict(probe_weight_norm=None), dict(probe_weight_norm=0.0),
                                    dict(probe_intercept=None), dict(probe_weight_norm=NAN)],
                         ids=["no weight norm", "weight norm 0", "no intercept", "weight norm nan"])
def test_clamp_needs_a_vector_from_a_probe(model, forwards, fields):
    vector = probe_vector(model, **fields)
    refused(model, forwards, ValueError, "needs a vector built from a probe.*SteeringVector.from_probe",
            lambda: enter_steer(model, vector, mode="clamp", target=0.9))


def test_vectors_for_another_model_are_refused_naming_both(model, forwards):
    wide = SteeringVector(torch.ones(model.d_model + 1), layers=0, model_name="gpt2")
    refused(model, forwards, ValueError, r"d_model=129 \(built on 'gpt2'\) but 'demo' has d_model=128",
            lambda: enter_steer(model, wide))
    renamed = dataclasses.replace(vector_for(model), model_name="EleutherAI/pythia-70m")
    refused(model, forwards, ValueError, "built on 'EleutherAI/pythia-70m', not 'demo'",
            lambda: enter_steer(model, renamed))


@pytest.mark.parametrize("vectors, error, match", [
    (lambda m: torch.ones(m.d_model), TypeError,
     "vectors must be a SteeringVector or a list.*SteeringVector\\(direction"),
    (lambda m: [], ValueError, "No steering vectors given"),
    (lambda m: [vector_for(m), "v"], TypeError, "Every steering vector must be a SteeringVector, got str"),
    (lambda m: vector_for(m, layer=9), ValueError, "Layer 9 is out of range: the model has 4 layers"),
    (lambda m: vector_for(m, site="resid_mid"), ValueError, "Cannot steer at 'resid_mid': it is read-only"),
    (lambda m: vector_for(m) - vector_for(m), ValueError, "direction is all zeros"),
], ids=["a raw tensor", "no vectors", "a string among vectors", "layer out of range", "read-only site",
        "zero direction"])
def test_bad_vectors_are_refused_at_the_call(model, forwards, vectors, error, match):
    refused(model, forwards, error, match, lambda: enter_steer(model, vectors(model)))


def test_a_model_not_loaded_by_steerlab_is_refused(model, forwards):
    refused(model, forwards, TypeError, "steer needs a model loaded by steerlab, got GPT2LMHeadModel.*load_model",
            lambda: enter_steer(model.hf_model, vector_for(model)))


# ---------------------------------------------------------------- SteeringVector, record, edit, generate, evaluate


@pytest.mark.parametrize("layers, error, match", [
    ("1", TypeError, "got the string '1'"),
    (1.5, TypeError, "layers must be an int or a list of ints, got float"),
    ([1.5], TypeError, r"A layer must be an int, got float \(1.5\)"),
    ([], ValueError, "needs at least one layer"),
    (True, TypeError, r"layers must be an int or a list of ints, got bool \(True\)"),
], ids=["string", "float", "float in a list", "empty", "bool"])
def test_bad_vector_layers_are_refused(model, layers, error, match):
    with pytest.raises(error, match=match):
        vector_for(model, layer=layers)


def test_scaling_a_vector_by_nan_is_refused(model):
    with pytest.raises(ValueError, match="Cannot scale a steering vector by nan"):
        vector_for(model) * NAN


@pytest.mark.parametrize("call, error, match", [
    (lambda m: record(m, "resid_psot", layers=[1]), ValueError, "Unknown site 'resid_psot'"),
    (lambda m: record(m, "resid_post", layers=1.5), TypeError, "layers must be an int, a list of ints or None"),
    (lambda m: record(m, "resid_post", layers=[7]), ValueError, "Layer 7 is out of range"),
    (lambda m: edit(m, lambda h, point: h, site="resid_mid"), ValueError, "Cannot edit 'resid_mid': it is read-only"),
    (lambda m: edit(m, "h + 1", layers=[1]), TypeError, "fn must be a function"),
    (lambda m: record(m.hf_model, "resid_post"), TypeError, "Expected a model loaded by steerlab"),
], ids=["unknown site", "float layers", "layer out of range", "edit read-only site", "edit fn not callable",
        "raw hf model"])
def test_bad_record_and_edit_arguments_are_refused_at_the_call(model, forwards, call, error, match):
    def enter() -> None:
        with call(model):
            pass
    refused(model, forwards, error, match, enter)


@pytest.mark.parametrize("prompt, max_new_tokens, match", [
    ("a " * 70, 3, r"Prompt 1 has 7\d tokens; with max_new_tokens=3 .* context length of 64 tokens: shorten it to "
                   "at most 61 tokens"),
    ("a " * 40, 30, r"Prompt 1 has 4\d tokens; with max_new_tokens=30 .* context length of 64 tokens: shorten it to "
                    "at most 34 tokens, or lower max_new_tokens to 2\\d"),
], ids=["prompt longer than the context", "prompt plus new tokens past the context"])
def test_generation_past_the_context_is_refused_naming_the_prompt(model, forwards, prompt, max_new_tokens, match):
    refused(model, forwards, ValueError, match,
            lambda: model.generate(["short prompt", prompt], max_new_tokens=max_new_tokens))


def test_bad_max_new_tokens_is_refused(model, forwards):
    refused(model, forwards, ValueError, "max_new_tokens must be at least 1, got 0",
            lambda: model.generate(PROMPTS, max_new_tokens=0))
    refused(model, forwards, TypeError, "max_new_tokens must be an int, got float",
            lambda: model.generate(PROMPTS, max_new_tokens=2.5))


def test_bad_evaluation_inputs_are_refused(model, forwards):
    efficacy = lambda m: 0.0  # noqa: E731
    refused(model, forwards, ValueError, "alpha is nan",
            lambda: evaluate(model, vector_for(model), NAN, efficacy, ["some text"]))
    refused(model, forwards, TypeError, "neutral_texts must be a list of strings, got str",
            lambda: evaluate(model, vector_for(model), 1.0, efficacy, "some text"))
    refused(model, forwards, ValueError, "alphas is empty",
            lambda: steering_sweep(model, vector_for(model), [], efficacy, ["some text"], progress=False))
    refused(model, forwards, TypeError, "efficacy must be a function",
            lambda: steering_sweep(model, vector_for(model), [1.0], 0.5, ["some text"], progress=False))


# ---------------------------------------------------------------- numpy and tensor scalars work


def test_numpy_and_tensor_alphas_give_the_float_result(model):
    vector = vector_for(model)
    with steer(model, vector, alpha=2.5):
        expected = logits(model)
    for alpha in (np.float32(2.5), np.float64(2.5), torch.tensor(2.5), np.array(2.5), [np.float32(2.5)]):
        with steer(model, vector, alpha=alpha):
            assert torch.equal(logits(model), expected), type(alpha)


def test_numpy_layers_work_everywhere(model):
    layer = np.int64(1)
    with steer(model, vector_for(model, layer=1)):
        expected = logits(model)
    for vector in (vector_for(model, layer=layer), vector_for(model, layer=[layer]),
                   vector_for(model, layer=0).at(layer), vector_for(model, layer=np.array([1]))):
        assert vector.layers == (1,) and type(vector.layers[0]) is int
        with steer(model, vector, positions=np.int64(0)):
            pass
        with steer(model, vector):
            assert torch.equal(logits(model), expected)
    with record(model, "resid_post", layers=layer) as recorded:
        logits(model)
    assert list(recorded) == ["blocks.1.hook_resid_post"]
    with edit(model, lambda h, point: h, layers=np.array([1, 2])):
        assert torch.equal(logits(model), logits(model))


def test_from_probe_accepts_a_numpy_layer(model):
    class Probe:  # a per-layer probe, as steerlab's fit at several layers leaves it
        coef_ = np.random.default_rng(0).normal(size=(2, model.d_model))
        intercept_ = np.array([0.5, -0.5])
        layers_ = [1, 2]

    vector = SteeringVector.from_probe(Probe(), layer=np.int64(2))
    assert vector.layers == (2,) and vector.probe_intercept == -0.5


# ---------------------------------------------------------------- positions=int: capture's meaning


def _steered_minus_plain(model, positions: Any, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[rows]`` size of the change of layer 1's resid_post, with each row's token and text index (capture's)."""
    plain = steerlab.capture(model, texts, layers=[1], position="all", progress=False)
    with steer(model, vector_for(model, layer=1), alpha=1.0, positions=positions):
        steered = steerlab.capture(model, texts, layers=[1], position="all", progress=False)
    return (steered.values[:, 0] - plain.values[:, 0]).norm(dim=-1), plain.token_index, plain.sequence_index


@pytest.mark.parametrize("k", [0, 2, -1, -2])
def test_int_positions_edit_the_kth_token_like_capture(model, k):
    change, token, sequence = _steered_minus_plain(model, k, PROMPTS)
    lengths = torch.bincount(sequence)
    wanted = token == (k if k >= 0 else lengths[sequence] + k)
    assert (change[wanted] > 1).all() and (change[~wanted] < 1e-4).all()


def test_int_positions_in_left_padded_generation_steer_the_prompt_pass_only(model):
    with steer(model, vector_for(model, layer=1), alpha=8.0, positions=-1) as stats:
        with record(model, "resid_post", layers=[1]) as steered:
            model.generate(PROMPTS, max_new_tokens=3)
    with record(model, "resid_post", layers=[1]) as plain:
        model.generate(PROMPTS, max_new_tokens=1)
    first = (steered["blocks.1.hook_resid_post"][0] - plain["blocks.1.hook_resid_post"][0]).norm(dim=-1)
    edited = first > 1  # [batch, pos], left padded: the last column is each prompt's last token
    assert edited.tolist() == [[False] * (edited.shape[1] - 1) + [True]] * 2
    assert stats.forwards == 3 and stats.edited_tokens == 2  # nothing during the two cached steps


def test_an_int_position_past_a_text_is_an_error_and_cleans_up(model):
    before, snapshot = logits(model), model.hook_snapshot()
    for k in (4, -5):  # "the food was" is 4 tokens: <bos> the food was
        message = rf"positions={k} is outside a text of 4 tokens \(row 1 of this batch\): use -4..3"
        with pytest.raises(ValueError, match=message):
            with steer(model, vector_for(model), positions=k):
                model.generate(PROMPTS, max_new_tokens=2)
    assert model.hook_snapshot() == snapshot and torch.equal(logits(model), before)


# ---------------------------------------------------------------- the model is restored after errors


def test_errors_inside_a_block_or_a_site_function_leave_the_model_unchanged(model):
    before, snapshot = logits(model), model.hook_snapshot()
    with pytest.raises(KeyError, match="user code"):
        with steer(model, vector_for(model), alpha=3.0):
            assert not torch.equal(logits(model), before)
            raise KeyError("user code")
    assert model.hook_snapshot() == snapshot and torch.equal(logits(model), before)

    def broken(h: torch.Tensor, point: Any) -> torch.Tensor:
        raise ZeroDivisionError("inside a site function")

    with pytest.raises(ZeroDivisionError, match="inside a site function"):
        with steer(model, vector_for(model, layer=0), alpha=3.0), edit(model, broken, layers=[2]):
            model.generate(PROMPTS, max_new_tokens=2)
    with pytest.raises(ValueError, match="returned shape"):
        with edit(model, lambda h, point: h[:, :1], layers=[1]):
            logits(model)
    assert model.hook_snapshot() == snapshot and torch.equal(logits(model), before)


def test_a_fresh_transformer_lens_model_has_no_leftover_hooks_but_a_users_hook_is_found():
    model = steerlab.load_model("demo", backend="transformer_lens")
    with no_leftover_hooks(model):  # the bridge wires its own capture hooks on the first forward
        model.generate(["the food was"], max_new_tokens=2)
    with no_leftover_hooks(model):
        with steer(model, vector_for(model)):
            model.generate(["the food was"], max_new_tokens=2)
    with pytest.raises(RuntimeError, match="1 hook\\(s\\) left behind on: blocks.0._forward_hooks"):
        with no_leftover_hooks(model):
            handle = model.tl_model.blocks[0].register_forward_hook(lambda *args: None)
    handle.remove()
    with pytest.raises(RuntimeError, match="1 hook\\(s\\) left behind on: blocks.1.hook_"):
        with no_leftover_hooks(model):
            model.tl_model.blocks[1].hook_resid_post.add_hook(lambda activation, hook: None)
    model.tl_model.reset_hooks()
