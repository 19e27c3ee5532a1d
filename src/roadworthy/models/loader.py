"""Turn a path or a Python object into a :class:`~roadworthy.models.base.Model`.

Files are recognised by their content first (zip members, magic bytes) and their extension second.
Nothing that could run code from the file is loaded without ``trust_pickle``: pickles and joblib files
are refused before they are opened, ``torch.save`` files go through ``torch.load(weights_only=True)``,
and a ``torch.export`` archive is checked member by member before ``torch.export.load`` sees it.
"""

from __future__ import annotations

import io
import json
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadworthy.errors import InvalidInputError, UnsafeFileError, UnsupportedModelError, first_line
from roadworthy.models._common import prefix
from roadworthy.models.base import Model, OutputKind

SUPPORTED_FORMATS = (
    "TorchScript (.pt/.ts), torch.export (.pt2), ONNX (.onnx), scikit-learn via skops (.skops), "
    "and with --trust-pickle: .pkl/.joblib and whole modules saved with torch.save"
)
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
TORCH_SUFFIXES = (".pt", ".pth", ".ts", ".pt2", ".torchscript")


@dataclass(frozen=True)
class AdapterOptions:
    """What ``load_model`` was asked, passed down to the adapters (the model part of :class:`roadworthy.config.LoadOptions`)."""

    trust_pickle: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_shape: tuple[int, ...] | None = None
    n_classes: int | None = None
    feature_layer: str | None = None
    output: OutputKind | None = None
    http: dict[str, Any] | None = None  #: keyword arguments of HttpModel, for a served model


def unsafe_pickle(path: Path | str) -> UnsafeFileError:
    return UnsafeFileError(
        f"{path}: loading a pickle runs code from the file; pass --trust-pickle if you trust it"
    )


def state_dict_error(path: Path | str) -> InvalidInputError:
    return InvalidInputError(
        f"{path}: this is a state dict (weights only): a state dict has no architecture. Export the model as "
        "TorchScript, torch.export (.pt2) or ONNX, or pass the nn.Module through the Python API"
    )


# -- objects ---------------------------------------------------------------------------------------


