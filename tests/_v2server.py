"""A small Open Inference Protocol (KServe V2) server over a real model, on 127.0.0.1, for tests and benchmarks.

It speaks the parts of the protocol a client of a classifier uses: ``GET /v2/health/ready``,
``GET /v2/models/<name>`` (metadata) and ``POST /v2/models/<name>/infer`` with JSON tensors. For
testing the client's resilience it can answer the next requests with chosen error statuses
(``fail_with``), add a delay, and counts the requests and samples it served.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np


class V2Server:
    """Serve ``fn(x) -> scores`` as model ``name`` with input ``(-1, *input_shape)`` FP32.

    Use as a context manager; ``url`` is the infer URL. ``fail_with`` is a list of HTTP statuses for
    the next infer requests (``retry_after`` adds that header); ``delay_s`` delays every infer answer.
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], input_shape: tuple[int, ...], name: str = "digits",
                 declare_shape: bool = True, binary: bool = True) -> None:  # fmt: skip
        self.fn = fn
        self.input_shape = tuple(input_shape)
        self.name = name
        self.declare_shape = declare_shape
        self.binary = binary  #: whether it speaks the binary tensor data extension (Triton does)
        self.fail_with: list[int] = []
        self.retry_after: str | None = None
        self.delay_s = 0.0
        self.requests = 0
        self.samples = 0
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        return f"{self.base}/v2/models/{self.name}/infer"

    def __enter__(self) -> V2Server:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def metadata(self) -> dict[str, Any]:
        shape = [-1, *self.input_shape] if self.declare_shape else [-1] + [-1] * len(self.input_shape)
        return {
            "name": self.name,
            "platform": "pytorch",
            "inputs": [{"name": "pixels", "datatype": "FP32", "shape": shape}],
            "outputs": [
                {"name": "label", "datatype": "INT64", "shape": [-1]},
                {"name": "logits", "datatype": "FP32", "shape": [-1, -1]},
            ],
        }

    def infer(self, body: dict[str, Any], binary: bytes = b"") -> tuple[int, dict[str, Any], bytes]:
        """The answer's status, JSON and binary tail (the binary tensor data extension, when asked)."""
        try:
            (tensor,) = body["inputs"]
            if tensor["name"] != "pixels" or tensor["datatype"] != "FP32":
                return 400, {"error": f"unexpected input {tensor['name']!r} of {tensor['datatype']}"}, b""
            size = (tensor.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                x = np.frombuffer(binary[: int(size)], dtype="<f4").reshape(tensor["shape"]).copy()
            else:
                x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        except (KeyError, TypeError, ValueError) as exc:
            return 400, {"error": f"bad request: {exc}"}, b""
        if x.shape[1:] != self.input_shape:
            return 400, {"error": f"expected shape [-1, {self.input_shape}], got {list(x.shape)}"}, b""
        scores = np.asarray(self.fn(x), dtype=np.float32)
        with self._lock:
            self.samples += len(x)
            self.batch_sizes.append(len(x))
        outputs = [
            # the label first, so a client must pick the scores by shape or by name
            {"name": "label", "datatype": "INT64", "shape": [len(x)], "data": scores.argmax(1).tolist()},
            {
                "name": "logits",
                "datatype": "FP32",
                "shape": list(scores.shape),
                "data": scores.ravel().tolist(),
            },
        ]
        wanted = {o["name"]: o for o in body.get("outputs", [])}
        if wanted:
            outputs = [o for o in outputs if o["name"] in wanted]
        tail = b""
        for out in outputs:
            as_binary = (body.get("parameters") or {}).get("binary_data_output") or (
                (wanted.get(out["name"], {}).get("parameters") or {}).get("binary_data")
            )
            if as_binary:
                dtype = "<f4" if out["datatype"] == "FP32" else "<i8"
                raw = np.asarray(out.pop("data"), dtype=dtype).tobytes()
                out["parameters"] = {"binary_data_size": len(raw)}
                tail += raw
        return 200, {"model_name": self.name, "id": body.get("id", ""), "outputs": outputs}, tail

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real inference servers do

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _send(
                self,
                status: int,
                payload: dict[str, Any],
                headers: dict[str, str] | None = None,
                tail: bytes = b"",
            ) -> None:
                data = json.dumps(payload).encode()
                if tail:
                    headers = {**(headers or {}), "Inference-Header-Content-Length": str(len(data))}
                    data += tail
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if tail else "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    self.close_connection = True

            def do_GET(self) -> None:
                if self.path == "/v2/health/ready":
                    self._send(200, {"ready": True})
                elif self.path == f"/v2/models/{server.name}":
                    self._send(200, server.metadata())
                else:
                    self._send(404, {"error": f"no route {self.path}"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server._lock:
                    server.requests += 1
                    status = server.fail_with.pop(0) if server.fail_with else None
                if server.delay_s:
                    threading.Event().wait(server.delay_s)
                if self.path != f"/v2/models/{server.name}/infer":
                    self._send(404, {"error": f"no model at {self.path}"})
                    return
                if status is not None:
                    extra = {"Retry-After": server.retry_after} if server.retry_after else None
                    self._send(status, {"error": f"injected {status}"}, extra)
                    return
                split = self.headers.get("Inference-Header-Content-Length")
                if split is not None and not server.binary:
                    self._send(400, {"error": "binary tensor data is not supported"})
                    return
                if split is not None:
                    code, payload, tail = server.infer(json.loads(body[: int(split)]), body[int(split) :])
                else:
                    code, payload, tail = server.infer(json.loads(body))
                self._send(code, payload, tail=tail)

        return Handler
