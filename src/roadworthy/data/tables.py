"""CSV and Parquet tables with a label column (``target``); every other column is a numeric feature.

String labels are matched by name to the class list when one is given; without one, numeric strings
are their own indices and other names are numbered in sorted order (checked against the model later).
Integer labels are used as they are.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from roadworthy.data._validate import check_finite, labels_and_names
from roadworthy.data.base import Dataset
from roadworthy.errors import InvalidInputError, RoadworthyWarning, first_line, require


def load_table(path: Path, display: str, target: str | None, class_names: list[str] | None = None) -> Dataset:
    """Read a ``.csv`` or ``.parquet`` file into float32 features ``(N, D)`` and int64 labels."""
    pd = require("pandas", "tables", "Reading CSV or Parquet data")
    frame = _read(pd, path, display)
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if target is None:
        raise InvalidInputError(
            f"{display}: name the label column with --target COLUMN (columns: {_list(columns)})"
        )
    if target not in columns:
        raise InvalidInputError(f"{display}: no column '{target}' (columns: {_list(columns)})")
    if len(frame) == 0:
        raise InvalidInputError(f"{display}: no rows (empty data)")
    index_like = [c for c in columns if c.startswith("Unnamed: ") and c != target]
    if index_like:
        # pandas writes its row index as "Unnamed: 0" when to_csv is called without index=False
        warnings.warn(
            f"{display}: ignored column{'s' if len(index_like) > 1 else ''} {_list(index_like)} "
            "(a saved row index, not a feature)",
            RoadworthyWarning,
            stacklevel=3,
        )
    features = [c for c in columns if c != target and c not in index_like]
    if not features:
        raise InvalidInputError(f"{display}: no feature columns besides the target '{target}'")
    non_numeric = [
        c
        for c in features
        if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
    ]
    if non_numeric:
        raise InvalidInputError(
            f"{display}: feature columns must be numeric; found non-numeric columns: {_list(non_numeric)} "
            "(encode them as numbers first)"
        )
    x = frame[features].to_numpy(dtype=np.float32, na_value=np.nan)
    check_finite(x, display, "features contain")
    labels_series = frame[target]
    missing = labels_series.isna().to_numpy()
    if missing.any():
        raise InvalidInputError(
            f"{display}: target column '{target}' has {int(missing.sum())} missing values "
            f"(first at index {int(np.flatnonzero(missing)[0])})"
        )
    raw = labels_series.to_numpy()
    if raw.dtype == object:
        raw = raw.astype(str)
    y, names, label_meta = labels_and_names(raw, display, class_names, what=f"target column '{target}'")
    return Dataset(
        x=x,
        y=y,
        modality="tabular",
        class_names=names,
        path=display,
        feature_names=features,
        meta={"format": path.suffix.lower().lstrip("."), "target": target, **label_meta},
    )


def _read(pd: Any, path: Path, display: str) -> Any:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            require("pyarrow", "tables", "Reading Parquet data")
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise InvalidInputError(f"{display}: the file is empty (no columns)") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        kind = "Parquet" if suffix in (".parquet", ".pq") else "CSV"
        raise InvalidInputError(
            f"{display}: not a valid {kind} file (truncated or corrupt: {first_line(exc)})"
        ) from exc


def _list(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
