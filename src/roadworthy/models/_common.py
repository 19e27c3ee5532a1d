"""Helpers the framework adapters share: normalisation in NumPy, fixed-batch splitting, probe errors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from roadworthy._files import sha256_path
from roadworthy.errors import InvalidInputError, first_line, plural

__all__ = [
    "as_shape",
    "check_std",
    "first_line",
    "modality_of",
    "normalise",
    "plural",
    "prefix",
    "run_fixed_batches",
    "sha256_path",
    "stat_array",
]


def prefix(name: str | None) -> str:
    """``"model.onnx: "`` for messages, or nothing when the model has no file."""
    return f"{name}: " if name else ""


def stat_array(values: Sequence[float] | None, shape: tuple[int | None, ...], name: str) -> np.ndarray | None:
    """``--mean`` / ``--std`` as an array that broadcasts over a ``(N, *shape)`` batch.

    Images take one value or one per channel; tabular data one value or one per feature.
    """
    if values is None:
        return None
    v = np.asarray(list(values), dtype=np.float32).ravel()
    if len(shape) == 3:
        channels = shape[0]
        if v.size != 1 and (channels is None or v.size != channels):
            raise InvalidInputError(
                f"`{name}` needs 1 or {channels} values (one per channel). Got {v.size} instead."
            )
        return v.reshape(1, -1, 1, 1)
    width = shape[0] if shape else None
    if v.size != 1 and (width is None or v.size != width):
        raise InvalidInputError(
            f"`{name}` needs 1 or {width} values (one per feature). Got {v.size} instead."
        )
    return v.reshape(1, -1)


def check_std(std: np.ndarray | None) -> None:
    if std is not None and bool((std == 0).any()):
        raise InvalidInputError("`std` must not contain zeros.")


def normalise(x: np.ndarray, mean: np.ndarray | None, std: np.ndarray | None) -> np.ndarray:
    """``(x - mean) / std`` in float32, each part skipped when not given."""
    if mean is not None:
        x = x - mean
    if std is not None:
        x = x / std
    return x.astype(np.float32, copy=False)


def run_fixed_batches(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int | None) -> np.ndarray:
    """Run ``fn`` on ``x`` when the model only accepts exactly ``batch`` samples per call.

    The last chunk is padded with zeros and the padding's outputs are dropped.
    """
    if batch is None or len(x) == batch:
        return fn(x)
    outs = []
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        n = len(chunk)
        if n < batch:
            pad = np.zeros((batch - n, *chunk.shape[1:]), dtype=chunk.dtype)
            chunk = np.concatenate([chunk, pad], axis=0)
        outs.append(np.asarray(fn(chunk))[:n])
    return np.concatenate(outs, axis=0)


def as_shape(shape: Sequence[Any] | None) -> tuple[int, ...] | None:
    """A per-sample shape as a tuple of ints (``None`` stays ``None``)."""
    if shape is None:
        return None
    return tuple(int(s) for s in shape)


def modality_of(shape: Sequence[Any]) -> str:
    return "image" if len(shape) == 3 else "tabular"
