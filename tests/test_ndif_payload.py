"""The payloads nnsight ships to NDIF for steerlab's capture, steering and generation reference only modules NDIF has.

NDIF deserializes a trace where steerlab is not installed, and its sandbox admits only a
whitelist of modules. These tests build each payload with nnsight's own remote serialization
(``RequestModel.serialize``, what ``RemoteBackend`` sends), list every module the pickle
imports (its GLOBAL / STACK_GLOBAL opcodes), and run the serialized block locally so the
values can be compared with the local hf backend. The same payloads go through a server in a
process without steerlab in tests/test_ndif_loopback.py. Real NDIF was not reachable from
the test machines.
"""

import pickletools

import pytest
import torch
from nnsight.schema.request import RequestModel
from nnsight.tracing.backend import Backend

import steerlab
from steerlab.steering.vector import SteeringVector

WHITELIST = {"torch", "numpy", "math", "einops", "typing", "nnsight", "builtins", "collections",
             "transformers", "accelerate",
             "copyreg", "_codecs",  # pickle's own helpers
             "cloudpickle"}  # nnsight's serializer: a plain nnsight trace's payload imports it too
TEXTS = ["q : where is Varo ? a :", "Varo is in", "q : where is Tessa ? a :"]
# The files whose names ride in a payload as text (tracebacks): the traced block's, and the
# module shipped by value (as source) whose torch-only functions apply the plain edits.
SHIPPED_FILES = (b"steerlab/models/adapter.py", b"steerlab/models/remote_edits.py")


def _imported_globals(payload: bytes) -> set[tuple[str, str]]:
    """Every ``(module, name)`` a pickle imports (GLOBAL, and STACK_GLOBAL with memo lookups followed)."""
    found, memo, pushed = set(), {}, []
    for opcode, arg, _ in pickletools.genops(payload):
        name = opcode.name
        if name == "GLOBAL":
            found.add(tuple(arg.split(" ", 1)))
        elif name == "STACK_GLOBAL":
            found.add((pushed[-2], pushed[-1]))
        if name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = pushed[-1] if pushed else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(arg))
        elif "UNICODE" in name or name in ("STRING", "BINSTRING", "SHORT_BINSTRING"):
            pushed.append(arg)
        else:
            pushed.append(None)
    return found


def assert_only_ndif_modules(payload: bytes) -> None:
    """The payload imports nothing outside the whitelist, and names steerlab only as the shipped files' names."""
    roots = {module.split(".")[0] for module, _ in _imported_globals(payload)}
    assert roots <= WHITELIST, f"payload imports modules outside NDIF's whitelist: {sorted(roots - WHITELIST)}"
    assert payload.count(b"steerlab") == sum(payload.count(name) for name in SHIPPED_FILES)


class PayloadBackend(Backend):
    """Serialize each trace exactly as ``RemoteBackend`` would, keep the payload, then run it here."""

    def __init__(self):
        self.payloads: list[bytes] = []

    def __call__(self, tracer) -> None:
        self.payloads.append(RequestModel.serialize(tracer))
        tracer.execute(tracer.info.code)


@pytest.fixture(scope="module")
def local():
    return steerlab.load_model("demo", backend="hf")


@pytest.fixture()
def remote():
    backend = PayloadBackend()
    return steerlab.load_model("demo", backend="nnsight", remote=backend), backend


def test_the_payload_scan_catches_a_steerlab_reference(remote):
    model, backend = remote
    with model.nnsight_model.trace(TEXTS[0], backend=backend):
        model.point("resid_post", 0)  # steerlab code inside the traced block: the adapter is pickled
        model.nnsight_model.transformer.h[0].output.save()
    with pytest.raises(AssertionError, match="outside NDIF's whitelist: \\['steerlab'"):
        assert_only_ndif_modules(backend.payloads[-1])


def test_capture_payload_references_only_ndif_modules(local, remote):
    model, backend = remote
    expected = steerlab.capture(local, TEXTS, layers=[0, 2], position="all", progress=False)
    # Built from the config only: every parameter on meta, no weights loaded.
    assert {parameter.device.type for parameter in model.nnsight_model._module.parameters()} == {"meta"}
    assert model.device == torch.device("cpu")  # inputs are shipped from here
    acts = steerlab.capture(model, TEXTS, layers=[0, 2], position="all", progress=False)

    assert backend.payloads, "the capture never went through the remote backend"
    for payload in backend.payloads:
        assert_only_ndif_modules(payload)
    assert torch.equal(acts.values, expected.values)  # the values came back through .save()


def _vector(model) -> SteeringVector:
    generator = torch.Generator().manual_seed(0)
    return SteeringVector(torch.randn(model.d_model, generator=generator), layers=[1, 2], model_name="demo",
                          probe_weight_norm=2.0, probe_intercept=-0.5)


