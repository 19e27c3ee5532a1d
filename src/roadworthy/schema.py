"""The feature schema of a table: what each column may hold, so that shifts and attacks stay realistic.

A column is ``continuous`` (any value in its observed range), ``integer`` (whole numbers in its range),
``binary`` (two observed values) or ``categorical`` (a few observed integer codes, its *levels*).
Immutable columns (age, country: what the user says no shift or attacker may change) are kept as they
are by :meth:`Schema.project`. Binary columns that encode one category together (``color_red``,
``color_blue``, ...: one shared name prefix, exactly one 1 in every row) form a *one-hot group*: a
projected row keeps exactly one of them set (the largest value wins, a relaxed one-hot snapped by argmax).
The schema is inferred from the training data (:func:`infer_schema`)
and overridden by the policy file's ``schema`` section (``immutable``, ``kinds``, ``ranges``).

Ground floor: imports nothing of roadworthy but :mod:`roadworthy.errors`, so shifts, attacks and OOD
sources can all project onto it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from roadworthy.errors import InvalidInputError

__all__ = ["KINDS", "Feature", "Schema", "infer_schema"]

KINDS = ("continuous", "integer", "binary", "categorical")
#: An integer column with at most this many distinct values is categorical (codes of a category).
MAX_LEVELS = 10


@dataclass(frozen=True)
class Feature:
    """One column: its kind, observed range and levels, and the statistics shifts fill in with.

    Attributes
    ----------
    name
        The column's name in the data.
    kind
        One of :data:`KINDS`.
    low, high
        The observed (or overridden) range; projection clips into it.
    levels
        The valid values of a binary or categorical column (empty for numeric ones).
    mean, std
        Mean and standard deviation in the data the schema was inferred from (``std`` > 0).
    mode
        The most frequent value (what a dropped categorical column is filled with).
    immutable
        True when no shift or attack may change the column.
    """

    name: str
    kind: str
    low: float
    high: float
    levels: tuple[float, ...] = ()
    mean: float = 0.0
    std: float = 1.0
    mode: float = 0.0
    immutable: bool = False

    @property
    def numeric(self) -> bool:
        return self.kind in ("continuous", "integer")

    @property
    def fill(self) -> float:
        """The value a dropped-out column takes: the mean (rounded for integers), the mode for categories."""
        if self.kind == "continuous":
            return float(self.mean)
        if self.kind == "integer":
            return float(np.clip(np.round(self.mean), self.low, self.high))
        return float(self.mode)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "low": float(self.low),
            "high": float(self.high),
            "immutable": self.immutable,
        }
        if self.levels:
            out["levels"] = [float(v) for v in self.levels]
        return out


@dataclass(frozen=True)
class Schema:
    """The columns of a table in order, and the projection every shifted or adversarial row goes through."""

    features: tuple[Feature, ...]
    source: str = "inferred"
    overridden: tuple[str, ...] = field(default_factory=tuple)
    #: one-hot groups: column indices of binary columns that hold one category together
    groups: tuple[tuple[int, ...], ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def indices(self, *kinds: str, mutable: bool = True) -> np.ndarray:
        """Column indices of the given kinds (all kinds when none), mutable ones only by default."""
        return np.array(
            [
                i
                for i, f in enumerate(self.features)
                if (not kinds or f.kind in kinds) and (not mutable or not f.immutable)
            ],
            dtype=np.int64,
        )

    @property
    def immutable(self) -> np.ndarray:
        return np.array([f.immutable for f in self.features], bool)

    @property
    def mean(self) -> np.ndarray:
        return np.array([f.mean for f in self.features], np.float64)

    @property
    def std(self) -> np.ndarray:
        return np.array([f.std for f in self.features], np.float64)

    @property
    def low(self) -> np.ndarray:
        return np.array([f.low for f in self.features], np.float64)

    @property
    def high(self) -> np.ndarray:
        return np.array([f.high for f in self.features], np.float64)

    def project(
        self, x: np.ndarray, original: np.ndarray | None = None, *, keep_range: bool = True
    ) -> np.ndarray:
        """``x`` moved onto the schema's domain; NaN (a missing value) stays NaN.

        Immutable columns are copied from ``original`` (when given), numeric columns clipped to their range
        (unless ``keep_range`` is False: a unit drift or an outlier leaves it on purpose), integer columns
        rounded, binary and categorical columns snapped to their nearest level.
        """
        out = np.array(x, dtype=np.float32, copy=True)
        if out.ndim != 2 or out.shape[1] != len(self.features):
            raise InvalidInputError(
                f"schema projection: expected rows of {len(self.features)} features, got shape {out.shape}"
            )
        # one-hot groups: a row that is no valid one-hot takes the largest of its relaxed values (argmax)
        winners = []
        for cols in self.groups:
            block = out[:, cols]
            finite = np.all(np.isfinite(block), axis=1)
            bad = finite & ~_is_one_hot(block)
            winners.append((np.asarray(cols), bad, block.argmax(axis=1)))
        for j, f in enumerate(self.features):
            col = out[:, j]
            if f.immutable and original is not None:
                out[:, j] = original[:, j]
                continue
            if f.kind in ("binary", "categorical") and f.levels:
                levels = np.asarray(f.levels, np.float32)
                finite = np.isfinite(col)
                near = levels[np.abs(col[finite, None] - levels[None, :]).argmin(axis=1)]
                col[finite] = near
                continue
            if f.kind == "integer":
                col = np.round(col)
            if keep_range:
                col = np.clip(col, f.low, f.high)
            out[:, j] = col
        for cols, bad, arg in winners:
            if self.immutable[cols].any():
                continue  # copied from the original above (or left as given without one)
            rows = np.flatnonzero(bad)
            out[np.ix_(rows, cols)] = 0.0
            out[rows, cols[arg[rows]]] = 1.0
        return out

    def violations(self, x: np.ndarray, original: np.ndarray) -> dict[str, int]:
        """How many changed cells break each constraint (``immutable``, ``integer``, ``levels``, ``range``,
        ``missing``); a cell equal to its ``original`` counts for none, and a changed cell breaks the range only
        when it lies further outside it than the original did (the data may already leave its range).

        Used by the tests and the checks' self-diagnosis: a schema-respecting attack has all zeros.
        """
        x = np.asarray(x, np.float64)
        original = np.asarray(original, np.float64)
        out = {"immutable": 0, "integer": 0, "levels": 0, "range": 0, "missing": 0}
        for j, f in enumerate(self.features):
            col, orig = x[:, j], original[:, j]
            nan = np.isnan(col)
            changed = ~((col == orig) | (nan & np.isnan(orig)))
            out["missing"] += int(np.sum(nan & changed))
            if f.immutable:
                out["immutable"] += int(changed.sum())
            sel = changed & ~nan
            v, o = col[sel], orig[sel]
            if f.kind == "integer":
                out["integer"] += int(np.sum(v != np.round(v)))
            if f.kind in ("binary", "categorical") and f.levels:
                out["levels"] += int(np.sum(~np.isin(v, np.asarray(f.levels, np.float64))))
            tol = 1e-5 * max(1.0, abs(f.high), abs(f.low))
            # an input already outside the range may move, but not further out than it was
            low, high = np.fmin(f.low, o), np.fmax(f.high, o)
            out["range"] += int(np.sum((v < low - tol) | (v > high + tol)))
        for cols in self.groups:  # a changed group that is no valid one-hot holds no valid level
            block, orig = x[:, cols], original[:, cols]
            changed = np.any(~((block == orig) | (np.isnan(block) & np.isnan(orig))), axis=1)
            finite = np.all(np.isfinite(block), axis=1)
            out["levels"] += int(np.sum(changed & finite & ~_is_one_hot(block)))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "overridden": list(self.overridden),
            "features": [f.to_dict() for f in self.features],
            "counts": {k: sum(f.kind == k for f in self.features) for k in KINDS},
            "immutable": [f.name for f in self.features if f.immutable],
            "one_hot": [[self.features[j].name for j in cols] for cols in self.groups],
        }


def _is_one_hot(block: np.ndarray) -> np.ndarray:
    """Per row: every value 0 or 1 and exactly one 1."""
    return np.all((block == 0) | (block == 1), axis=1) & (block.sum(axis=1) == 1)


def _one_hot_groups(x: np.ndarray, features: Sequence[Feature]) -> tuple[tuple[int, ...], ...]:
    """Binary columns sharing a name prefix (before the last ``_``, ``=``, ``:`` or ``.``) with exactly one
    1 in every complete row: the one-hot encoding of one category (at least two columns)."""
    import re

    by_prefix: dict[str, list[int]] = {}
    for j, f in enumerate(features):
        if f.kind == "binary" and set(f.levels) <= {0.0, 1.0}:
            m = re.match(r"^(.+)[_=:.][^_=:.]+$", f.name)
            if m:
                by_prefix.setdefault(m.group(1), []).append(j)
    groups = []
    for cols in by_prefix.values():
        if len(cols) < 2:
            continue
        block = x[:, cols]
        complete = np.all(np.isfinite(block), axis=1)
        if complete.any() and bool(np.all(_is_one_hot(block[complete]))):
            groups.append(tuple(cols))
    return tuple(groups)


def _kind(col: np.ndarray, max_levels: int) -> str:
    finite = col[np.isfinite(col)]
    values = np.unique(finite)
    if len(values) <= 2 and set(values.tolist()) <= {0.0, 1.0}:
        return "binary"
    whole = bool(np.all(finite == np.round(finite)))
    if whole and len(values) <= max_levels and len(values) < max(3, len(finite) // 5):
        return "categorical"
    return "integer" if whole else "continuous"


def infer_schema(
    x: np.ndarray,
    names: Sequence[str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    max_levels: int = MAX_LEVELS,
    source: str = "inferred from the data",
) -> Schema:
    """The schema of the table ``x`` ``(N, D)``, with the user's ``overrides`` applied.

    Parameters
    ----------
    x
        The rows the schema is inferred from (the training data where there is one).
    names
        Column names; ``f0, f1, ...`` when None.
    overrides
        ``{"immutable": [names], "kinds": {name: kind}, "ranges": {name: [low, high]}, "one_hot": [[names],
        ...]}``, any key optional (the policy file's ``schema`` section). ``one_hot`` lists the one-hot
        encoded categories (each a list of at least two 0/1 columns with exactly one 1 per complete row); it
        replaces the groups inferred by name prefix (``one_hot: []``: none). Unknown column names raise
        :class:`InvalidInputError`.
    max_levels
        An integer column with at most this many distinct values (and few relative to the rows) is
        categorical.
    source
        Where the schema came from, shown in the report.

    Examples
    --------
    >>> s = infer_schema(np.array([[0, 1.5, 3], [1, 2.5, 4], [1, 0.5, 3]]), ["a", "b", "c"])
    >>> [f.kind for f in s.features]
    ['binary', 'continuous', 'categorical']
    """
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise InvalidInputError(f"schema: expected a non-empty table (N, D), got shape {x.shape}")
    names = [str(n) for n in names] if names is not None else [f"f{j}" for j in range(x.shape[1])]
    if len(names) != x.shape[1]:
        raise InvalidInputError(f"schema: {len(names)} feature names for {x.shape[1]} columns")
    features = []
    for j, name in enumerate(names):
        col = x[:, j]
        finite = col[np.isfinite(col)]
        if finite.size == 0:
            finite = np.zeros(1)
        kind = _kind(finite, max_levels)
        values, counts = np.unique(finite, return_counts=True)
        std = float(finite.std())
        features.append(
            Feature(
                name=name,
                kind=kind,
                low=float(finite.min()),
                high=float(finite.max()),
                levels=tuple(float(v) for v in values) if kind in ("binary", "categorical") else (),
                mean=float(finite.mean()),
                std=std if std > 0 else 1.0,
                mode=float(values[counts.argmax()]),
            )
        )
    schema = Schema(tuple(features), source=source, groups=_one_hot_groups(x, features))
    return _override(schema, overrides or {}, x) if overrides else schema


def _names(value: Any, key: str, known: Iterable[str]) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidInputError(f"schema.{key}: expected a list of column names, got {value!r}")
    unknown = [v for v in value if v not in set(known)]
    if unknown:
        raise InvalidInputError(
            f"schema.{key}: no column named {', '.join(map(repr, unknown))} (columns: {', '.join(known)})"
        )
    return list(value)


def _override(schema: Schema, overrides: Mapping[str, Any], x: np.ndarray) -> Schema:
    unknown_keys = set(overrides) - {"immutable", "kinds", "ranges", "one_hot"}
    if unknown_keys:
        raise InvalidInputError(
            f"schema: unknown key(s) {', '.join(sorted(unknown_keys))}; allowed: immutable, kinds, ranges, one_hot"
        )
    names = schema.names
    feats = {f.name: f for f in schema.features}
    touched: list[str] = []
    for name in _names(overrides.get("immutable", []), "immutable", names):
        feats[name] = replace(feats[name], immutable=True)
        touched.append(name)
    kinds = overrides.get("kinds", {}) or {}
    if not isinstance(kinds, Mapping):
        raise InvalidInputError(f"schema.kinds: expected a mapping of column name to kind, got {kinds!r}")
    for name, kind in kinds.items():
        _names([name], "kinds", names)
        if kind not in KINDS:
            raise InvalidInputError(f"schema.kinds.{name}: expected one of {', '.join(KINDS)}, got {kind!r}")
        col = x[:, names.index(name)]
        values = np.unique(col[np.isfinite(col)])
        levels = tuple(float(v) for v in values) if kind in ("binary", "categorical") else ()
        feats[name] = replace(feats[name], kind=kind, levels=levels)
        touched.append(name)
    ranges = overrides.get("ranges", {}) or {}
    if not isinstance(ranges, Mapping):
        raise InvalidInputError(
            f"schema.ranges: expected a mapping of column name to [low, high], got {ranges!r}"
        )
    for name, bounds in ranges.items():
        _names([name], "ranges", names)
        ok = isinstance(bounds, list | tuple) and len(bounds) == 2
        if not ok or not all(isinstance(b, int | float) for b in bounds) or bounds[0] > bounds[1]:
            raise InvalidInputError(
                f"schema.ranges.{name}: expected [low, high] with low <= high, got {bounds!r}"
            )
        feats[name] = replace(feats[name], low=float(bounds[0]), high=float(bounds[1]))
        touched.append(name)
    groups = schema.groups
    if "one_hot" in overrides:
        groups = _declared_groups(overrides["one_hot"], names, x)
        for g in groups:
            for j in g:
                feats[names[j]] = replace(feats[names[j]], kind="binary", levels=(0.0, 1.0))
                touched.append(names[j])
    features = tuple(feats[n] for n in names)
    return Schema(
        features,
        source=schema.source + " with the policy's overrides",
        overridden=tuple(dict.fromkeys(touched)),
        # a group stays one while all its columns stay binary
        groups=tuple(g for g in groups if all(features[j].kind == "binary" for j in g)),
    )


def _declared_groups(value: Any, names: Sequence[str], x: np.ndarray) -> tuple[tuple[int, ...], ...]:
    """The policy's ``one_hot`` groups as column indices, each checked against the data: at least two
    columns, no column in two groups, and every complete row holding 0/1 values with exactly one 1."""
    if not isinstance(value, list | tuple):
        raise InvalidInputError(f"schema.one_hot: expected a list of lists of column names, got {value!r}")
    seen: set[str] = set()
    groups = []
    for i, group in enumerate(value):
        cols = _names(group, f"one_hot[{i}]", names)
        if len(cols) < 2 or len(set(cols)) != len(cols):
            raise InvalidInputError(
                f"schema.one_hot[{i}]: expected at least two different columns, got {group!r}"
            )
        twice = seen.intersection(cols)
        if twice:
            raise InvalidInputError(
                f"schema.one_hot[{i}]: column {sorted(twice)[0]!r} is already in another one-hot group"
            )
        seen.update(cols)
        idx = tuple(names.index(c) for c in cols)
        block = x[:, list(idx)]
        complete = np.all(np.isfinite(block), axis=1)
        bad = np.flatnonzero(complete)[~_is_one_hot(block[complete])]
        if bad.size:
            raise InvalidInputError(
                f"schema.one_hot[{i}]: row {int(bad[0])} of the data is not one-hot over {', '.join(cols)} "
                f"(values {block[bad[0]].tolist()}; {bad.size} such rows): each row needs 0/1 values and "
                "exactly one 1"
            )
        groups.append(idx)
    return tuple(groups)
