"""``.npz`` data: arrays ``x`` and ``y`` (and optionally ``class_names``).

Images may be ``N,H,W``, ``N,H,W,C`` or ``N,C,H,W`` with ``C`` in 1, 3 or 4; uint8 (0-255) or float
(0-1). Two-dimensional ``x`` is tabular ``N,D``. Everything comes out as float32, images NCHW in [0, 1].
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from roadworthy.data._validate import apply_class_names, check_finite, integer_labels, labels_and_names
from roadworthy.data.base import Dataset
from roadworthy.errors import InvalidInputError, first_line, plural

_CHANNELS = (1, 3, 4)


def load_npz(
    path: Path, display: str, class_names: list[str] | None = None, channels: int | None = None
) -> Dataset:
    """Read and check an ``.npz`` file; see the module docstring for the layouts it accepts."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
            x_key = _key(keys, ("x", "X"), display, "x")
            y_key = _key(keys, ("y", "Y"), display, "y")
            x = archive[x_key]
            y = archive[y_key]
            names_in_file = archive["class_names"] if "class_names" in keys else None
    except InvalidInputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InvalidInputError(
                f"{display}: holds an object array, which would need unpickling; save numeric arrays"
            ) from exc
        raise InvalidInputError(
            f"{display}: not a valid .npz file (truncated or corrupt: {first_line(exc)})"
        ) from exc
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise InvalidInputError(
            f"{display}: not a valid .npz file (truncated or corrupt: {first_line(exc)})"
        ) from exc
    if x.size == 0 or len(x) == 0:
        raise InvalidInputError(f"{display}: no samples (x is empty, shape {x.shape})")
    if len(y) != len(x):
        raise InvalidInputError(
            f"{display}: x has {plural(len(x), 'sample')} but y has {plural(len(y), 'label')}"
        )
    file_names = None
    if names_in_file is not None:
        file_names = [str(n) for n in np.asarray(names_in_file).ravel().tolist()]
    if np.asarray(y).dtype.kind in "US" or np.asarray(y).dtype == object:
        # string labels are matched by name: to the user's class list, else to the file's own
        labels, names, label_meta = labels_and_names(y, display, class_names or file_names)
    else:
        labels, _ = integer_labels(y, display)
        names = apply_class_names(file_names, class_names, labels, display)
        label_meta = {"label_values": None, "label_source": "index"}
    x, modality, layout = _standardise(x, display, channels)
    return Dataset(
        x=x,
        y=labels,
        modality=modality,  # type: ignore[arg-type]
        class_names=names,
        path=display,
        meta={"format": "npz", "layout": layout, **label_meta},
    )


def _key(keys: list[str], options: tuple[str, ...], display: str, what: str) -> str:
    for k in options:
        if k in keys:
            return k
    raise InvalidInputError(
        f"{display}: missing array '{what}' (the file has: {', '.join(keys) or 'no arrays'}); "
        "save it with np.savez(path, x=images, y=labels)"
    )


def _standardise(x: np.ndarray, display: str, channels: int | None) -> tuple[np.ndarray, str, str]:
    """float32 NCHW in [0, 1] for images, float32 (N, D) for tables; also the layout found."""
    if x.dtype.kind not in "biuf":
        raise InvalidInputError(f"{display}: x must be numeric, got dtype {x.dtype}")
    if x.ndim == 2:
        out = x.astype(np.float32)
        check_finite(out, display)
        return out, "tabular", "ND"
    if x.ndim == 3:
        x, layout = x[:, None], "NHW"
    elif x.ndim == 4:
        layout = _layout(x.shape, channels)
        if layout is None:
            raise InvalidInputError(
                f"{display}: x has shape {x.shape}; images must be N,H,W / N,H,W,C / N,C,H,W "
                "with C in 1, 3 or 4"
            )
        if layout == "NHWC":
            x = x.transpose(0, 3, 1, 2)
    else:
        raise InvalidInputError(
            f"{display}: x has {x.ndim} dimensions (shape {x.shape}); expected N,D tables or "
            "N,H,W / N,H,W,C / N,C,H,W images"
        )
    return _to_unit_range(x, display), "image", layout


def _layout(shape: tuple[int, ...], channels: int | None) -> str | None:
    """``NHWC`` or ``NCHW``: the axis of size 1, 3 or 4 (or ``channels``) next to the sample axis or last.

    When both could be channels, the reading that leaves the larger image wins (channels-last on a tie).
    """
    allowed = (channels,) if channels is not None else _CHANNELS
    first, last = shape[1] in allowed, shape[3] in allowed
    if first and last:
        return "NCHW" if min(shape[2], shape[3]) > min(shape[1], shape[2]) else "NHWC"
    if last:
        return "NHWC"
    if first:
        return "NCHW"
    return None


def _to_unit_range(x: np.ndarray, display: str) -> np.ndarray:
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if x.dtype.kind in "biu":
        low, high = int(x.min()), int(x.max())
        if low < 0 or high > 255:
            raise InvalidInputError(
                f"{display}: integer images must hold values 0-255; found [{low}, {high}]"
            )
        return x.astype(np.float32) / 255.0
    out = x.astype(np.float32)
    check_finite(out, display)
    low, high = float(out.min()), float(out.max())
    if low < -1e-6 or high > 1 + 1e-6:
        raise InvalidInputError(
            f"{display}: float images must be in [0, 1]; found values in [{low:.4g}, {high:.4g}]. "
            "Pass raw pixels (uint8 0-255 or floats 0-1) and give the model's normalisation as --mean/--std"
        )
    return np.clip(out, 0.0, 1.0)