STEERING = [("add", {"alpha": 3.0, "positions": "all"}), ("add", {"alpha": -2.0, "positions": (1, None)}),
            ("ablate", {"positions": "last"}), ("set", {"target": 2.0, "positions": -1}),
            ("clamp", {"target": 0.9, "positions": "all"}), ("clamp", {"target": 0.05, "positions": "prompt"})]


@pytest.mark.parametrize("mode, kwargs", STEERING, ids=[f"{m}-{k['positions']}" for m, k in STEERING])
def test_steering_payload_references_only_ndif_modules_and_equals_local(local, remote, mode, kwargs):
    model, backend = remote
    vector, batch = _vector(local), local.tokenize(TEXTS)
    with steerlab.steer(local, vector, mode=mode, **kwargs) as local_stats:
        expected = local.forward(batch)
    with steerlab.steer(model, vector, mode=mode, **kwargs) as stats:
        logits = model.forward(batch)
    assert len(backend.payloads) == 1
    assert_only_ndif_modules(backend.payloads[0])
    assert torch.equal(logits, expected)
    assert (stats.forwards, stats.edited_tokens) == (local_stats.forwards, local_stats.edited_tokens)
    if mode == "clamp":  # the probe logits after the edit came back through .save() too
        assert torch.equal(torch.cat(stats.clamp_logits_after), torch.cat(local_stats.clamp_logits_after))


def test_generation_with_steering_payload_references_only_ndif_modules_and_equals_local(local, remote):
    model, backend = remote
    vector = _vector(local)
    with steerlab.steer(local, vector, alpha=4.0, positions="generated"):
        expected = local.generate(TEXTS, max_new_tokens=5)
    with steerlab.steer(model, vector, alpha=4.0, positions="generated"):
        answers = model.generate(TEXTS, max_new_tokens=5)
    assert backend.payloads
    for payload in backend.payloads:
        assert_only_ndif_modules(payload)
    assert answers == expected
    assert answers != local.generate(TEXTS, max_new_tokens=5)  # the steering did change them


def test_nnsight_local_simulation_runs_capture_and_steered_generation(local):
    # remote="local": nnsight serializes and deserializes each trace as for NDIF, then runs it here.
    simulated = steerlab.load_model("demo", backend="nnsight", remote="local")
    expected = steerlab.capture(local, TEXTS, layers=[1, 3], progress=False)
    assert torch.equal(steerlab.capture(simulated, TEXTS, layers=[1, 3], progress=False).values, expected.values)
    vector = _vector(local)
    with steerlab.steer(local, vector, alpha=4.0):
        answers = local.generate(TEXTS, max_new_tokens=4)
    with steerlab.steer(simulated, vector, alpha=4.0):
        assert simulated.generate(TEXTS, max_new_tokens=4) == answers


def test_a_custom_editing_site_function_is_refused_remotely(remote):
    model, _ = remote
    point = model.point("resid_post", 1)
    with pytest.raises(ValueError, match="only steerlab.steer's edits"):
        model.forward(model.tokenize(TEXTS), [(point, lambda h: h * 2)])
    seen = []
    model.forward(model.tokenize(TEXTS), [(point, seen.append)])  # a reading function runs here, on the saved value
    assert seen[0].shape == (len(TEXTS), model.tokenize(TEXTS).input_ids.shape[1], model.d_model)


EDITED_MID_RUN = """
import sys, torch, steerlab
from pathlib import Path
assert steerlab.__file__.startswith(sys.argv[1]), steerlab.__file__  # the copy, not the checkout
model = steerlab.load_model("demo", backend="nnsight")
adapter = Path(sys.argv[1]) / "steerlab" / "models" / "adapter.py"
adapter.write_text("# an edit made while this process runs\\n" * 7 + adapter.read_text())  # every line moves
batch = model.tokenize(["q : where is Varo ? a :"])
print("logits", tuple(model.forward(batch).shape))  # the first nnsight trace entered from adapter.py
"""


def test_a_trace_still_runs_after_adapter_py_changed_on_disk(tmp_path):
    # The cause of this file's earlier order-dependent failure: nnsight finds a traced `with` block by
    # reading the caller's source file when the block is first entered. When adapter.py had been edited
    # since import (other engineers edited it while the suite ran), nothing matched the running code's
    # line numbers: WithBlockNotFoundError. steerlab pins its source at import (models/source_pin.py).
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import steerlab.models.loading

    shutil.copytree(Path(steerlab.__file__).parent, tmp_path / "steerlab", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "STEERLAB_DEMO_MODEL": str(steerlab.models.loading.demo_model_path())}
    result = subprocess.run([sys.executable, "-c", EDITED_MID_RUN, str(tmp_path)], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "logits (1, " in result.stdout
