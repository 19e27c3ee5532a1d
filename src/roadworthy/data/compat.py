"""Check that a data set fits a model: modality, per-sample shape, channel count, labels, columns."""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import numpy as np

from roadworthy.data.base import Dataset
from roadworthy.errors import InvalidInputError, RoadworthyWarning, plural

_LUMINANCE = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def validate_compat(
    model: Any, dataset: Dataset, path: str | None = None, *, check_labels: bool = True
) -> Dataset:
    """The data set, made to fit ``model``, or an :class:`InvalidInputError` saying why it cannot.

    Converts grey images to RGB (or RGB to grey, or drops an alpha channel) with a warning when that is
    all that differs; reorders table columns to the model's feature names; maps labels onto a
    scikit-learn model's ``classes_`` when those are not ``0..K-1``.

    Parameters
    ----------
    model
        A :class:`roadworthy.models.Model`.
    dataset
        The loaded data.
    path
        How the data file is named in messages (default: ``dataset.path``).
    check_labels
        False for data whose labels are not the model's classes (out-of-distribution data): only the
        inputs are made to fit.

    Returns
    -------
    Dataset
        The same data set, or a converted copy.
    """
    display = path or dataset.path or "data"
    spec = model.input_spec
    if spec.modality != dataset.modality:
        raise InvalidInputError(_modality_message(display, spec, dataset))
    if dataset.n_samples == 0:
        raise InvalidInputError(f"{display}: no samples (empty data)")
    if dataset.modality == "image":
        dataset = _fit_image(display, spec.shape, dataset)
    else:
        dataset = _fit_table(display, model, dataset)
    return _fit_labels(display, model, dataset) if check_labels else dataset


def _modality_message(display: str, spec: Any, dataset: Dataset) -> str:
    data_shape = dataset.input_shape
    if spec.modality == "image":
        hint = ""
        if all(s is not None for s in spec.shape) and int(np.prod(spec.shape)) == int(np.prod(data_shape)):
            hint = f"; reshape x to (N, {', '.join(str(s) for s in spec.shape)})"
        return f"{display}: the model takes images {tuple(spec.shape)} but the data is a table of {plural(data_shape[0], 'column')}{hint}"
    hint = ""
    if spec.shape and spec.shape[0] == int(np.prod(data_shape)):
        hint = f"; flatten the images to (N, {spec.shape[0]})"
    return f"{display}: the model takes tables of {spec.shape[0]} features but the data is images {data_shape}{hint}"


def _fit_image(display: str, want: tuple[int | None, ...], dataset: Dataset) -> Dataset:
    have = dataset.input_shape
    c_want, h_want, w_want = want
    c_have, h_have, w_have = have
    if (h_want is not None and h_have != h_want) or (w_want is not None and w_have != w_want):
        hint = f"resize the images to {h_want}x{w_want} (for a folder, image_size={h_want})"
        if sorted(have) == sorted(int(s) for s in want if s is not None) and len(have) == len(want):
            hint = "the data may be channels-last where the model is channels-first (or the reverse)"
        raise InvalidInputError(
            f"{display}: images are {h_have}x{w_have} with {plural(c_have, 'channel')} "
            f"({c_have}, {h_have}, {w_have}) but the model takes {_shape_text(want)}; {hint}"
        )
    if c_want is None or c_have == c_want:
        return dataset
    x = dataset.x
    if c_have == 1 and c_want == 3:
        x, what = np.repeat(x, 3, axis=1), "grey images repeated to 3 channels"
    elif c_have == 3 and c_want == 1:
        x = np.einsum("nchw,c->nhw", x, _LUMINANCE)[:, None].astype(np.float32)
        what = "RGB images converted to grey"
    elif c_have == 4 and c_want == 3:
        x, what = np.ascontiguousarray(x[:, :3]), "alpha channel dropped"
    else:
        raise InvalidInputError(
            f"{display}: images have {plural(c_have, 'channel')} but the model takes {c_want} "
            f"(input {_shape_text(want)})"
        )
    warnings.warn(
        f"{display}: {what} to fit the model's input {_shape_text(want)}", RoadworthyWarning, stacklevel=3
    )
    return replace(dataset, x=x, meta={**dataset.meta, "converted": what})


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"


