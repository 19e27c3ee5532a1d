"""Checks every data loader shares: finite values, integer labels, class names from the user."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from roadworthy.errors import InvalidInputError


def check_finite(x: np.ndarray, display: str, what: str = "x contains") -> None:
    """Refuse NaN or infinite values, naming how many and the first sample that holds one."""
    if not np.issubdtype(x.dtype, np.floating) or len(x) == 0:
        return
    bad = ~np.isfinite(x.reshape(len(x), -1))
    count = int(bad.sum())
    if count:
        first = int(np.flatnonzero(bad.any(axis=1))[0])
        raise InvalidInputError(f"{display}: {what} {count} NaN or infinite values (first at index {first})")


def integer_labels(y: np.ndarray, display: str, what: str = "y") -> tuple[np.ndarray, list[str] | None]:
    """Labels as int64, with class names when the labels are strings (sorted, index = label).

    Float labels are accepted when every value is a whole number; negative labels are refused.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        hint = " (one-hot? use y.argmax(axis=1))" if y.ndim == 2 else ""
        raise InvalidInputError(f"{display}: {what} must be 1-D class labels, got shape {y.shape}{hint}")
    if y.dtype.kind in "US" or y.dtype == object:
        values = y.astype(str)
        names = sorted(set(values.tolist()))
        index = {name: i for i, name in enumerate(names)}
        return np.array([index[v] for v in values], dtype=np.int64), names
    if y.dtype.kind == "b":
        return y.astype(np.int64), None
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidInputError(
                f"{display}: {what} must hold integer class labels. Found {y[i].item()!r} at index {i}."
            )
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iu":
        raise InvalidInputError(f"{display}: {what} must hold integer class labels, got dtype {y.dtype}")
    y = y.astype(np.int64)
    negative = np.flatnonzero(y < 0)
    if negative.size:
        i = int(negative[0])
        raise InvalidInputError(
            f"{display}: labels must be non-negative integers. Found {int(y[i])} at index {i}."
        )
    return y, None


def parse_class_names(class_names: str | Sequence[str] | None) -> list[str] | None:
    """``"cat,dog"`` or ``["cat", "dog"]`` as a list (whitespace stripped); ``None`` stays ``None``."""
    if class_names is None:
        return None
    if isinstance(class_names, str):
        names = [n.strip() for n in class_names.split(",")]
    else:
        names = [str(n).strip() for n in class_names]
    if not names or any(not n for n in names):
        raise InvalidInputError(
            f"`class_names` must be non-empty names separated by commas. Got {class_names!r}."
        )
    if len(set(names)) != len(names):
        raise InvalidInputError(f"`class_names` must not repeat a name. Got {class_names!r}.")
    return names


def apply_class_names(
    found: list[str] | None, given: list[str] | None, y: np.ndarray, display: str
) -> list[str] | None:
    """The class names to record: the user's (checked against the labels) or those found in the data."""
    if given is None:
        return found
    if found is not None and len(given) != len(found):
        raise InvalidInputError(
            f"{display}: `class_names` gives {len(given)} names but the data has {len(found)} classes "
            f"({', '.join(found[:10])})"
        )
    top = int(y.max()) if len(y) else -1
    if top >= len(given):
        raise InvalidInputError(
            f"{display}: `class_names` gives {len(given)} names but the labels go up to {top}"
        )
    return given
