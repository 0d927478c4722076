"""Remote capture, steering and generation through nnsight's real remote protocol, to a server without steerlab.

tests/ndif_loopback_server.py speaks nnsight 0.8.1's remote protocol (websocket
``/subscribe`` + HTTP ``POST /request``, results as a COMPLETED binary frame) and runs each
request the way a server does (``RequestModel.deserialize`` + ``tracer.execute``), on the
demo model, in a separate ``python -I`` process where ``import steerlab`` fails and the
payload may only reference whitelisted modules. The client is unchanged nnsight
(``remote="http://127.0.0.1:PORT"``). Every result must equal the local hf backend's.
Real NDIF was not reachable from the test machines: this is the protocol, not the service.
"""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch

import steerlab
from steerlab.models.loading import demo_model_path
from steerlab.steering.vector import SteeringVector

pytest.importorskip("tornado")  # the loopback server's HTTP + websocket server
pytest.importorskip("websocket")  # nnsight's client (websocket-client)

SERVER = Path(__file__).with_name("ndif_loopback_server.py")
TEXTS = ["q : where is Varo ? a :", "Varo is in", "q : where is Tessa ? a :"]


@pytest.fixture(scope="module")
def host():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-I", str(SERVER), str(demo_model_path())], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in process.stdout:  # the model loads first: wait for "PORT n"
            lines.append(line)
            if line.startswith("PORT "):
                break
        else:
            pytest.fail("the loopback server exited before listening:\n" + "".join(lines[-40:]))
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.fixture(scope="module")
def local():
    return steerlab.load_model("demo", backend="hf")


@pytest.fixture(scope="module")
def remote(host):
    return steerlab.load_model("demo", backend="nnsight", remote=host)


def _server_modules(host: str) -> set[str]:
    with urllib.request.urlopen(f"{host}/env", timeout=60) as response:
        return set(json.load(response)["modules"])


def test_the_server_cannot_import_steerlab_and_refuses_a_payload_that_needs_it(host, remote):
    from nnsight.intervention.backends.remote import RemoteError

    with pytest.raises(RemoteError, match="steerlab is not on the server's whitelist"):
        with remote.nnsight_model.trace(TEXTS[0], remote=host):
            remote.point("resid_post", 0)  # steerlab code in the traced block: the adapter is pickled into it
            remote.nnsight_model.transformer.h[0].output.save()
    assert "steerlab" not in _server_modules(host)


def test_remote_capture_equals_local(local, remote):
    expected = steerlab.capture(local, TEXTS, layers=[0, 2, 3], position="all", progress=False)
    acts = steerlab.capture(remote, TEXTS, layers=[0, 2, 3], position="all", progress=False)
    assert torch.equal(acts.values, expected.values)


def _vector(model) -> SteeringVector:
    generator = torch.Generator().manual_seed(1)
    return SteeringVector(torch.randn(model.d_model, generator=generator), layers=[1, 2], model_name="demo",
                          probe_weight_norm=1.5, probe_intercept=0.25)


STEERING = [("add", {"alpha": 3.0, "positions": "last"}), ("ablate", {"positions": "all"}),
            ("set", {"target": -1.0, "positions": (2, None)}), ("clamp", {"target": 0.95, "positions": "all"})]


@pytest.mark.parametrize("mode, kwargs", STEERING, ids=[mode for mode, _ in STEERING])
def test_remote_steering_equals_local(host, local, remote, mode, kwargs):
    vector, batch = _vector(local), local.tokenize(TEXTS)
    with steerlab.steer(local, vector, mode=mode, **kwargs):
        expected = local.forward(batch)
    with steerlab.steer(remote, vector, mode=mode, **kwargs):
        logits = remote.forward(batch)
    assert torch.equal(logits, expected)
    assert not torch.equal(logits, local.forward(batch))  # the edit reached the server
    assert "steerlab" not in _server_modules(host)


def test_remote_generation_with_steering_equals_local(host, local, remote):
    vector = _vector(local)
    with steerlab.steer(local, vector, alpha=4.0, positions="generated"):
        expected = local.generate(TEXTS, max_new_tokens=6)
    with steerlab.steer(remote, vector, alpha=4.0, positions="generated"):
        answers = remote.generate(TEXTS, max_new_tokens=6)
    assert answers == expected
    assert answers != local.generate(TEXTS, max_new_tokens=6)
    assert remote.generate(TEXTS, max_new_tokens=6) == local.generate(TEXTS, max_new_tokens=6)  # unsteered too
    assert "steerlab" not in _server_modules(host)