def _fit_table(display: str, model: Any, dataset: Dataset) -> Dataset:
    want = model.input_spec.shape[0]
    names = getattr(model, "feature_names", None)
    if names is not None and dataset.feature_names is not None and dataset.feature_names != list(names):
        missing = [n for n in names if n not in dataset.feature_names]
        if missing:
            raise InvalidInputError(
                f"{display}: the model expects feature columns the data lacks: {', '.join(missing[:12])}"
            )
        order = [dataset.feature_names.index(n) for n in names]
        extra = [n for n in dataset.feature_names if n not in names]
        if extra:
            warnings.warn(
                f"{display}: columns the model does not use were dropped: {', '.join(extra[:12])}",
                RoadworthyWarning,
                stacklevel=3,
            )
        dataset = replace(dataset, x=np.ascontiguousarray(dataset.x[:, order]), feature_names=list(names))
    have = dataset.input_shape[0]
    if want is not None and have != want:
        raise InvalidInputError(
            f"{display}: the model takes {plural(want, 'feature')} per sample but the data has {have}"
        )
    return dataset


def _fit_labels(display: str, model: Any, dataset: Dataset) -> Dataset:
    classes = getattr(model, "classes_", None)
    if classes is not None and not getattr(model, "classes_are_indices", True):
        return _map_to_classes(display, np.asarray(classes), dataset)
    k = int(model.n_classes)
    names = dataset.class_names
    if dataset.meta.get("label_source") == "sorted" and names is not None and len(names) != k:
        # names numbered in sorted order only match the model's outputs when every class is there
        kind = dataset.meta.get("label_kind", "labels")
        raise InvalidInputError(
            f"{display}: the {kind} name {plural(len(names), 'class', 'classes')} ({_shown(names)}) but "
            f"the model has {plural(k, 'output')}, so which output each name is cannot be told from "
            "positions; pass --class-names with the model's classes in output order (or training data "
            "holding every class)"
        )
    outside = np.flatnonzero((dataset.y < 0) | (dataset.y >= k))
    if outside.size:
        i = int(outside[0])
        raise InvalidInputError(
            f"{display}: labels must be integers in [0, {k}). Found {int(dataset.y[i])} at index {i}."
        )
    n_data = max(len(names) if names is not None else 0, int(dataset.y.max()) + 1 if len(dataset.y) else 0)
    if n_data < k:
        classes = plural(n_data, "class", "classes")
        held = f"names {classes}" if names else f"holds labels of {classes}"
        warnings.warn(
            f"{display}: the data {held} but the model has {plural(k, 'output')}; labels are taken as the "
            "model's class indices and the other outputs still compete for every prediction",
            RoadworthyWarning,
            stacklevel=3,
        )
    if n_data >= k and (names is None or len(names) == k):
        return dataset
    if names is not None:
        names = [*names, *(str(i) for i in range(len(names), k))][:k]
    # the data's own class count stays on record: the padded names no longer show the mismatch
    meta = {**dataset.meta, "n_data_classes": n_data, "n_model_outputs": k}
    return replace(dataset, class_names=names, meta=meta)


def _shown(names: list[str], limit: int = 8) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _map_to_classes(display: str, classes: np.ndarray, dataset: Dataset) -> Dataset:
    """Relabel the data so that label ``k`` means ``classes[k]`` (the model's column ``k``)."""
    values = dataset.meta.get("label_values")
    raw = np.asarray(values, dtype=object)[dataset.y] if values is not None else dataset.y
    lookup = {_key(c): k for k, c in enumerate(classes.tolist())}
    mapped = np.empty(len(raw), dtype=np.int64)
    for i, value in enumerate(raw.tolist()):
        k = lookup.get(_key(value))
        if k is None:
            shown = ", ".join(str(c) for c in classes.tolist()[:12])
            raise InvalidInputError(
                f"{display}: label {value!r} at index {i} is not one of the model's classes ({shown})"
            )
        mapped[i] = k
    names = [str(c) for c in classes.tolist()]
    return replace(
        dataset, y=mapped, class_names=names, meta={**dataset.meta, "labels_mapped_to_classes": True}
    )


def _key(value: Any) -> str:
    """Compare labels across types: ``3``, ``3.0`` and ``"3"`` are the same class."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)
