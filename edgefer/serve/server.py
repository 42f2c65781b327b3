"""The HTTP server of ``edgefer serve``: the KServe v2 / Triton HTTP protocol on the standard library's threaded
HTTP server (one thread per connection, HTTP/1.1 keep-alive), models run by ``edgefer.runtime`` behind a dynamic
batcher each.

Endpoints: ``GET /v2`` (server metadata), ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/<name>``
(metadata), ``/v2/models/<name>/ready``, ``/v2/models/<name>/config`` (Triton's model configuration as JSON, with
the edgefer spec in ``parameters``), ``POST /v2/models/<name>/infer`` (``/versions/<v>/`` before each model
endpoint is accepted too) and ``GET /metrics`` (Prometheus text, Triton's metric names). Errors are
``{"error": "..."}`` with a 4xx status for a bad request (5xx only for a failed inference or a server stopping).
"""

from __future__ import annotations

import json
import re
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from .. import logs
from .batching import QueueFull, Stopped
from .models import ServedModel
from .protocol import HEADER_LENGTH, RequestError, decode_input, encode_response, requested_outputs, split_body

MAX_BODY = 256 * 2**20  # bytes per request (a batch of 65,536 48x48 gray faces is 600 MB: clients batch less)
EXTENSIONS = ["classification", "binary_tensor_data", "model_configuration"]
_MODEL_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(?:/(ready|infer|config))?/?$")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class ModelServer:
    """Serves ``models`` (``ServedModel``) on ``host:port`` (port 0: a free one; see ``port``). ``serve_forever()``
    in the calling thread or ``start()`` in a background one; ``stop()`` stops listening, answers the requests
    already queued, then closes the models."""

    def __init__(self, models: list[ServedModel], host: str = "127.0.0.1", port: int = 8000,
                 grpc_port: int | None = None):
        self.models = {m.name: m for m in models}
        self.grpc = None  # (grpc.Server, port) with a gRPC port
        self.started = time.time()
        self.ready = False
        self.active = 0  # requests being answered
        self._active_lock = threading.Lock()
        self._serving = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        try:
            self.httpd = _HTTPServer((host, port), _Handler)
        except OSError as exc:  # port taken, no such address, no permission for a port below 1024
            from ..errors import UsageError

            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.httpd.app = self
        if grpc_port is not None:
            from .grpc_service import start_grpc

            try:
                self.grpc = start_grpc(self, host, grpc_port)
            except BaseException:
                self.httpd.server_close()
                raise
        self.ready = True

    @property
    def host(self) -> str:
        return self.httpd.server_address[0]

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def grpc_address(self) -> str | None:
        """host:port of the gRPC endpoint, or None."""
        if self.grpc is None:
            return None
        return f"{self.host if ':' not in self.host else f'[{self.host}]'}:{self.grpc[1]}"

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        self._serving.set()
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> ModelServer:
        self._thread = threading.Thread(target=self.serve_forever, name="edgefer-serve-http", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop listening, answer every request already received, close the models (once)."""
        if self._stopped:
            return
        self._stopped, self.ready = True, False
        if self._serving.is_set():
            self.httpd.shutdown()  # returns at once when serve_forever already ended (Ctrl-C in it)
        self.httpd.server_close()
        if self.grpc is not None:  # refuses new calls, lets those in flight finish (the batchers still run)
            self.grpc[0].stop(grace=timeout).wait(timeout)
        for model in self.models.values():
            model.batcher.stop(timeout)
        deadline = time.monotonic() + timeout
        while self.active and time.monotonic() < deadline:  # responses still being written
            time.sleep(0.01)
        for model in self.models.values():
            model.recognizer.close()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- answers --------------------------------------------------------------------------------------------

    def model(self, name: str, version: str | None) -> ServedModel:
        model = self.models.get(name)
        if model is None:
            raise RequestError(404, f"unknown model {name[:128]!r}; this server has {', '.join(self.models)}")
        if version not in (None, "", model.version):
            raise RequestError(404, f"model {name!r} has version {model.version} only, not {version[:32]!r}")
        return model

    def infer(self, model: ServedModel, body: bytes, header_length: str | None) -> tuple[bytes, int | None]:
        """An HTTP inference request's body -> the response body (and its JSON header's length when binary)."""
        request, binary = split_body(body, header_length)
        outputs, binary_out, k = self.run_request(model, request, binary)
        return encode_response(model.name, model.version, request.get("id"), model.output_name, outputs,
                               binary_out, k, model.spec.labels)

    def run_request(self, model: ServedModel, request: dict, binary: memoryview):
        """(outputs, binary outputs asked for, classification k) for a KServe v2 request as a dict (HTTP's JSON
        header; gRPC's message in the same shape) and its binary data."""
        x = decode_input(request, binary, model.input_name, model.sample_shape, model.max_batch)
        binary_out, k = requested_outputs(request, model.output_name, model.spec.num_classes)
        try:
            future = model.batcher.submit(x)
        except (QueueFull, Stopped) as exc:
            raise RequestError(503, str(exc)) from None
        try:
            return future.result(), binary_out, k
        except Exception as exc:  # noqa: BLE001 - the inference failed: 500 with its message, the server lives on
            raise RequestError(500, f"inference failed: {exc}") from None

    def server_metadata(self) -> dict:
        from .. import __version__

        return {"name": "edgefer", "version": __version__, "extensions": EXTENSIONS}

    def metrics(self) -> str:
        """Prometheus text format; Triton's names where Triton has the metric."""
        lines = []

        def metric(name, kind, help_text, values):
            lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])
            for model, value in values:
                lines.append(f'{name}{{model="{model.name}",version="{model.version}"}} {value}')

        models = list(self.models.values())
        snapshot = {}
        for m in models:
            with m.stats.lock:
                s = m.stats
                snapshot[m.name] = (s.success, s.failure, s.inferences, s.executions, s.request_us, s.queue_us,
                                    s.compute_us, dict(s.batch_sizes))
        rows = [(m, snapshot[m.name]) for m in models]
        metric("nv_inference_request_success", "counter", "Number of successful inference requests",
               [(m, s[0]) for m, s in rows])
        metric("nv_inference_request_failure", "counter", "Number of failed inference requests",
               [(m, s[1]) for m, s in rows])
        metric("nv_inference_count", "counter", "Number of inferences performed (faces)", [(m, s[2]) for m, s in rows])
        metric("nv_inference_exec_count", "counter", "Number of model executions (batches)",
               [(m, s[3]) for m, s in rows])
        metric("nv_inference_request_duration_us", "counter", "Cumulative inference request duration in microseconds",
               [(m, int(s[4])) for m, s in rows])
        metric("nv_inference_queue_duration_us", "counter", "Cumulative inference queuing duration in microseconds",
               [(m, int(s[5])) for m, s in rows])
        metric("nv_inference_compute_infer_duration_us", "counter",
               "Cumulative compute inference duration in microseconds", [(m, int(s[6])) for m, s in rows])
        metric("nv_inference_pending_request_count", "gauge", "Requests waiting in the dynamic batcher",
               [(m, m.batcher.pending) for m in models])
        lines.extend(["# HELP edgefer_batch_executions Model executions by batch size (faces)",
                      "# TYPE edgefer_batch_executions counter"])
        for m, s in rows:
            for size, count in sorted(s[7].items()):
                lines.append(f'edgefer_batch_executions{{model="{m.name}",version="{m.version}",batch_size="{size}"}} '
                             f"{count}")
        return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every response has a Content-Length
    disable_nagle_algorithm = True  # TCP_NODELAY: headers and body never wait for the client's delayed ACK
    server_version = "edgefer"
    timeout = 300  # an idle keep-alive connection is closed after this many seconds

    @property
    def app(self) -> ModelServer:
        return self.server.app

    def log_message(self, format, *args) -> None:  # one line per request only with -v
        logs.debug(f"edgefer serve: {self.address_string()} {format % args}")

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def _answer(self, method: str) -> None:
        with self.app._active_lock:
            self.app.active += 1
        started = time.perf_counter()
        model = match = None
        try:
            path = unquote(urlsplit(self.path).path)
            body = self._body() if method in ("POST", "PUT") else b""
            match = _MODEL_PATH.match(path)
            if match:
                model = self.app.model(match.group(1), match.group(2))
                self._model_endpoint(method, model, match.group(3), body, started)
                return
            if method != "GET":
                raise RequestError(405 if path in ("/v2", "/metrics") or path.startswith("/v2/health/") else 404,
                                   f"{method} {path[:200]} is not an endpoint of this server")
            if path == "/v2/health/live":
                self._send(200, b"")
            elif path == "/v2/health/ready":
                self._send(200 if self.app.ready else 503, b"")
            elif path == "/v2":
                self._json(200, self.app.server_metadata())
            elif path == "/metrics":
                self._send(200, self.app.metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
            else:
                raise RequestError(404, f"{path[:200]} is not an endpoint of this server (see /v2)")
        except RequestError as exc:
            if model is not None and match and match.group(3) == "infer":
                model.stats.request(False, time.perf_counter() - started)
            self._json(exc.status, {"error": str(exc)}, close=exc.status in (411, 413))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - a bug answers 500 and is logged; the server keeps serving
            logs.info(f"edgefer serve: internal error on {self.command} {self.path[:200]}: {exc!r}")
            logs.debug(traceback.format_exc())
            try:
                self._json(500, {"error": f"internal error: {type(exc).__name__}: {exc}"}, close=True)
            except OSError:
                self.close_connection = True
        finally:
            with self.app._active_lock:
                self.app.active -= 1

    def _model_endpoint(self, method: str, model: ServedModel, action: str | None, body: bytes,
                        started: float) -> None:
        if action == "infer":
            if method != "POST":
                raise RequestError(405, f"{method} on .../infer: use POST")
            payload, header_length = self.app.infer(model, body, self.headers.get(HEADER_LENGTH))
            model.stats.request(True, time.perf_counter() - started)
            if header_length is None:
                self._send(200, payload, "application/json")
            else:
                self._send(200, payload, "application/octet-stream", {HEADER_LENGTH: str(header_length)})
            return
        if method != "GET":
            raise RequestError(405, f"{method} on a model: use GET (POST .../infer to classify)")
        if action == "ready":
            self._send(200 if self.app.ready else 503, b"")
        elif action == "config":
            self._json(200, model.config())
        else:
            self._json(200, model.metadata())

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise RequestError(411, "send the body with a Content-Length (chunked transfer is not supported)")
        encoding = self.headers.get("Content-Encoding", "identity").lower()
        if encoding not in ("", "identity"):
            raise RequestError(415, f"Content-Encoding {encoding[:40]!r} is not supported; send the body uncompressed")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise RequestError(400, "Content-Length must be an integer") from None
        if length < 0 or length > MAX_BODY:
            raise RequestError(413, f"a request body of {length} bytes; at most {MAX_BODY} are taken")
        body = self.rfile.read(length)
        if len(body) != length:
            raise ConnectionResetError("the client closed the connection before sending the whole body")
        return body

    def _json(self, status: int, obj, close: bool = False) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", close=close)

    def _send(self, status: int, payload: bytes, content_type: str = "text/plain", headers: dict | None = None,
              close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if payload:
            self.wfile.write(payload)
