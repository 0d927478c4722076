"""Models dispatched with a transformers ``device_map`` that offloads modules to disk (accelerate).

The demo model (GPT-2 architecture) is loaded with its embeddings and LM head (tied) on
``"disk"`` and the blocks on ``"cpu"``: the offloaded parameters are ``meta`` tensors that
accelerate streams in at each forward. Capture, steering and generation must equal the
model loaded normally, on every backend that can run it.
"""

import pytest
import torch

import steerlab
from steerlab import SteeringVector
from steerlab.models.loading import input_device

PROMPTS = ["q : where is Varo ? a :", "q : where is Tessa ? a :", "Varo is in"]
DISK_MAP = {"transformer.wte": "disk", "transformer.wpe": "cpu", "transformer.h": "cpu",
            "transformer.ln_f": "cpu", "lm_head": "disk"}


def _load_pair(backend, folder):
    plain = steerlab.load_model("demo", backend=backend)
    offloaded = steerlab.load_model("demo", backend=backend, device_map=DISK_MAP, offload_folder=str(folder))
    return plain, offloaded


@pytest.mark.parametrize("backend", ["hf", "nnsight"])
def test_disk_offloaded_model_equals_the_plain_one(backend, tmp_path):
    plain, offloaded = _load_pair(backend, tmp_path)
    # Really offloaded: the embeddings hold no data here, yet inputs go to the cpu they compute on.
    assert offloaded.hf_model.get_input_embeddings().weight.device.type == "meta"
    assert offloaded.device == torch.device("cpu")
    assert "meta" not in repr(offloaded)

    reference = steerlab.capture(plain, PROMPTS, position="all", progress=False)
    acts = steerlab.capture(offloaded, PROMPTS, position="all", progress=False)
    assert acts.values.shape == reference.values.shape
    assert torch.allclose(acts.values, reference.values, atol=1e-5, rtol=0)

    vector = SteeringVector(torch.randn(plain.d_model, generator=torch.Generator().manual_seed(0)), layers=(1, 2),
                            model_name=plain.name)
    batch = plain.tokenize(PROMPTS)
    for mode, kwargs in [("add", {"alpha": 4.0}), ("ablate", {}), ("set", {"target": 1.5})]:
        with steerlab.steer(plain, vector, mode=mode, **kwargs):
            expected = plain.forward(batch)
        with steerlab.steer(offloaded, vector, mode=mode, **kwargs):
            logits = offloaded.forward(batch)
        assert torch.allclose(logits, expected, atol=1e-4, rtol=0), mode
        assert not torch.allclose(logits, plain.forward(batch), atol=1e-2), f"{mode} steered nothing"

    assert offloaded.generate(PROMPTS, max_new_tokens=4) == plain.generate(PROMPTS, max_new_tokens=4)
    with steerlab.steer(plain, vector, alpha=8.0):
        steered = plain.generate(PROMPTS, max_new_tokens=4)
    with steerlab.steer(offloaded, vector, alpha=8.0):
        assert offloaded.generate(PROMPTS, max_new_tokens=4) == steered
    assert steered != plain.generate(PROMPTS, max_new_tokens=4)


def test_transformer_lens_refuses_disk_offload_before_booting(tmp_path):
    with pytest.raises(ValueError, match="transformer_lens backend cannot run a model offloaded to disk.*backend='hf'"):
        steerlab.load_model("demo", backend="transformer_lens", device_map=DISK_MAP, offload_folder=str(tmp_path))


def test_input_device_follows_accelerate_execution_devices():
    hf_model = steerlab.load_model("demo").hf_model
    assert input_device(hf_model) is None  # no device_map: the caller uses the parameters' device
    cases = [
        ({"": "cpu"}, "cpu"),
        (DISK_MAP, "cpu"),  # only cpu and disk: accelerate computes on cpu
        ({"transformer.wte": "disk", "transformer.h": "cuda:1", "lm_head": "cpu"}, "cuda:1"),  # offloaded: the main device
        ({"transformer": "cuda:0", "lm_head": "cpu"}, "cuda:0"),  # a parent module's entry
        ({"transformer.wte": "cuda:1", "transformer.h": "cuda:0"}, "cuda:1"),  # the embedding's own device
    ]
    try:
        for device_map, expected in cases:
            hf_model.hf_device_map = device_map  # read only: nothing is moved
            assert input_device(hf_model) == torch.device(expected), device_map
    finally:
        del hf_model.hf_device_map
