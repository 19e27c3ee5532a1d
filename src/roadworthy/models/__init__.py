"""Models: one protocol over PyTorch, ONNX Runtime, scikit-learn and plain functions.

:func:`load_model` turns a file or a Python object into a :class:`Model`; :func:`describe_model` is
what the report says about it. Frameworks are imported only when a model of theirs is loaded.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from roadworthy._files import sha256_path
from roadworthy.models.base import (
    InputSpec,
    Model,
    ModelInfo,
    OutputKind,
    capabilities,
    detect_output_kind,
    predict_logits,
    predict_probs,
    to_logits,
    to_probs,
)

__all__ = [
    "InputSpec",
    "Model",
    "ModelInfo",
    "OutputKind",
    "capabilities",
    "describe_model",
    "detect_output_kind",
    "load",
    "load_model",
    "model_sha256",
    "predict_logits",
    "predict_probs",
    "to_logits",
    "to_probs",
]


def load_model(
    path_or_object: Any,
    *,
    trust_pickle: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_shape: Sequence[int] | None = None,
    n_classes: int | None = None,
    feature_layer: str | None = None,
    output: OutputKind | None = None,
) -> Model:
    """Load a model file or wrap a Python model as a roadworthy :class:`Model`.

    Parameters
    ----------
    path_or_object
        An MLflow model URI (``models:/<name>/<version>``, ``models:/<name>@<alias>``,
        ``runs:/<run_id>/<path>``, ``models:/m-<id>``; see :mod:`roadworthy.models.mlflow`), the URL of a
        served model (``http://host:port/invocations`` or ``.../v2/models/<name>/infer``; see
        :mod:`roadworthy.models.http`), a path to a TorchScript (``.pt``), ``torch.export`` (``.pt2``), ONNX (``.onnx``) or skops
        (``.skops``) file, or with ``trust_pickle`` a ``.pkl``/``.joblib`` file or a module saved whole
        with ``torch.save``. Or an object: an ``nn.Module``, a ``torch.export`` program, a fitted
        scikit-learn classifier, a callable ``f(x) -> scores`` or anything that already follows the
        :class:`Model` protocol (returned as is).
    trust_pickle
        Allow loading formats that run code from the file (pickles). Without it such files are
        refused before anything in them is executed.
    mean, std
        The model's input normalisation (one value or one per channel / feature), applied inside the
        adapter so that roadworthy always works in pixel units ([0, 1] images).
    input_shape
        Per-sample shape, ``(C, H, W)`` or ``(D,)``, for models that do not record it (TorchScript,
        ``nn.Module``, functions); the CLI passes the data's shape.
    n_classes
        The expected number of classes; checked against the model's output.
    feature_layer
        Layer (module name; tensor name for ONNX) whose input is used as penultimate features.
    output
        ``"logits"`` or ``"probs"``; detected from a probe batch when not given.

    Returns
    -------
    Model
        An adapter with ``n_classes``, ``input_spec``, ``output``, ``format`` and ``predict``, plus
        ``white_box``/``forward_torch`` and ``features`` where the model supports them. A model read
        from a file carries ``identity``, a :class:`ModelInfo` with its path, format and sha256.

    Raises
    ------
    UnsafeFileError
        The file would have to be unpickled and ``trust_pickle`` is false.
    InvalidInputError
        The file is missing, truncated or corrupt, a state dict without architecture, or the model
        fails on a probe batch of the given shape.
    UnsupportedModelError
        The format or object type is not one roadworthy adapts.
    """
    from roadworthy.errors import InvalidInputError
    from roadworthy.models.loader import AdapterOptions, adapt_object, load_file

    if output not in (None, "logits", "probs"):
        raise InvalidInputError(f"`output` must be 'logits' or 'probs'. Got {output!r} instead.")
    if n_classes is not None and int(n_classes) < 1:
        raise InvalidInputError(f"`n_classes` must be at least 1. Got {n_classes} instead.")
    opts = AdapterOptions(
        trust_pickle=trust_pickle,
        mean=tuple(float(v) for v in mean) if mean is not None else None,
        std=tuple(float(v) for v in std) if std is not None else None,
        input_shape=tuple(int(s) for s in input_shape) if input_shape is not None else None,
        n_classes=n_classes,
        feature_layer=feature_layer,
        output=output,
    )
    if isinstance(path_or_object, str) and not Path(path_or_object).exists():  # served and MLflow models
        from roadworthy.models.http import is_endpoint_url, load_endpoint
        from roadworthy.models.mlflow import is_mlflow_uri, load_mlflow_model

        remote = None
        if is_endpoint_url(path_or_object):
            remote = load_endpoint(path_or_object, opts)
        elif is_mlflow_uri(path_or_object):
            remote = load_mlflow_model(path_or_object, opts)
        if remote is not None:  # identified by its URI (and the downloaded file's sha256, for MLflow)
            remote.identity = ModelInfo(
                path=path_or_object,
                format=str(getattr(remote, "format", type(remote).__name__)),
                sha256=getattr(remote, "sha256", None),
            )
            return remote
    if isinstance(path_or_object, str | os.PathLike):
        model = load_file(Path(path_or_object), opts, os.fspath(path_or_object))
        identity = ModelInfo(
            path=os.fspath(path_or_object),
            format=str(getattr(model, "format", type(model).__name__)),
            sha256=sha256_path(path_or_object),  # the one time the file is hashed
        )
        with contextlib.suppress(AttributeError):  # an object that refuses new attributes: no identity
            model.identity = identity  # type: ignore[attr-defined]
        return model
    return adapt_object(path_or_object, opts)


load = load_model


def model_sha256(path: str | os.PathLike[str] | None) -> str | None:
    """SHA-256 of a model file (of a folder's sorted contents); ``None`` for in-memory models."""
    if path is None or not Path(path).exists():
        return None
    return sha256_path(path)


def describe_model(model: Model, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What the report says about a model: path, format, sha256, classes, capabilities, output kind.

    Returns
    -------
    dict
        ``path``, ``format``, ``sha256``, ``n_classes``, ``white_box``, ``features``, ``output``,
        ``input_shape`` and, for scikit-learn models whose classes are not ``0..K-1``, ``classes``.
    """
    caps = capabilities(model)
    identity = getattr(model, "identity", None)
    if path is None and isinstance(identity, ModelInfo):
        path = identity.path
    same_file = isinstance(identity, ModelInfo) and path is not None and os.fspath(path) == identity.path
    info: dict[str, Any] = {
        "path": os.fspath(path) if path is not None else None,
        "format": getattr(model, "format", type(model).__name__),
        "sha256": identity.sha256 if same_file else model_sha256(path),  # type: ignore[union-attr]
        "n_classes": int(model.n_classes),
        "white_box": "white_box" in caps,
        "features": "features" in caps,
        "output": model.output,
        "input_shape": [None if s is None else int(s) for s in model.input_spec.shape],
    }
    classes = getattr(model, "classes_", None)
    if classes is not None and not getattr(model, "classes_are_indices", True):
        info["classes"] = [c.item() if hasattr(c, "item") else c for c in classes]
    return info
