"""Checks every data loader shares: finite values, integer labels, class names from the user."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from roadworthy.errors import InvalidInputError, plural

__all__ = ["apply_class_names", "check_finite", "integer_labels", "labels_and_names", "plural"]


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
    """Labels as int64, with class names when the labels are non-numeric strings (sorted, index = label).

    Numeric strings (``"0"``, ``"10"``) are read as the numbers they are, never sorted as text. Float
    labels are accepted when every value is a whole number; negative labels are refused.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        hint = " (one-hot? use y.argmax(axis=1))" if y.ndim == 2 else ""
        raise InvalidInputError(f"{display}: {what} must be 1-D class labels, got shape {y.shape}{hint}")
    if y.dtype.kind in "US" or y.dtype == object:
        codes, names, _ = labels_from_names(y.astype(str), display, None)
        return codes, names
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


def labels_and_names(
    y: np.ndarray, display: str, given: list[str] | None, what: str = "y"
) -> tuple[np.ndarray, list[str] | None, dict]:
    """Class indices, class names and label provenance for any 1-D labels.

    String labels are matched by name against ``given`` (the class list, in the model's output order);
    see :func:`labels_from_names`. Integer labels are indices already, and ``given`` names them.

    Returns
    -------
    y, class_names, meta
        int64 labels, the names to record, and ``label_values`` / ``label_source`` for the data's meta.
    """
    y = np.asarray(y)
    if y.ndim == 1 and (y.dtype.kind in "US" or y.dtype == object):
        codes, names, meta = labels_from_names(y.astype(str), display, given)
        return codes, names, meta
    codes, _ = integer_labels(y, display, what)
    return (
        codes,
        apply_class_names(None, given, codes, display),
        {"label_values": None, "label_source": "index"},
    )


def labels_from_names(
    values: np.ndarray, display: str, given: list[str] | None, noun: str = "label"
) -> tuple[np.ndarray, list[str] | None, dict]:
    """Class indices for textual labels (string labels or class-folder names), never by position alone.

    With a class list ``given``, each value is the index of its name in that list (values that are all
    whole numbers may instead be indices into it); a value that is neither is an error naming it.
    Without one, whole numbers (``"0"`` ... ``"11"``) are their own indices, and any other names are
    numbered in sorted order: a guess at the model's output order that only holds for a complete
    class set, so ``label_source`` is ``"sorted"`` and the data is checked against the model later
    (:func:`roadworthy.data.compat.validate_compat`).

    Returns
    -------
    y, class_names, meta
        int64 indices; the class names to record (``None`` for bare numbers); ``label_values`` (name of
        each index, for mapping onto a model's own classes) and ``label_source`` (``"names"``,
        ``"numeric"`` or ``"sorted"``).
    """
    values = np.asarray([str(v).strip() for v in np.asarray(values).tolist()], dtype=object)
    distinct = sorted(set(values.tolist()))
    numeric = all(v.isascii() and v.isdigit() for v in distinct)
    if given is not None:
        index = {name: i for i, name in enumerate(given)}
        unknown = [v for v in distinct if v not in index]
        if not unknown:
            codes = np.array([index[v] for v in values.tolist()], dtype=np.int64)
            return codes, list(given), {"label_values": list(given), "label_source": "names"}
        if numeric:
            codes = np.array([int(v) for v in values.tolist()], dtype=np.int64)
            top = int(codes.max())
            if top >= len(given):
                raise InvalidInputError(
                    f"{display}: {plural(len(given), 'class name')} given but the labels go up to {top}"
                )
            return codes, list(given), {"label_values": list(given), "label_source": "numeric"}
        many = len(unknown) > 1
        raise InvalidInputError(
            f"{display}: {noun}{'s' if many else ''} {_names(unknown)} {'are' if many else 'is'} not among "
            f"the class names ({_names(given, quote=False)}); labels are matched to the class list by name"
        )
    if numeric:
        codes = np.array([int(v) for v in values.tolist()], dtype=np.int64)
        return codes, None, {"label_values": None, "label_source": "numeric"}
    index = {name: i for i, name in enumerate(distinct)}
    codes = np.array([index[v] for v in values.tolist()], dtype=np.int64)
    return codes, distinct, {"label_values": distinct, "label_source": "sorted"}


def _names(names: Sequence[str], limit: int = 12, quote: bool = True) -> str:
    shown = ", ".join(repr(n) if quote else str(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


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
            f"{display}: `class_names` gives {plural(len(given), 'name')} but the data has "
            f"{plural(len(found), 'class', 'classes')} "
            f"({', '.join(found[:10])})"
        )
    top = int(y.max()) if len(y) else -1
    if top >= len(given):
        raise InvalidInputError(
            f"{display}: `class_names` gives {plural(len(given), 'name')} but the labels go up to {top}"
        )
    return given
