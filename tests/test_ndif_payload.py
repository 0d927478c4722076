"""The payload nnsight ships to NDIF for a steerlab capture references only modules NDIF has.

NDIF deserializes a trace where steerlab is not installed, and its sandbox admits only a
whitelist of modules. This test builds the payload with nnsight's own remote serialization
(``RequestModel.serialize``, what ``RemoteBackend`` sends), lists every module the pickle
imports (its GLOBAL / STACK_GLOBAL opcodes), and runs the serialized block locally so the
captured values can be compared with the ordinary local capture. No server is involved: real
NDIF was not reachable from the test machines.
"""

import pickletools

import torch
from nnsight.schema.request import RequestModel
from nnsight.tracing.backend import Backend

import steerlab

WHITELIST = {"torch", "numpy", "math", "einops", "typing", "nnsight", "builtins", "collections",
             "transformers", "accelerate",
             "copyreg", "_codecs",  # pickle's own helpers
             "cloudpickle"}  # nnsight's serializer: a plain nnsight trace's payload imports it too
TEXTS = ["q : where is Varo ? a :", "Varo is in", "q : where is Tessa ? a :"]


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


class PayloadBackend(Backend):
    """Serialize each trace exactly as ``RemoteBackend`` would, keep the payload, then run it here."""

    def __init__(self):
        self.payloads: list[bytes] = []

    def __call__(self, tracer) -> None:
        self.payloads.append(RequestModel.serialize(tracer))
        tracer.execute(tracer.info.code)


def test_capture_payload_references_only_ndif_modules():
    local = steerlab.load_model("demo", backend="nnsight")
    expected = steerlab.capture(local, TEXTS, layers=[0, 2], position="all", progress=False)

    backend = PayloadBackend()
    remote = steerlab.load_model("demo", backend="nnsight", remote=backend)
    # Built from the config only: every parameter on meta, no weights loaded.
    assert {parameter.device.type for parameter in remote.nnsight_model._module.parameters()} == {"meta"}
    assert remote.device == torch.device("cpu")  # inputs are shipped from here
    acts = steerlab.capture(remote, TEXTS, layers=[0, 2], position="all", progress=False)

    assert backend.payloads, "the capture never went through the remote backend"
    for payload in backend.payloads:
        roots = {module.split(".")[0] for module, _ in _imported_globals(payload)}
        assert roots <= WHITELIST, f"payload imports modules outside NDIF's whitelist: {sorted(roots - WHITELIST)}"
        # steerlab's name appears once, as text: the traced block's file name (for tracebacks).
        assert payload.count(b"steerlab") == payload.count(b"steerlab/models/adapter.py") == 1
    assert torch.equal(acts.values, expected.values)  # the values came back through .save()
