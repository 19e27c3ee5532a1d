"""A model served over HTTP, tested where it runs: MLflow's scoring protocol and the Open Inference Protocol.

Two wire protocols are spoken, chosen from the URL:

``http://host:port/invocations``
    MLflow's scoring server (``mlflow models serve``, MLflow's Docker images, SageMaker-style hosts):
    ``POST {"inputs": [...]}`` with the batch as a nested list, answered by ``{"predictions": [...]}``.
``http://host:port/v2/models/<name>[/versions/<v>]/infer``
    The Open Inference Protocol (KServe V2, Triton, Seldon MLServer): ``POST {"inputs": [{"name",
    "shape", "datatype", "data"}]}`` with the tensor flattened in row-major order, answered by
    ``{"outputs": [{"name", "shape", "datatype", "data"}]}``. The model's metadata
    (``GET /v2/models/<name>``) names its input tensor and, when the server declares it, its shape.
    Tensors travel as raw bytes (the binary tensor data extension of Triton and KServe) when the
    server accepts that on the probe request, else as JSON numbers, which cost more time to write and
    parse than a small model takes to run.

The endpoint is a black box (no gradients, no features): roadworthy runs the checks that need only
predictions. Each request carries at most ``max_batch`` samples and has a ``timeout``; connection
failures, timeouts and the answers 429, 502, 503 and 504 are retried ``retries`` times with
exponential back-off (``Retry-After`` is honoured), and ``max_rps`` caps the request rate so a check
does not overload a shared deployment. A dead endpoint is found by the probe request at load time and
reported in one line.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from roadworthy.errors import InvalidInputError
from roadworthy.models._common import check_std, normalise, plural, stat_array
from roadworthy.models.base import InputSpec, OutputKind, detect_output_kind

__all__ = ["EndpointError", "HttpModel", "is_endpoint_url", "load_endpoint"]

_V2_PATH = re.compile(r"^(?P<base>.*/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?)/infer$")
_RETRY_STATUS = frozenset({429, 502, 503, 504})
_V2_DATATYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16}


class EndpointError(InvalidInputError):
    """The endpoint could not be reached, or answered with an error or with something that is not scores."""


def is_endpoint_url(source: str) -> bool:
    """True for an ``http://`` or ``https://`` URL (a served model, not a file)."""
    return source.startswith(("http://", "https://"))


@dataclass(frozen=True)
class _Target:
    protocol: str  # "mlflow" or "v2"
    scheme: str
    host: str
    port: int
    path: str
    v2_name: str | None = None
    v2_metadata_path: str | None = None


def _parse_url(url: str) -> _Target:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(f"{url}: not an http:// or https:// URL of a served model")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if parts.path.rstrip("/").endswith("/invocations"):
        return _Target("mlflow", parts.scheme, parts.hostname, port, path)
    m = _V2_PATH.match(parts.path.rstrip("/"))
    if m:
        return _Target("v2", parts.scheme, parts.hostname, port, path, m.group("name"), m.group("base"))
    raise InvalidInputError(
        f"{url}: unknown endpoint; roadworthy speaks MLflow's scoring protocol (http://HOST:PORT/invocations) "
        "and the Open Inference Protocol v2 (http://HOST:PORT/v2/models/NAME/infer)"
    )


