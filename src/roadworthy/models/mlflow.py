"""Models from MLflow: the registry (``models:/``), a run's artifacts (``runs:/``) and MLflow 3 logged models.

Accepted sources:

``models:/<name>/<version>``, ``models:/<name>@<alias>``, ``models:/<name>/<alias>``
    A registered model version, by number or by alias (the second spelling is MLflow's own; the
    third is accepted when the last part is not a number).
``runs:/<run_id>/<path>``
    An artifact of a run: an MLflow model folder (with an ``MLmodel`` file) or a plain model file.
``models:/m-<id>`` or ``m-<id>``
    An MLflow 3 logged model.

The artifacts are downloaded with MLflow's own API (``mlflow.artifacts.download_artifacts``) and read
by roadworthy's normal loaders: an ONNX flavor as ONNX, a PyTorch flavor saved as ``pt2`` as a
``torch.export`` program, a scikit-learn flavor saved with ``skops`` as skops. Flavors stored as
pickles (PyTorch's ``pickle`` format, scikit-learn's ``pickle``/``cloudpickle``, custom ``pyfunc``
models) run code from the files when loaded, so they are refused without ``trust_pickle`` and then
loaded through MLflow's flavor API. The model's signature gives the input shape when it has one.

Every MLflow call here first checks the tracking server with one short request, so a server that is
down costs seconds and one line (:func:`check_tracking`), not MLflow's minutes of retries.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import re
import shutil
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadworthy.errors import InvalidInputError, UnsafeFileError, UnsupportedModelError, require
from roadworthy.models._common import first_line, sha256_path
from roadworthy.models.base import Model

__all__ = [
    "ModelSource",
    "check_tracking",
    "is_mlflow_uri",
    "load_mlflow_model",
    "mlflow_calls",
    "resolve",
]

_LOGGED_MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")
_MODEL_FILE_SUFFIXES = (".onnx", ".pt2", ".pt", ".ts", ".torchscript", ".pth", ".skops", ".pkl", ".joblib")
#: Shorter than MLflow's defaults (7 retries, back-off factor 2: minutes for a dead server).
_SHORT_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
_cache: dict[tuple[str, str], Path] = {}
_cache_lock = threading.Lock()
_cache_root: Path | None = None


def is_mlflow_uri(source: str) -> bool:
    """True for ``models:/...``, ``runs:/...`` and a bare MLflow 3 logged-model id ``m-<32 hex>``."""
    return source.startswith(("models:/", "runs:/")) or bool(_LOGGED_MODEL_ID.match(source))


def require_mlflow(feature: str) -> Any:
    """The ``mlflow`` module, or :class:`MissingDependencyError` naming the ``mlflow`` extra."""
    return require("mlflow", "mlflow", feature)


@contextlib.contextmanager
def mlflow_calls() -> Iterator[None]:
    """MLflow REST calls with 2 retries and short back-off, unless the user set MLflow's own variables."""
    previous = {k: os.environ.get(k) for k in _SHORT_RETRIES}
    for key, value in _SHORT_RETRIES.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)


def check_tracking(feature: str, timeout: float = 5.0) -> str:
    """Check that the MLflow tracking store answers; return its URI.

    A tracking server (``http(s)://``) gets one ``GET /health`` with ``timeout`` seconds; then one
    cheap query runs through MLflow itself, which finds a store MLflow refuses (the file store is in
    maintenance mode in MLflow 3), a database it cannot open, or missing credentials.

    Raises
    ------
    InvalidInputError
        One line naming the tracking URI, what failed and what to do.
    """
    mlflow = require_mlflow(feature)
    uri = str(mlflow.get_tracking_uri())
    parts = urllib.parse.urlsplit(uri)
    hint = "start the server or set MLFLOW_TRACKING_URI to one that answers"
    if parts.scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as answer:
                answer.read(64)
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code in (401, 403):
                raise InvalidInputError(
                    f"MLflow tracking server {uri}: answers HTTP {exc.code} ({exc.reason}); {hint}"
                ) from exc
            # 404 and friends: a proxy or a server without /health; the query below decides
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise InvalidInputError(
                f"MLflow tracking server {uri}: not reachable ({first_line(reason)}); {hint}"
            ) from exc
    from mlflow.tracking import MlflowClient

    try:
        with mlflow_calls():
            MlflowClient().search_experiments(max_results=1)
    except Exception as exc:  # MlflowException, SQLAlchemy and connection errors, translated at the boundary
        text = first_line(exc, 300)
        if "maintenance mode" in text or "MLFLOW_ALLOW_FILE_STORE" in str(exc):
            text = (
                "MLflow 3 refuses the file store (./mlruns) unless MLFLOW_ALLOW_FILE_STORE=true; "
                "set MLFLOW_TRACKING_URI=sqlite:///mlflow.db or the URL of a tracking server"
            )
        raise InvalidInputError(f"MLflow tracking store {uri}: {text}") from exc
    return uri