def adapt_object(
    obj: Any, opts: AdapterOptions, name: str | None = None, format: str | None = None, as_saved: bool = False
) -> Model:
    """Wrap a Python object: a Model, an ``nn.Module``, an exported program, an estimator or a callable.

    ``as_saved`` (an object read from a file) keeps a module's train/eval mode as it was saved.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(obj, torch.export.ExportedProgram):
            obj, format = obj.module(), format or "torch.export"
        if isinstance(obj, torch.nn.Module):
            from roadworthy.models.torch import TorchModel, _module_kind

            kind = _module_kind(obj)
            default = {"script": "torchscript", "export": "torch.export"}.get(kind, "torch")
            return TorchModel(
                obj,
                input_shape=opts.input_shape,
                n_classes=opts.n_classes,
                mean=opts.mean,
                std=opts.std,
                output=opts.output,
                feature_layer=opts.feature_layer,
                format=format or default,
                name=name,
                as_saved=as_saved,
            )
    if _is_model(obj):
        return obj
    if hasattr(obj, "classes_") or _is_sklearn(obj):
        if not (hasattr(obj, "predict_proba") or hasattr(obj, "decision_function")):
            raise UnsupportedModelError(
                f"{prefix(name)}the scikit-learn model {type(obj).__name__} has neither predict_proba "
                "nor decision_function; roadworthy needs a classifier"
            )
        from roadworthy.models.sklearn import SklearnModel

        if opts.feature_layer is not None:
            raise InvalidInputError(f"{prefix(name)}a scikit-learn model has no feature layer to name")
        model = SklearnModel(
            obj,
            input_shape=opts.input_shape,
            n_classes=opts.n_classes,
            mean=opts.mean,
            std=opts.std,
            output=opts.output,
            name=name,
        )
        model.format = format or "sklearn"
        return model
    if callable(obj):
        from roadworthy.models.function import FunctionModel

        if opts.feature_layer is not None:
            raise InvalidInputError(f"{prefix(name)}a Python function model has no feature layer to name")
        model_fn = FunctionModel(
            obj,
            input_shape=opts.input_shape,
            n_classes=opts.n_classes,
            output=opts.output,
            mean=opts.mean,
            std=opts.std,
        )
        if format:
            model_fn.format = format
        return model_fn
    raise UnsupportedModelError(
        f"{prefix(name)}cannot use a {type(obj).__module__}.{type(obj).__name__} as a model: pass an "
        "nn.Module, a fitted scikit-learn classifier, a callable f(x) -> scores or a file in one of: "
        f"{SUPPORTED_FORMATS}"
    )


def _is_model(obj: Any) -> bool:
    return isinstance(obj, Model) and not isinstance(obj, type)


def _is_sklearn(obj: Any) -> bool:
    base = sys.modules.get("sklearn.base")
    return base is not None and isinstance(obj, base.BaseEstimator)


# -- files -----------------------------------------------------------------------------------------


def load_file(path: Path, opts: AdapterOptions, display: str) -> Model:
    """Load a model file; ``display`` is how the path appears in messages."""
    if not path.exists():
        raise InvalidInputError(f"{display}: no such file")
    if path.is_dir():
        raise UnsupportedModelError(
            f"{display}: is a folder; roadworthy loads one model file: {SUPPORTED_FORMATS}"
        )
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise InvalidInputError(f"{display}: cannot read the file ({first_line(exc)})") from exc
    if not head:
        raise InvalidInputError(f"{display}: the file is empty")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return _load_pickle(path, opts, display)
    if head.startswith(b"PK\x03\x04"):
        return _load_zip(path, opts, display, suffix)
    if suffix == ".onnx":
        return _load_onnx(path, opts, display)
    if suffix in TORCH_SUFFIXES:
        if head[:1] == b"\x80":  # a legacy (non-zip) torch.save file starts with a pickle
            return _load_torch_save(path, opts, display)
        raise InvalidInputError(
            f"{display}: not a valid PyTorch file (truncated or corrupt: neither a zip archive nor a pickle)"
        )
    if suffix == ".skops":
        raise InvalidInputError(
            f"{display}: not a valid skops file (truncated or corrupt: not a zip archive)"
        )
    if head[:1] == b"\x80":
        return _load_pickle(path, opts, display)
    if head[:1] == b"\x08":  # protobuf field 1 (ir_version): an ONNX model without its extension
        return _load_onnx(path, opts, display)
    raise UnsupportedModelError(f"{display}: unknown model format; roadworthy reads {SUPPORTED_FORMATS}")


def _load_zip(path: Path, opts: AdapterOptions, display: str, suffix: str) -> Model:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        kind = "skops" if suffix == ".skops" else "PyTorch"
        raise InvalidInputError(
            f"{display}: not a valid {kind} file (truncated or corrupt: {first_line(exc)})"
        ) from exc
    if bad is not None:
        raise InvalidInputError(f"{display}: not a valid model file (truncated or corrupt: bad member {bad})")
    if any("/code/__torch__" in n or n.startswith("code/__torch__") for n in names):
        return _load_torchscript(path, opts, display)
    if any(_member(n).startswith("models/") and n.endswith(".json") for n in names):
        return _load_export(path, opts, display, names)
    if "schema.json" in names:
        return _load_skops(path, opts, display)
    if any(_member(n) == "data.pkl" for n in names):
        return _load_torch_save(path, opts, display)
    if names and all(n.endswith(".npy") for n in names):
        raise UnsupportedModelError(f"{display}: this is a NumPy .npz data file, not a model")
    raise UnsupportedModelError(f"{display}: unknown zip archive; roadworthy reads {SUPPORTED_FORMATS}")


def _member(name: str) -> str:
    """A zip member's path below the archive's top folder (``m/data.pkl`` -> ``data.pkl``)."""
    return name.split("/", 1)[1] if "/" in name else name


def _load_pickle(path: Path, opts: AdapterOptions, display: str) -> Model:
    if not opts.trust_pickle:
        raise unsafe_pickle(display)
    import joblib

    try:
        obj = joblib.load(path)
    except Exception as exc:  # unpickling errors of any kind, translated at the boundary
        raise InvalidInputError(
            f"{display}: not a valid pickle (truncated or corrupt: {first_line(exc)})"
        ) from exc
    fmt = "joblib" if path.suffix.lower() == ".joblib" else "pickle"
    if isinstance(obj, dict) and _is_state_dict(obj):
        raise state_dict_error(display)
    return adapt_object(obj, opts, name=display, format=fmt, as_saved=True)


def _load_onnx(path: Path, opts: AdapterOptions, display: str) -> Model:
    import onnx

    from roadworthy.models.onnx import OnnxModel

    try:
        proto = onnx.load(str(path))
        data = proto.SerializeToString()
    except Exception as exc:  # protobuf decode errors, translated at the boundary
        raise InvalidInputError(
            f"{display}: not a valid ONNX model (truncated or corrupt: {first_line(exc)})"
        ) from exc
    return OnnxModel(
        data,
        input_shape=opts.input_shape,
        n_classes=opts.n_classes,
        mean=opts.mean,
        std=opts.std,
        output=opts.output,
        feature_layer=opts.feature_layer,
        name=display,
    )


def _load_skops(path: Path, opts: AdapterOptions, display: str) -> Model:
    from roadworthy.models.sklearn import load_skops

    try:
        estimator = load_skops(path, trust_pickle=opts.trust_pickle)
    except InvalidInputError as exc:
        raise type(exc)(str(exc).replace(str(path), display, 1)) from exc
    return adapt_object(estimator, opts, name=display, format="skops")


def _load_torchscript(path: Path, opts: AdapterOptions, display: str) -> Model:
    import torch

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*deprecated.*")
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # TorchScript deserialisation errors, translated at the boundary
        raise InvalidInputError(
            f"{display}: not a valid TorchScript file (truncated or corrupt: {first_line(exc)})"
        ) from exc
    return adapt_object(module, opts, name=display, format="torchscript", as_saved=True)


def _load_export(path: Path, opts: AdapterOptions, display: str, names: list[str]) -> Model:
    import torch

    if not opts.trust_pickle:
        _check_export_archive(path, names, display)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(str(path))
            module = program.module()
    except Exception as exc:  # deserialisation errors, translated at the boundary
        raise InvalidInputError(
            f"{display}: not a valid torch.export file (truncated or corrupt: {first_line(exc)})"
        ) from exc
    return adapt_object(module, opts, name=display, format="torch.export")


def _check_export_archive(path: Path, names: list[str], display: str) -> None:
    """Refuse a ``.pt2`` archive whose pickled members are more than plain tensors.

    ``torch.export.load`` unpickles some members with ``weights_only=False`` (tensor subclasses,
    custom objects, sample inputs); each of them must load with ``weights_only=True`` here first.
    """
    import torch

    def safe(data: bytes) -> bool:
        if not data:
            return True
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - any failure means "not plain tensors"
            return False
        return True

    with zipfile.ZipFile(path) as archive:
        by_member = {_member(n): n for n in names}
        pickled: list[str] = []
        for member, full in by_member.items():
            if member.startswith("data/sample_inputs/") or (
                member.startswith(("data/weights/", "data/constants/")) and member.endswith(".pt")
            ):
                pickled.append(full)
        for member, full in by_member.items():
            if not (
                member.startswith(("data/weights/", "data/constants/")) and member.endswith("config.json")
            ):
                continue
            folder = member.rsplit("/", 1)[0]
            try:
                config = json.loads(archive.read(full)).get("config", {})
            except (ValueError, AttributeError) as exc:
                raise InvalidInputError(f"{display}: not a valid torch.export file (bad {member})") from exc
            for entry in config.values():
                file_name = str(entry.get("path_name", ""))
                target = by_member.get(f"{folder}/{file_name}")
                if file_name.startswith(("custom_obj", "opaque_obj")):
                    raise unsafe_export(display, f"{folder}/{file_name}")
                if entry.get("use_pickle") and target is not None:
                    pickled.append(target)
        for full in pickled:
            if not safe(archive.read(full)):
                raise unsafe_export(display, _member(full))


def unsafe_export(display: str, member: str) -> UnsafeFileError:
    return UnsafeFileError(
        f"{display}: the torch.export archive holds a pickled object ({member}) and loading a pickle "
        "runs code from the file; pass --trust-pickle if you trust it"
    )


def _load_torch_save(path: Path, opts: AdapterOptions, display: str) -> Model:
    import pickle

    import torch

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(str(path), map_location="cpu", weights_only=not opts.trust_pickle)
    except pickle.UnpicklingError as exc:
        if not opts.trust_pickle and "weights only" in str(exc).lower():
            raise unsafe_pickle(display) from exc
        raise InvalidInputError(
            f"{display}: not a valid PyTorch file (truncated or corrupt: {first_line(exc)})"
        ) from exc
    except Exception as exc:  # torch deserialisation errors, translated at the boundary
        raise InvalidInputError(
            f"{display}: not a valid PyTorch file (truncated or corrupt: {first_line(exc)})"
        ) from exc
    if isinstance(obj, dict):
        raise state_dict_error(display)
    if isinstance(obj, torch.Tensor):
        raise UnsupportedModelError(f"{display}: holds a single tensor, not a model")
    return adapt_object(obj, opts, name=display, format="torch.save", as_saved=True)


def _is_state_dict(obj: dict) -> bool:
    """A mapping whose values are tensors or nested mappings of them (a state dict or checkpoint)."""
    torch = sys.modules.get("torch")
    if not obj:
        return False
    for value in obj.values():
        if isinstance(value, dict):
            continue
        if torch is None or not isinstance(value, torch.Tensor):
            return False
    return True
