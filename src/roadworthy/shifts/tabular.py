"""Tabular shifts: graded, reproducible changes of a table that a deployed model meets, usable without a check.

A tabular shift maps rows ``x`` ``(N, D)`` (float), their labels ``y``, a severity 1..5, a generator and
the table's :class:`~roadworthy.schema.Schema` to a :class:`Shifted` batch: the changed rows and which
input row each came from (resampling shifts choose rows, the others keep them). Every shift leaves the
schema's immutable columns as they were; integer columns stay whole and categorical columns stay on their
levels unless the shift's ``breaks`` says that leaving them is the point (an unseen category, a value out
of the observed range, a missing value).

The shifts, each scaled to the feature's spread so that one severity means the same on every table:

========================  ===================================================================================
``tab_gaussian_noise``    noise of 0.1-0.75 standard deviations on every mutable numeric feature
``tab_missing_values``    5-50% of the mutable cells set to NaN (a model whose pipeline does not impute fails)
``tab_unit_drift``        one numeric feature per row multiplied by 1.5-10 (a site that records cm, not m)
``tab_category_shift``    10-50% of the categorical values redrawn with the levels' frequencies reversed
``tab_unseen_category``   5-40% of the rows get a level of one categorical feature never seen in training
``tab_feature_dropout``   1 feature up to half the mutable features replaced by the training mean or mode
``tab_outliers``          2-30% of the rows get one numeric feature 3-12 standard deviations past its range
``tab_covariate_shift``   rows resampled with importance weights along the first principal direction
``tab_label_shift``       rows resampled so that the class prior tilts towards the rarest class
========================  ===================================================================================

Use from Python::

    from roadworthy.schema import infer_schema
    from roadworthy.shifts.tabular import TAB_SHIFTS, scale_feature

    schema = infer_schema(x_train, names)
    out = TAB_SHIFTS["tab_gaussian_noise"].apply(x, y, 3, np.random.default_rng(0), schema)
    out.x, out.rows                                   # changed rows; y[out.rows] are their labels
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from roadworthy.errors import InvalidInputError
from roadworthy.schema import Schema

__all__ = ["DRIFT_FACTORS", "TAB_SHIFTS", "Shifted", "TabularShift", "scale_feature", "tab_shift"]

MAX_SEVERITY = 5
#: The unit/scale factor of :func:`scale_feature` per severity (1.5x up to a factor of ten: mm vs cm).
DRIFT_FACTORS = (1.5, 2.0, 2.54, 5.0, 10.0)


@dataclass(frozen=True)
class Shifted:
    """A shifted batch: ``x`` the changed rows, ``rows`` the index of the input row each came from."""

    x: np.ndarray
    rows: np.ndarray


ShiftFn = Callable[[np.ndarray, np.ndarray, int, np.random.Generator, Schema], Shifted]


@dataclass(frozen=True)
class TabularShift:
    """A registered tabular shift.

    Attributes
    ----------
    name
        ``tab_<snake_case>``; the check is ``shift.<name>``.
    group
        ``noise``, ``missing``, ``drift``, ``category``, ``outlier`` or ``population``.
    description
        One sentence for the report.
    breaks
        The schema constraints the shift leaves on purpose (``range``, ``levels``, ``missing``).
    needs
        ``"categorical"`` when it changes only categorical columns, ``"numeric"`` for numeric ones, or "".
    fn
        The function ``fn(x, y, severity, rng, schema) -> Shifted``.
    """

    name: str
    group: str
    description: str
    breaks: frozenset[str]
    needs: str
    fn: ShiftFn

    def applicable(self, schema: Schema) -> str | None:
        """Why the shift cannot change this table, or None when it can."""
        if self.needs == "categorical" and not len(schema.indices("binary", "categorical")):
            return "the table has no mutable binary or categorical column"
        if self.needs == "numeric" and not len(schema.indices("continuous", "integer")):
            return "the table has no mutable numeric column"
        if not len(schema.indices()):
            return "every column is immutable"
        return None

    def apply(
        self, x: np.ndarray, y: np.ndarray, severity: int, rng: np.random.Generator, schema: Schema
    ) -> Shifted:
        """The shifted batch at ``severity`` (1..5); immutable columns are restored whatever the function did."""
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != len(schema):
            raise InvalidInputError(
                f"{self.name}: expected rows of {len(schema)} features, got shape {x.shape}"
            )
        if not 1 <= int(severity) <= MAX_SEVERITY:
            raise InvalidInputError(f"{self.name}: severity must be 1..{MAX_SEVERITY}, got {severity}")
        out = self.fn(x, np.asarray(y), int(severity), rng, schema)
        if schema.groups and "levels" not in self.breaks:  # a one-hot group left invalid keeps the input's
            fixed = out.x.copy()
            for cols in schema.groups:
                block = fixed[:, cols]
                valid = np.all((block == 0) | (block == 1), axis=1) & (block.sum(axis=1) == 1)
                bad = np.flatnonzero(~valid & np.all(np.isfinite(block), axis=1))
                fixed[np.ix_(bad, cols)] = x[out.rows][np.ix_(bad, cols)]
            out = Shifted(fixed, out.rows)
        frozen = schema.immutable
        if frozen.any():
            fixed = out.x.copy()
            fixed[:, frozen] = x[out.rows][:, frozen]
            out = Shifted(fixed, out.rows)
        return out


TAB_SHIFTS: dict[str, TabularShift] = {}


def tab_shift(
    name: str, group: str, description: str, breaks: tuple[str, ...] = (), needs: str = ""
) -> Callable[[ShiftFn], ShiftFn]:
    """Register ``fn(x, y, severity, rng, schema) -> Shifted`` as the tabular shift ``name``."""

    def wrap(fn: ShiftFn) -> ShiftFn:
        if name in TAB_SHIFTS:
            raise ValueError(f"tabular shift {name!r} is registered twice")
        TAB_SHIFTS[name] = TabularShift(name, group, description, frozenset(breaks), needs, fn)
        return fn

    return wrap


def _same_rows(x: np.ndarray) -> np.ndarray:
    return np.arange(len(x))


def _random_column(rng: np.random.Generator, cols: np.ndarray, n: int) -> np.ndarray:
    return cols[rng.integers(0, len(cols), n)]


# ---------------------------------------------------------------------------------------------- shifts


@tab_shift(
    "tab_gaussian_noise", "noise", "Gaussian noise scaled to each numeric feature's spread.", needs="numeric"
)
def gaussian_noise(
    x: np.ndarray, y: np.ndarray, severity: int, rng: np.random.Generator, schema: Schema
) -> Shifted:
    c = (0.1, 0.2, 0.35, 0.5, 0.75)[severity - 1]
    cols = schema.indices("continuous", "integer")
    out = x.copy()
    out[:, cols] += (rng.standard_normal((len(x), len(cols))) * c * schema.std[cols]).astype(np.float32)
    return Shifted(schema.project(out, x), _same_rows(x))


@tab_shift(
    "tab_missing_values",
    "missing",
    "Missing values (NaN) in a share of the mutable cells, as a broken sensor or an empty form field.",
    breaks=("missing",),
)
def missing_values(
    x: np.ndarray, y: np.ndarray, severity: int, rng: np.random.Generator, schema: Schema
) -> Shifted:
    p = (0.05, 0.1, 0.2, 0.3, 0.5)[severity - 1]
    cols = schema.indices()
    out = x.copy()
    block = out[:, cols]
    block[rng.random(block.shape) < p] = np.nan
    out[:, cols] = block
    return Shifted(out, _same_rows(x))


def scale_feature(x: np.ndarray, column: int, severity: int, schema: Schema) -> np.ndarray:
    """Column ``column`` of every row multiplied by ``DRIFT_FACTORS[severity - 1]`` (a unit change).

    Integer columns are rounded after scaling (the other site records whole numbers too); the range is
    left on purpose: the drifted values are what the model would see.
    """
    out = np.array(x, np.float32, copy=True)
    f = schema.features[column]
    col = out[:, column] * DRIFT_FACTORS[severity - 1]
    out[:, column] = np.round(col) if f.kind == "integer" else col
    return out


@tab_shift(
    "tab_unit_drift",
    "drift",
    "One numeric feature per row recorded in another unit or scale (x1.5 up to x10).",
    breaks=("range",),
    needs="numeric",
)
def unit_drift(
    x: np.ndarray, y: np.ndarray, severity: int, rng: np.random.Generator, schema: Schema
) -> Shifted:
    cols = schema.indices("continuous", "integer")
    pick = _random_column(rng, cols, len(x))
    out = x.copy()
    for j in np.unique(pick):
        rows = pick == j
        out[rows] = scale_feature(x[rows], int(j), severity, schema)
    return Shifted(out, _same_rows(x))


@tab_shift(
    "tab_category_shift",
    "category",
    "Categorical values redrawn with the levels' frequencies reversed (the rare level becomes common).",
    needs="categorical",
)
def category_shift(
    x: np.ndarray, y: np.ndarray, severity: int, rng: np.random.Generator, schema: Schema
) -> Shifted:
    p = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
    out = x.copy()
    grouped = {j for g in schema.groups for j in g}
    for g in schema.groups:  # a one-hot group is one categorical: its members' frequencies reversed
        cols = np.asarray(g)
        if schema.immutable[cols].any():
            continue
        counts = x[:, cols].sum(axis=0).astype(float) + 1.0
        weights = np.sort(counts)[np.argsort(np.argsort(-counts))]
        redraw = np.flatnonzero(rng.random(len(x)) < p)
        member = rng.choice(len(cols), size=len(redraw), p=weights / weights.sum())
        out[np.ix_(redraw, cols)] = 0.0
        out[redraw, cols[member]] = 1.0
    for j in schema.indices("binary", "categorical"):
        if int(j) in grouped:
            continue
        levels = np.asarray(schema.features[j].levels, np.float32)
        counts = np.array([np.sum(x[:, j] == v) for v in levels], float) + 1.0
        weights = np.sort(counts)[
            np.argsort(np.argsort(-counts))
        ]  # the k-th most frequent gets the k-th rarest
        redraw = rng.random(len(x)) < p
        out[redraw, j] = rng.choice(levels, size=int(redraw.sum()), p=weights / weights.sum())
    return Shifted(out, _same_rows(x))


@tab_shift(
    "tab_unseen_category",
    "category",
    "A level of one categorical feature that never occurred in training (a new product, a new country).",
    breaks=("levels", "range"),
    needs="categorical",
)
def unseen_category(
    x: np.ndarray, y: np.ndarray, severity: int, rng: np.random.Generator, schema: Schema
) -> Shifted:
    p = (0.05, 0.1, 0.2, 0.3, 0.4)[severity - 1]
    cols = schema.indices("binary", "categorical")
    out = x.copy()
    hit = np.flatnonzero(rng.random(len(x)) < p)
    pick = _random_column(rng, cols, len(hit))
    for r, j in zip(hit, pick, strict=True):
        out[r, j] = max(schema.features[j].levels) + 1.0
    return Shifted(out, _same_rows(x))


@tab_shift(
    "tab_feature_dropout",
    "missing",
    "Whole features lost and filled with the training mean (numeric) or mode (categorical).",
)
def feature_dropout(
    x: np.ndarray, y: np.ndarray, severity: int, rng: np.random.Generator, schema: Schema
) -> Shifted:
    cols = schema.indices()
    share = (0.0, 0.1, 0.2, 0.35, 0.5)[severity - 1]
    k = min(len(cols), max(1, round(share * len(cols))))
    out = x.copy()
    group_of = {j: np.asarray(g) for g in schema.groups for j in g}
    for j in rng.choice(cols, size=k, replace=False):
        if int(j) in group_of:  # a one-hot group takes its most frequent member
            g = group_of[int(j)]
            out[:, g] = 0.0
            out[:, g[int(x[:, g].sum(axis=0).argmax())]] = 1.0
        else:
            out[:, j] = schema.features[j].fill
    return Shifted(out, _same_rows(x))


@tab_shift(
    "tab_outliers",
    "outlier",
    "One numeric feature of some rows pushed 3-12 standard deviations past its observed range.",
    breaks=("range",),
    needs="numeric",
)
def outliers(
    x: np.ndarray, y: np.ndarray, severity: int, rng: np.random.Generator, schema: Schema
) -> Shifted:
    p = (0.02, 0.05, 0.1, 0.2, 0.3)[severity - 1]
    k = (3.0, 4.5, 6.0, 9.0, 12.0)[severity - 1]
    cols = schema.indices("continuous", "integer")
    out = x.copy()
    hit = np.flatnonzero(rng.random(len(x)) < p)
    pick = _random_column(rng, cols, len(hit))
    up = rng.random(len(hit)) < 0.5
    for r, j, u in zip(hit, pick, up, strict=True):
        f = schema.features[j]
        value = f.high + k * f.std if u else f.low - k * f.std
        out[r, j] = np.round(value) if f.kind == "integer" else value
    return Shifted(out, _same_rows(x))


def _resample(weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    w = np.asarray(weights, float)
    return np.sort(rng.choice(len(w), size=n, replace=True, p=w / w.sum()))


@tab_shift(
    "tab_covariate_shift",
    "population",
    "Rows resampled with weights exp(a z), z the standardised first principal component: a new population.",
)
def covariate_shift(
    x: np.ndarray, y: np.ndarray, severity: int, rng: np.random.Generator, schema: Schema
) -> Shifted:
    a = (0.5, 1.0, 1.5, 2.0, 3.0)[severity - 1]
    z = np.nan_to_num((x - schema.mean) / schema.std)
    z = z - z.mean(axis=0)
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    t = z @ vt[0]
    t = (t - t.mean()) / (t.std() or 1.0)
    rows = _resample(np.exp(np.clip(a * t, -30, 30)), len(x), rng)
    return Shifted(x[rows].copy(), rows)


@tab_shift(
    "tab_label_shift",
    "population",
    "Rows resampled so that the class prior tilts towards the rarest class (label-prior shift).",
)
def label_shift(
    x: np.ndarray, y: np.ndarray, severity: int, rng: np.random.Generator, schema: Schema
) -> Shifted:
    a = (0.5, 1.0, 1.5, 2.0, 3.0)[severity - 1]
    classes, counts = np.unique(y, return_counts=True)
    rank = np.argsort(np.argsort(counts))  # 0 = rarest
    tilt = np.exp(-a * rank / max(1, len(classes) - 1))
    per_class = dict(zip(classes.tolist(), tilt, strict=True))  # prior becomes proportional to count * tilt
    rows = _resample(np.array([per_class[int(c)] for c in y]), len(x), rng)
    return Shifted(x[rows].copy(), rows)