# -- resolving a URI -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSource:
    """Where an MLflow model came from: what a tracker needs to link a report to it.

    ``name``/``version`` for a registered model version, ``model_id`` for an MLflow 3 logged model
    (registered versions have one too), ``run_id`` for the run that produced the artifacts.
    """

    uri: str
    download_uri: str
    name: str | None = None
    version: str | None = None
    run_id: str | None = None
    model_id: str | None = None
    alias: str | None = None


def resolve(uri: str) -> ModelSource:
    """Turn a model URI into a fixed source: an alias becomes the version it points to *now*.

    Raises
    ------
    InvalidInputError
        The URI is malformed, or the registry, run or logged model does not exist.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        with mlflow_calls():
            if _LOGGED_MODEL_ID.match(uri) or uri.startswith("models:/m-"):
                model_id = uri.removeprefix("models:/").split("/", 1)[0]
                logged = client.get_logged_model(model_id)
                return ModelSource(uri, f"models:/{model_id}", run_id=logged.source_run_id, model_id=model_id)
            if uri.startswith("runs:/"):
                rest = uri.removeprefix("runs:/")
                run_id, _, path = rest.partition("/")
                if not run_id:
                    raise InvalidInputError(f"{uri}: expected runs:/<run_id>/<path>")
                client.get_run(run_id)
                return ModelSource(uri, f"runs:/{run_id}/{path}".rstrip("/"), run_id=run_id)
            rest = uri.removeprefix("models:/")
            if "@" in rest:
                name, alias = rest.rsplit("@", 1)
                mv = client.get_model_version_by_alias(name, alias)
            else:
                name, _, ref = rest.rpartition("/")
                if not name or not ref:
                    raise InvalidInputError(
                        f"{uri}: expected models:/<name>/<version>, models:/<name>@<alias> or models:/m-<id>"
                    )
                if ref.isdigit():
                    mv = client.get_model_version(name, ref)
                    alias = None
                elif ref == "latest":
                    versions = client.search_model_versions(
                        f"name='{name}'", order_by=["version_number DESC"], max_results=1
                    )
                    if not versions:
                        raise InvalidInputError(f"{uri}: the registered model {name!r} has no versions")
                    mv, alias = versions[0], None
                else:
                    mv, alias = client.get_model_version_by_alias(name, ref), ref
    except MlflowException as exc:
        raise InvalidInputError(f"{uri}: {first_line(exc, 300)}") from exc
    return ModelSource(
        uri,
        f"models:/{mv.name}/{mv.version}",
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id or None,
        model_id=getattr(mv, "model_id", None) or None,
        alias=alias,
    )


def download(source: ModelSource) -> Path:
    """The source's artifacts on local disk, downloaded once per process (removed at exit)."""
    global _cache_root
    import mlflow

    key = (str(mlflow.get_tracking_uri()), source.download_uri)
    with _cache_lock:
        if key in _cache and _cache[key].exists():
            return _cache[key]
        if _cache_root is None:
            _cache_root = Path(tempfile.mkdtemp(prefix="roadworthy-mlflow-"))
            atexit.register(shutil.rmtree, _cache_root, True)
        target = Path(tempfile.mkdtemp(dir=_cache_root))
    try:
        with mlflow_calls():
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=source.download_uri, dst_path=str(target)
            )
    except Exception as exc:  # MlflowException and transport errors, translated at the boundary
        raise InvalidInputError(f"{source.uri}: cannot download the model ({first_line(exc, 300)})") from exc
    path = Path(local)
    with _cache_lock:
        _cache[key] = path
    return path


# -- loading ---------------------------------------------------------------------------------------


def load_mlflow_model(uri: str, opts: Any) -> Model:
    """Download ``uri`` with MLflow and adapt it like a local model file.

    The returned adapter carries ``mlflow_source`` (a :class:`ModelSource`), ``source`` (the URI) and
    ``sha256`` (of the downloaded model file or folder).
    """
    check_tracking(f"--model {uri}")
    source = resolve(uri)
    local = download(source)
    model, model_file = _load_local(local, opts, uri)
    model.mlflow_source = source  # type: ignore[attr-defined]
    model.source = uri  # type: ignore[attr-defined]
    model.sha256 = sha256_path(model_file)  # type: ignore[attr-defined]
    return model


