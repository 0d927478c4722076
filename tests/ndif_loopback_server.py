"""A loopback NDIF: nnsight 0.8.1's remote protocol, served on 127.0.0.1 from a local model.

Run as ``python -I tests/ndif_loopback_server.py MODEL_DIR`` (``-I``: no script directory,
no PYTHONPATH on ``sys.path``). It prints ``PORT <n>`` once it listens; point nnsight at it
with ``remote="http://127.0.0.1:<n>"`` (or ``CONFIG.API.HOST``).

As on NDIF, steerlab cannot be imported here: an import hook refuses ``steerlab`` and
its submodules before anything else runs (the venv's editable install would otherwise
find it), and ``GET /env`` lists the top-level modules loaded so a test can check that
none of steerlab's ever was. The payload is unpickled with a whitelist of module roots
(NDIF's sandbox admits torch, numpy, math, einops, nnsight...), so a trace referencing
anything else fails here as it would there.

The protocol, as nnsight's client speaks it (``nnsight/intervention/backends/remote.py``):

* ``WS /subscribe``: the server's first message is ``{"session_id": ...}``; then status
  updates of the job posted with that session id (``ResponseModel`` JSON text frames), and
  COMPLETED as a binary frame (``ResponseModel.pickle()``) whose ``data`` is the result
  blob: ``torch.save`` of ``{name: saved value}``, zstd-compressed when the request was.
* ``POST /request``: form field ``data`` (the ``RequestModel`` JSON envelope: model key,
  session id, compress flag, env) and file ``blob`` (the serialized trace); answers the
  RECEIVED ``ResponseModel`` (its ``id`` is the job id).
* ``GET /response/<id>``: the job's latest status (the non-blocking client polls it).

A job is run the way a server runs one: ``RequestModel.deserialize`` against this
process's model (its modules resolve the payload's persistent ids), then
``tracer.execute`` as a depth-1 trace, so that only ``.save()``-d values are pushed into
the frame; those are what the client receives.
"""

import importlib.abc
import sys


class _NoSteerlab(importlib.abc.MetaPathFinder):
    """Refuses ``import steerlab`` (NDIF does not have it)."""

    def find_spec(self, name, path=None, target=None):
        if name == "steerlab" or name.startswith("steerlab."):
            raise ModuleNotFoundError(f"No module named {name!r} (the loopback NDIF has no steerlab)", name=name)
        return None


sys.meta_path.insert(0, _NoSteerlab())

import io  # noqa: E402  (after the import hook, on purpose)
import json  # noqa: E402
import pickle  # noqa: E402
import threading  # noqa: E402
import uuid  # noqa: E402

import torch  # noqa: E402
import tornado.httpserver  # noqa: E402
import tornado.ioloop  # noqa: E402
import tornado.netutil  # noqa: E402
import tornado.web  # noqa: E402
import tornado.websocket  # noqa: E402
from nnsight import LanguageModel  # noqa: E402
from nnsight.intervention.serialization import CustomCloudUnpickler  # noqa: E402
from nnsight.schema.request import RequestModel  # noqa: E402
from nnsight.schema.response import ResponseModel, Status  # noqa: E402
from nnsight.tracing.tracer import dec, inc  # noqa: E402

# Module roots a payload may reference (NDIF's sandbox whitelist, plus the pickle machinery).
ALLOWED = {"torch", "numpy", "math", "einops", "typing", "nnsight", "builtins", "collections", "transformers",
           "accelerate", "copyreg", "_codecs", "cloudpickle", "functools", "operator"}


class WhitelistUnpickler(CustomCloudUnpickler):
    """nnsight's unpickler, refusing classes and functions from modules outside :data:`ALLOWED`."""

    def find_class(self, module, name):
        if module.split(".")[0] not in ALLOWED:
            raise pickle.UnpicklingError(f"payload references {module}.{name}: {module.split('.')[0]} is not on "
                                         "the server's whitelist")
        return super().find_class(module, name)