class _RateLimit:
    """At most ``rate`` request starts per second, spaced evenly, across all threads."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 0.0 if not rate else 1.0 / float(rate)
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if self.interval == 0.0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


class HttpModel:
    """A served classifier called over HTTP (black box: predictions only).

    Parameters
    ----------
    url
        ``http(s)://host:port/invocations`` (MLflow scoring protocol) or
        ``http(s)://host:port/v2/models/<name>[/versions/<v>]/infer`` (Open Inference Protocol v2).
    input_shape
        Per-sample shape ``(C, H, W)`` or ``(D,)``; by default the shape a v2 server declares in its
        metadata. Required for an MLflow endpoint (the CLI passes the data's shape).
    n_classes
        Expected number of output columns; checked against the probe answer.
    output
        ``"logits"`` or ``"probs"``; detected from the probe answer when not given.
    mean, std
        Normalisation applied before the batch is sent.
    timeout
        Seconds one request may take (connect and answer), > 0.
    retries
        How often a failed request (connection error, timeout, 429/502/503/504) is tried again.
    backoff
        First wait before a retry in seconds; it doubles with every further retry (at most 30 s).
    max_rps
        Most requests started per second (``None``: no limit).
    max_batch
        Most samples per request; larger batches are split.
    concurrency
        Requests in flight at once for one large batch (1: one after the other).
    headers
        Extra HTTP headers, e.g. ``{"Authorization": "Bearer ..."}``.
    output_name
        For v2: which output tensor holds the scores (default: the first ``(N, K)`` float tensor).
    binary
        For v2: send and receive tensors as raw bytes (the binary tensor data extension that Triton
        and KServe speak) instead of JSON numbers, several times less time spent in transport.
        ``None`` (default): tried on the probe request, JSON when the server refuses it (HTTP 4xx).

    Raises
    ------
    EndpointError
        Nothing answers, the server answered an error, or the answer is not an ``(N, K)`` score array.
    """

    white_box = False
    has_features = False

    def __init__(
        self,
        url: str,
        *,
        input_shape: Sequence[int] | None = None,
        n_classes: int | None = None,
        output: OutputKind | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_rps: float | None = None,
        max_batch: int = 256,
        concurrency: int = 1,
        headers: dict[str, str] | None = None,
        output_name: str | None = None,
        binary: bool | None = None,
    ) -> None:
        if not timeout > 0:
            raise InvalidInputError(f"`timeout` must be > 0 seconds. Got {timeout} instead.")
        if retries < 0 or backoff < 0 or max_batch < 1 or concurrency < 1:
            raise InvalidInputError(
                "`retries` and `backoff` must be >= 0, `max_batch` and `concurrency` >= 1. "
                f"Got {retries}, {backoff}, {max_batch}, {concurrency} instead."
            )
        if max_rps is not None and not max_rps > 0:
            raise InvalidInputError(f"`max_rps` must be > 0 (or None). Got {max_rps} instead.")
        self.url = url
        self._target = _parse_url(url)
        self.format = "http-mlflow" if self._target.protocol == "mlflow" else "http-v2"
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_batch = int(max_batch)
        self.concurrency = int(concurrency)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
        self._limit = _RateLimit(max_rps)
        self._local = threading.local()
        self._output_name = output_name
        self.binary = (binary is None or bool(binary)) and self._target.protocol == "v2"
        self._input_name = "input-0"
        self._datatype = "FP32"
        self.requests = 0  #: requests sent, retries included (for benchmarks and logs)

        shape = tuple(int(s) for s in input_shape) if input_shape is not None else None
        if self._target.protocol == "v2":
            shape = self._read_v2_metadata(shape)
        if shape is None:
            raise InvalidInputError(
                f"{url}: the endpoint does not say its input shape; pass --input-shape (or input_shape=) "
                "or data of the right shape"
            )
        self.input_spec = InputSpec(modality="image" if len(shape) == 3 else "tabular", shape=shape)  # type: ignore[arg-type]
        self._mean = stat_array(mean, shape, "mean")
        self._std = stat_array(std, shape, "std")
        check_std(self._std)
        probe_x = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
        try:
            probe = self._call(probe_x, probing=True)
        except EndpointError as exc:
            if not (binary is None and self.binary and re.search(r"HTTP 4\d\d", str(exc))):
                raise
            self.binary = False  # the server does not speak the binary extension: JSON it is
            probe = self._call(probe_x, probing=True)
        if n_classes is not None and int(n_classes) != probe.shape[1]:
            raise EndpointError(
                f"{url}: the endpoint returns {probe.shape[1]} scores per sample but "
                f"{plural(int(n_classes), 'class', 'classes')} were given"
            )
        self.n_classes = int(probe.shape[1])
        self.output: OutputKind = output or detect_output_kind(probe)

    # -- the model protocol --------------------------------------------------------------------

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Scores ``(N, n_classes)`` for a float32 batch, sent in requests of at most ``max_batch``."""
        x = normalise(np.ascontiguousarray(x, dtype=np.float32), self._mean, self._std)
        chunks = [x[i : i + self.max_batch] for i in range(0, len(x), self.max_batch)]
        if len(chunks) == 1:
            return self._call(chunks[0])
        if self.concurrency == 1:
            return np.concatenate([self._call(c) for c in chunks], axis=0)
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(chunks))) as pool:
            return np.concatenate(list(pool.map(self._call, chunks)), axis=0)

    # -- wire formats --------------------------------------------------------------------------

    def _encode(self, x: np.ndarray) -> tuple[bytes, dict[str, str]]:
        """The request body and its extra headers."""
        if self._target.protocol == "mlflow":
            return json.dumps({"inputs": x.tolist()}, separators=(",", ":")).encode(), {}
        values = np.ascontiguousarray(x, dtype=_V2_DATATYPES.get(self._datatype, np.float32))
        tensor: dict[str, Any] = {
            "name": self._input_name,
            "shape": list(x.shape),
            "datatype": self._datatype,
        }
        body: dict[str, Any] = {"inputs": [tensor]}
        if self._output_name:
            body["outputs"] = [{"name": self._output_name}]
        if not self.binary:
            tensor["data"] = values.ravel().tolist()
            return json.dumps(body, separators=(",", ":")).encode(), {}
        # the binary tensor data extension: a JSON header, then the raw little-endian tensor bytes
        raw = values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes()
        tensor["parameters"] = {"binary_data_size": len(raw)}
        body["parameters"] = {"binary_data_output": True}
        for out in body.get("outputs", []):
            out["parameters"] = {"binary_data": True}
        header = json.dumps(body, separators=(",", ":")).encode()
        extra = {
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        }
        return header + raw, extra

    def _decode(self, payload: Any, n: int) -> np.ndarray:
        if self._target.protocol == "mlflow":
            values = (
                payload.get("predictions", payload.get("outputs")) if isinstance(payload, dict) else payload
            )
            if isinstance(values, dict) and len(values) == 1:  # a single named output
                values = next(iter(values.values()))
            if isinstance(values, list) and values and isinstance(values[0], dict):  # records of columns
                values = [list(row.values()) for row in values]
            try:
                scores = np.asarray(values, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise EndpointError(
                    f"{self.url}: the answer is not an array of scores ({type(values).__name__}); "
                    "serve the model so that it returns class scores (e.g. pyfunc_predict_fn='predict_proba')"
                ) from exc
        else:
            scores = self._decode_v2(payload, n)
        if scores.ndim == 1:
            scores = scores[:, None]
        if scores.ndim != 2 or scores.shape[0] != n:
            raise EndpointError(
                f"{self.url}: expected scores of shape ({n}, n_classes) for {plural(n, 'sample')}, "
                f"got shape {scores.shape}"
            )
        return scores

    def _decode_v2(self, payload: Any, n: int) -> np.ndarray:
        payload, binary = payload if isinstance(payload, tuple) else (payload, b"")
        outputs = payload.get("outputs") if isinstance(payload, dict) else None
        if not isinstance(outputs, list):
            raise EndpointError(f"{self.url}: the answer has no 'outputs' list (Open Inference Protocol v2)")
        chosen = None
        for out in outputs:
            if not isinstance(out, dict):
                continue
            if self._output_name is not None:
                if out.get("name") == self._output_name:
                    chosen = out
                    break
            elif out.get("datatype", "FP32") in _V2_DATATYPES and len(out.get("shape", [])) in (1, 2):
                chosen = out
                break
        if chosen is None:
            names = [o.get("name") for o in outputs if isinstance(o, dict)]
            what = f"no output named {self._output_name!r}" if self._output_name else "no float output"
            raise EndpointError(f"{self.url}: {what} in the answer (outputs: {names})")
        try:
            shape = [int(s) for s in chosen["shape"]]
            size = (chosen.get("parameters") or {}).get("binary_data_size")
            if size is None:
                return np.asarray(chosen["data"], dtype=np.float32).reshape(shape)
            offset = 0  # binary outputs follow the JSON header in the order of the outputs list
            for out in outputs:
                if out is chosen:
                    break
                offset += int((out.get("parameters") or {}).get("binary_data_size", 0))
            dtype = np.dtype(_V2_DATATYPES[chosen.get("datatype", "FP32")]).newbyteorder("<")
            values = np.frombuffer(binary, dtype=dtype, count=int(size) // dtype.itemsize, offset=offset)
            return values.astype(np.float32).reshape(shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise EndpointError(
                f"{self.url}: output {chosen.get('name')!r} has data that does not fit its shape "
                f"{chosen.get('shape')}"
            ) from exc

    def _read_v2_metadata(self, shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
        """The input name, datatype and per-sample shape the v2 server declares (``GET /v2/models/<name>``)."""
        try:
            meta = self._request("GET", self._target.v2_metadata_path or "", None, {}, probing=True)
        except EndpointError as exc:
            if "HTTP 404" not in str(exc) and "HTTP 405" not in str(exc):
                raise
            return shape  # metadata is optional in practice; the probe will tell
        inputs = meta.get("inputs") if isinstance(meta, dict) else None
        if not inputs:
            return shape
        first = inputs[0]
        self._input_name = str(first.get("name", self._input_name))
        self._datatype = str(first.get("datatype", self._datatype))
        if self._datatype not in _V2_DATATYPES:
            raise EndpointError(
                f"{self.url}: the model's input {self._input_name!r} has datatype {self._datatype}; "
                f"roadworthy sends {', '.join(_V2_DATATYPES)}"
            )
        declared = [int(s) for s in first.get("shape", [])]
        if shape is None and len(declared) >= 2 and all(s > 0 for s in declared[1:]):
            shape = tuple(declared[1:])
        return shape

    # -- transport -----------------------------------------------------------------------------

    def _call(self, x: np.ndarray, probing: bool = False) -> np.ndarray:
        body, headers = self._encode(x)
        return self._decode(self._request("POST", self._target.path, body, headers, probing=probing), len(x))

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = (
                http.client.HTTPSConnection if self._target.scheme == "https" else http.client.HTTPConnection
            )
            conn = cls(self._target.host, self._target.port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str], probing: bool = False
    ) -> Any:
        """One request with retries: the decoded JSON answer, ``(JSON, binary tail)`` for an answer in
        the binary tensor extension, or :class:`EndpointError`."""
        where = f"{self._target.scheme}://{self._target.host}:{self._target.port}{path}"
        last, retry_after = "", None
        for attempt in range(self.retries + 1):
            if attempt:  # exponential back-off, or what the server asked for
                time.sleep(
                    retry_after if retry_after is not None else min(30.0, self.backoff * 2 ** (attempt - 1))
                )
            retry_after = None
            self._limit.wait()
            self.requests += 1
            try:
                conn = self._connection()
                conn.request(method, path, body=body, headers={**self._headers, **headers})
                response = conn.getresponse()
                data = response.read()
            except ConnectionRefusedError as exc:
                self._drop_connection()
                if probing:  # nothing listens: retrying a dead endpoint only delays the one-line error
                    raise EndpointError(
                        f"{self.url}: nothing answers at {self._target.host}:{self._target.port} "
                        "(connection refused); is the model server running?"
                    ) from exc
                last = f"connection refused ({exc})"
                continue
            except TimeoutError as exc:
                self._drop_connection()
                last = f"no answer within {self.timeout:g} s (timeout)"
                if probing and attempt >= 1:
                    raise EndpointError(f"{self.url}: {last}") from exc
                continue
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.getheader("Connection", "").lower() == "close":
                self._drop_connection()
            if response.status in _RETRY_STATUS:
                retry_after = _seconds(response.getheader("Retry-After"))
                last = f"HTTP {response.status}: {_short(data)}"
                continue
            if response.status >= 400:
                raise EndpointError(f"{where}: HTTP {response.status}: {_short(data)}")
            try:
                split = response.getheader("Inference-Header-Content-Length")
                if split is not None:
                    return json.loads(data[: int(split)]), data[int(split) :]
                return json.loads(data)
            except ValueError as exc:
                raise EndpointError(f"{where}: the answer is not JSON ({_short(data)})") from exc
        raise EndpointError(f"{where}: failed after {plural(self.retries + 1, 'try', 'tries')}: {last}")


def _seconds(header: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (at most 30); ``None`` when absent or an HTTP date."""
    try:
        return min(30.0, max(0.0, float(header))) if header else None
    except ValueError:
        return None


def _short(data: bytes, limit: int = 200) -> str:
    text = " ".join(data.decode("utf-8", "replace").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Environment variables that tune the transport when the endpoint is given on the command line.
ENVIRONMENT = {
    "ROADWORTHY_HTTP_TIMEOUT": ("timeout", float),
    "ROADWORTHY_HTTP_RETRIES": ("retries", int),
    "ROADWORTHY_HTTP_MAX_RPS": ("max_rps", float),
    "ROADWORTHY_HTTP_MAX_BATCH": ("max_batch", int),
    "ROADWORTHY_HTTP_CONCURRENCY": ("concurrency", int),
    "ROADWORTHY_HTTP_BINARY": (
        "binary",
        lambda text: text.strip().lower() in ("1", "true", "yes"),
    ),  # 0: JSON
}


def load_endpoint(url: str, opts: Any) -> HttpModel:
    """An :class:`HttpModel` for ``url`` with the loader's options (shape, classes, normalisation).

    The transport settings come from :data:`ENVIRONMENT` (``ROADWORTHY_HTTP_TIMEOUT=10`` ...) and an
    ``Authorization`` header from ``ROADWORTHY_HTTP_AUTHORIZATION``; the Python API takes an
    :class:`HttpModel` built with its keyword arguments instead.
    """
    import os

    if opts.feature_layer is not None:
        raise InvalidInputError(f"{url}: a served model is a black box; it has no feature layer to name")
    settings: dict[str, Any] = {}
    for variable, (name, kind) in ENVIRONMENT.items():
        text = os.environ.get(variable)
        if text:
            try:
                settings[name] = kind(text)
            except ValueError as exc:
                raise InvalidInputError(
                    f"{variable} must be a{'n integer' if kind is int else ' number'}. Got {text!r} instead."
                ) from exc
    token = os.environ.get("ROADWORTHY_HTTP_AUTHORIZATION")
    if token:
        settings["headers"] = {"Authorization": token}
    return HttpModel(
        url,
        input_shape=opts.input_shape,
        n_classes=opts.n_classes,
        output=opts.output,
        mean=opts.mean,
        std=opts.std,
        **settings,
    )