def _load_local(path: Path, opts: Any, uri: str) -> tuple[Model, Path]:
    """The model in a downloaded artifact (file or MLflow model folder) and the file it was read from."""
    from roadworthy.models.loader import load_file

    if path.is_file():
        return _renamed(lambda: load_file(path, opts, uri), path, uri), path
    mlmodel = path / "MLmodel"
    if not mlmodel.exists():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _MODEL_FILE_SUFFIXES)
        if len(found) != 1:
            what = ", ".join(p.relative_to(path).as_posix() for p in found[:5]) or "none"
            raise UnsupportedModelError(
                f"{uri}: an artifact folder without an MLmodel file needs exactly one model file; found {what}"
            )
        return _renamed(lambda: load_file(found[0], opts, uri), found[0], uri), found[0]
    import yaml

    try:
        meta = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"{uri}: unreadable MLmodel file ({first_line(exc)})") from exc
    flavors: dict[str, Any] = meta.get("flavors") or {}
    if opts.input_shape is None:
        shape = _signature_shape(meta.get("signature"))
        if shape is not None:
            opts = dataclasses.replace(opts, input_shape=shape)

    if "onnx" in flavors:
        file = path / str(flavors["onnx"].get("data", "model.onnx"))
        return _renamed(lambda: load_file(file, opts, uri), file, uri), file
    if "pytorch" in flavors:
        data = path / str(flavors["pytorch"].get("model_data", "data"))
        exported = data / "model.pt2" if data.is_dir() else data
        if exported.suffix == ".pt2" and exported.exists():
            return _renamed(lambda: load_file(exported, opts, uri), exported, uri), exported
        return _load_flavor("pytorch", path, opts, uri, "serialization_format='pt2'"), data
    if "sklearn" in flavors:
        conf = flavors["sklearn"]
        file = path / str(conf.get("pickled_model", "model.pkl"))
        if conf.get("serialization_format") == "skops":
            return _renamed(lambda: load_file(file, opts, uri), file, uri), file
        return _load_flavor("sklearn", path, opts, uri, "serialization_format='skops'"), file
    if "python_function" in flavors:
        return _load_flavor("pyfunc", path, opts, uri, None), path
    raise UnsupportedModelError(
        f"{uri}: no flavor roadworthy reads (found {', '.join(flavors) or 'none'}); log the model with "
        "mlflow.onnx, mlflow.pytorch (pt2) or mlflow.sklearn (skops)"
    )


def _renamed(load: Any, path: Path, uri: str) -> Model:
    """Run a file loader; its error messages name the URI instead of the temporary download path."""
    try:
        return load()
    except (InvalidInputError, UnsupportedModelError) as exc:
        text = str(exc).replace(f"{path}: ", "", 1).replace(str(path), uri)
        text = text if text.startswith(uri) else f"{uri}: {text}"
        raise type(exc)(text) from exc


def _load_flavor(flavor: str, path: Path, opts: Any, uri: str, safe_format: str | None) -> Model:
    """A pickle-based flavor through MLflow's own loader, only when pickles are trusted."""
    if not opts.trust_pickle:
        remedy = f", or log it with {safe_format}" if safe_format else ""
        raise UnsafeFileError(
            f"{uri}: MLflow stored this {flavor} model as a pickle, and loading a pickle runs code from the "
            f"file; pass --trust-pickle if you trust it{remedy}"
        )
    import importlib

    from roadworthy.models.loader import adapt_object

    module = importlib.import_module(f"mlflow.{flavor}")
    try:
        with mlflow_calls():
            obj = module.load_model(str(path))
    except Exception as exc:  # any flavor's loading errors, translated at the boundary
        raise InvalidInputError(
            f"{uri}: MLflow could not load the {flavor} model ({first_line(exc)})"
        ) from exc
    if flavor == "pyfunc":
        import numpy as np

        def scores(x: np.ndarray) -> np.ndarray:
            return np.asarray(obj.predict(x), dtype=np.float32)

        return adapt_object(scores, opts, name=uri, format="mlflow-pyfunc")
    return adapt_object(obj, opts, name=uri, format=f"mlflow-{flavor}", as_saved=True)


def _signature_shape(signature: Any) -> tuple[int, ...] | None:
    """The per-sample shape of a single tensor input in an MLmodel signature, when fully known."""
    import json

    if not isinstance(signature, dict) or not signature.get("inputs"):
        return None
    try:
        inputs = json.loads(signature["inputs"])
    except (TypeError, ValueError):
        return None
    if len(inputs) != 1 or inputs[0].get("type") != "tensor":
        return None
    shape = inputs[0].get("tensor-spec", {}).get("shape") or []
    per_sample = [int(s) for s in shape[1:]]
    if len(shape) < 2 or any(s < 1 for s in per_sample):
        return None
    return tuple(per_sample)