class Server:
    """One model, jobs run one at a time in a worker thread, statuses sent on the IOLoop."""

    def __init__(self, model_dir):
        self.model_dir = model_dir
        self.model = LanguageModel(model_dir, dispatch=True)
        self.model._module.eval()
        self.sessions = {}  # session id -> websocket
        self.statuses = {}  # job id -> latest ResponseModel
        self.lock = threading.Lock()
        self.loop = None

    def status(self, job_id, session_id, status, description="", data=None):
        response = ResponseModel(id=job_id, status=status, description=description, data=data)
        self.statuses[job_id] = response
        socket = self.sessions.get(session_id)
        if socket is not None:
            message = response.pickle() if data is not None else response.model_dump_json()
            self.loop.add_callback(socket.write_message, message, binary=data is not None)

    def run(self, job_id, request, blob):
        try:
            self.status(job_id, request.session_id, Status.RUNNING)
            with self.lock, torch.no_grad():
                data = self.execute(request, blob)
            self.status(job_id, request.session_id, Status.COMPLETED, data=data)
        except Exception as error:  # reported to the client, as NDIF does
            self.status(job_id, request.session_id, Status.ERROR, f"{type(error).__name__}: {error}")

    def execute(self, request, blob):
        key = json.loads(request.model_key.split(":", 1)[1])
        if key.get("repo_id") != self.model_dir:
            raise ValueError(f"this server holds {self.model_dir}, not {key.get('repo_id')}")
        self.model._remoteable_set_env(request.env)
        tracer = RequestModel.deserialize(blob, self.model._remoteable_persistent_objects(),
                                          compress=request.compress, unpickler=WhitelistUnpickler)
        frame = tracer.info.frame
        shipped = dict(frame.f_locals)
        inc()  # a depth-1 trace: only .save()-d values are pushed into the frame
        try:
            tracer.execute(tracer.info.code)
        finally:
            dec()
        saves = {name: value for name, value in frame.f_locals.items()
                 if name not in shipped or value is not shipped[name]}
        buffer = io.BytesIO()
        torch.save(saves, buffer)
        data = buffer.getvalue()
        if request.compress:
            import zstandard

            data = zstandard.ZstdCompressor(level=6).compress(data)
        return data


class Subscribe(tornado.websocket.WebSocketHandler):
    def initialize(self, server):
        self.server = server

    def open(self):
        self.session_id = uuid.uuid4().hex
        self.server.sessions[self.session_id] = self
        self.write_message(json.dumps({"session_id": self.session_id}))

    def on_close(self):
        self.server.sessions.pop(self.session_id, None)


class Request(tornado.web.RequestHandler):
    def initialize(self, server):
        self.server = server

    def post(self):
        request = RequestModel.model_validate_json(self.get_body_argument("data"))
        blob = self.request.files["blob"][0]["body"]
        job_id = uuid.uuid4().hex
        received = ResponseModel(id=job_id, status=Status.RECEIVED)
        self.server.statuses[job_id] = received
        self.write(received.model_dump_json())
        threading.Thread(target=self.server.run, args=(job_id, request, blob), daemon=True).start()


class Response(tornado.web.RequestHandler):
    def initialize(self, server):
        self.server = server

    def get(self, job_id):
        response = self.server.statuses.get(job_id)
        if response is None:
            raise tornado.web.HTTPError(404)
        if response.data is not None:  # the non-blocking client reads the result blob out of the JSON
            raise tornado.web.HTTPError(501, "results over GET are not served here; use the websocket")
        self.write(response.model_dump_json())


class Env(tornado.web.RequestHandler):
    def get(self):
        self.write({"modules": sorted({name.split(".")[0] for name in sys.modules}),
                    "python_version": sys.version})


def main(argv):
    server = Server(argv[0])
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    app = tornado.web.Application([
        (r"/subscribe", Subscribe, {"server": server}),
        (r"/request", Request, {"server": server}),
        (r"/response/([0-9a-f]+)", Response, {"server": server}),
        (r"/env", Env),
    ], websocket_max_message_size=1 << 30)
    http = tornado.httpserver.HTTPServer(app, max_buffer_size=1 << 30, max_body_size=1 << 30)
    http.add_sockets(sockets)
    server.loop = tornado.ioloop.IOLoop.current()
    print(f"PORT {sockets[0].getsockname()[1]}", flush=True)
    server.loop.start()


if __name__ == "__main__":
    main(sys.argv[1:])
