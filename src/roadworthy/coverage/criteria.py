"""Neuron-coverage criteria (NC, KMNC, NBC, SNAC, TKNC), their profiling, and a prediction-based
criterion for black-box models.

Every criterion divides the model's behaviour into *cells* and says which cells an input touches. A
:class:`Coverage` keeps one bit per cell (the AFL "virgin bits" of DeepHunter, Xie et al., ISSTA 2019):
an input is *interesting* when it touches a cell no earlier input touched. Two numbers come out
(algorithms-spec A.3):

* the **cell coverage** -- touched cells / all cells -- which is what guided the fuzzer;
* the **paper metric** of the criterion (DeepXplore's NC, DeepGauge's KMNC/NBC/SNAC/TKNC), for humans.

The criteria, with ``phi(x, n)`` the value of neuron ``n`` (a dense unit, or a convolutional channel's
spatial mean) and ``[low_n, high_n]`` its range on the profiling data:

NC (threshold ``t``)
    each input's layer is min-max scaled to [0, 1]; neuron ``n`` is covered when its scaled value
    exceeds ``t``. One cell per neuron; the paper metric is the covered fraction.
KMNC (``k`` sections)
    ``[low_n, high_n]`` is split into ``k`` equal sections; a value inside the range touches its
    section. Cells: ``k`` per neuron; metric: covered sections / (``k`` x neurons). Values outside the
    range and neurons with ``high_n = low_n`` touch nothing.
NBC (``k`` buckets)
    a value above ``high_n`` (below ``low_n``) is a *corner case*; the overshoot is bucketed in units of
    ``(high_n - low_n) / 1000`` (0.05 when the range is empty), the last bucket open-ended. Cells:
    ``(neuron, side, bucket)``; metric: corner neurons reached on either side / (2 x neurons).
SNAC
    NBC's upper side only; metric: neurons that ever exceeded ``high_n`` / neurons.
TKNC (``k``)
    per input and layer, the ``k`` most active neurons; cells: ``(neuron, rank)``; metric: neurons that
    were ever among their layer's top ``k`` / neurons.
Prediction (black box)
    no neurons: per root seed, the predicted class and a confidence bucket (top-1 probability in
    ``n_buckets`` equal bins). A mutant is interesting when its seed's lineage reaches a new class or a
    new confidence level.

What the numbers mean: coverage says how much of the behaviour seen on the profiling data the tests
exercised (KMNC) or how far they went beyond it (NBC, SNAC). It is a guide for search, not a measure of
correctness: a high coverage does not mean the model is right, and the corner criteria depend on the
profiling data (profile on training data where possible).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from roadworthy.coverage._layers import ExtremaGate, Layout, Observation, Probe
from roadworthy.errors import InvalidInputError

# NBC/SNAC overshoot unit: the profiled range over this many (DeepHunter's released code, spec A.3).
_OVERSHOOT_DIVISOR = 1000.0
_EMPTY_RANGE_UNIT = 0.05


@dataclass
class Profile:
    """Per-neuron statistics of the monitored layers on profiling data (algorithms-spec A.2).

    Attributes
    ----------
    layout
        The layers and their neuron counts (``low`` etc. are concatenated in this order).
    low, high
        Minimum and maximum of each neuron's value, ``(n_neurons,)``.
    mean, std
        Mean and standard deviation of each neuron's value.
    n_samples
        How many inputs were profiled.
    source
        Where the inputs came from: ``"training"`` or ``"evaluation"`` (no training data given).
    """

    layout: Layout
    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n_samples: int
    source: str = "training"


def profile(probe: Probe, x: np.ndarray, batch_size: int = 256, source: str = "training") -> Profile:
    """Stream ``x`` through ``probe`` and record every monitored neuron's min, max, mean and std.

    Parameters
    ----------
    probe
        A white-box probe (:class:`~roadworthy.coverage._layers.TorchProbe` or ``OnnxProbe``).
    x
        Profiling inputs (float32, pixel units); the training set or a random sample of it
        (DeepHunter profiles the whole training set; 10,000 images are plenty for the bounds).
    batch_size
        Inputs per forward pass.
    source
        Recorded in the profile: ``"training"`` or ``"evaluation"``.
    """
    if len(x) == 0:
        raise InvalidInputError("coverage profile: the profiling data is empty")
    if not probe.white_box:
        raise InvalidInputError("coverage profile: the probe monitors no layers (a black-box model)")
    n = 0
    low = high = mean = m2 = None
    for i in range(0, len(x), batch_size):
        v = probe(x[i : i + batch_size]).values.astype(np.float64)
        b = len(v)
        b_mean = v.mean(axis=0)
        b_m2 = ((v - b_mean) ** 2).sum(axis=0)
        if low is None:
            low, high, mean, m2 = v.min(axis=0), v.max(axis=0), b_mean, b_m2
        else:
            # Chan et al.'s pairwise update keeps the variance exact in one pass
            delta = b_mean - mean
            total = n + b
            mean = mean + delta * b / total
            m2 = m2 + b_m2 + delta**2 * n * b / total
            low, high = np.minimum(low, v.min(axis=0)), np.maximum(high, v.max(axis=0))
        n += b
    assert low is not None and high is not None and mean is not None and m2 is not None
    return Profile(probe.layout, low, high, mean, np.sqrt(m2 / n), n, source)


# -- criteria -------------------------------------------------------------------------------------------


class Criterion:
    """A coverage criterion: how many cells there are and which cells each input touches.

    Subclasses implement :meth:`fit` (size the cells for a layout and profile), :meth:`cells` and
    :meth:`metric`. ``cells`` returns an int64 array ``(N, m)`` of cell ids with ``-1`` for "none".
    """

    name = ""
    needs_profile = False
    needs_layers = True

    def __init__(self) -> None:
        self.n_cells = 0

    def fit(self, layout: Layout, profile: Profile | None = None, **context: Any) -> Criterion:
        """Size the criterion for ``layout`` (and the profiled bounds when it needs them)."""
        if self.needs_layers and layout.n_neurons == 0:
            raise InvalidInputError(
                f"coverage: {self.name.upper()} needs neuron values; this model is a black box "
                "(use the prediction criterion)"
            )
        if self.needs_profile:
            if profile is None:
                raise InvalidInputError(f"coverage: {self.name.upper()} needs a profile of the layers")
            if profile.layout.sizes != layout.sizes:
                raise InvalidInputError(
                    f"coverage: the profile covers layers {profile.layout.layers} but the probe "
                    f"monitors {layout.layers}"
                )
        self.layout = layout
        self.profile = profile
        self._fit(**context)
        return self

    def _fit(self, **context: Any) -> None:
        raise NotImplementedError

    def cells(self, obs: Observation, roots: np.ndarray | None = None) -> np.ndarray:
        """Cell ids touched by each input of ``obs``: ``(N, m)`` int64, ``-1`` where none."""
        raise NotImplementedError

    def metric(self, bits: np.ndarray) -> float:
        """The criterion's paper metric computed from the touched-cell bitmap."""
        raise NotImplementedError

    def open_cells(self, obs: Observation, bits: np.ndarray, roots: np.ndarray | None = None) -> np.ndarray:
        """The cells :meth:`cells` gives that are not yet set in ``bits``, for marking: cell ids in an
        array of any shape, ``-1`` for none. A criterion may skip the work for cells already touched and
        may return a cell more than once (default: :meth:`cells`)."""
        return self.cells(obs, roots)

    def params(self) -> dict[str, Any]:
        """The criterion's parameters, for the report."""
        return {}


class NeuronCoverage(Criterion):
    """NC (DeepXplore, Pei et al. 2017) as DeepHunter computes it: a neuron is covered by an input
    when its value, after min-max scaling of its layer for that input, exceeds ``threshold``."""

    name = "nc"

    def __init__(self, threshold: float = 0.75) -> None:
        super().__init__()
        if not 0.0 <= threshold < 1.0:
            raise InvalidInputError(f"coverage: NC `threshold` must be in [0, 1). Got {threshold} instead.")
        self.threshold = float(threshold)

    def _fit(self, **context: Any) -> None:
        self.n_cells = self.layout.n_neurons
        self._layer = self.layout.layer_of_neuron
        self._ids = np.arange(self.n_cells, dtype=np.int64)

    def cells(self, obs: Observation, roots: np.ndarray | None = None) -> np.ndarray:
        lo = obs.layer_min[:, self._layer]
        span = obs.layer_max[:, self._layer] - lo
        # mean of the scaled map = scaled mean (the scaling is linear); a constant layer scales to 0
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = np.where(span > 0, (obs.values - lo) / span, 0.0)
        return np.where(scaled > self.threshold, self._ids, -1)

    def open_cells(self, obs: Observation, bits: np.ndarray, roots: np.ndarray | None = None) -> np.ndarray:
        # one cell per neuron: a covered neuron needs no more scaling and comparing (NC saturates early).
        # Layer by layer, only the rows with a non-empty span: a constant layer scales to 0, and a layer
        # whose extrema the probe skipped (NaN, see Probe.gate_extrema) has no cell -- the same rows
        # :meth:`cells` gives no cell, with the same float operations for the others.
        offsets = self.layout.offsets
        found = []
        for j in range(len(self.layout.sizes)):
            a, b = int(offsets[j]), int(offsets[j + 1])
            open_ = np.flatnonzero(~bits[a:b])
            if open_.size == 0:
                continue
            lo = obs.layer_min[:, j]
            span = obs.layer_max[:, j] - lo
            rows = np.flatnonzero(span > 0)
            if rows.size == 0:
                continue
            cols = slice(a, b) if open_.size == b - a else a + open_
            v = obs.values[rows][:, cols]
            scaled = (v - lo[rows, None]) / span[rows, None]
            hit = np.flatnonzero(scaled > self.threshold)
            found.append(a + open_[hit % open_.size])
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def metric(self, bits: np.ndarray) -> float:
        return float(bits.mean()) if bits.size else 0.0

    def params(self) -> dict[str, Any]:
        return {"threshold": self.threshold}


class KMultisectionCoverage(Criterion):
    """KMNC (DeepGauge, Ma et al. 2018): ``k`` equal sections of each neuron's profiled range."""

    name = "kmnc"
    needs_profile = True

    def __init__(self, k: int = 1000) -> None:
        super().__init__()
        if int(k) < 1:
            raise InvalidInputError(f"coverage: KMNC `k` must be a positive integer. Got {k} instead.")
        self.k = int(k)

    def _fit(self, **context: Any) -> None:
        assert self.profile is not None
        self.n_cells = self.layout.n_neurons * self.k
        low = self.profile.low.astype(np.float64)
        span = (self.profile.high - self.profile.low).astype(np.float64)
        live = span > 0
        # a neuron with an empty range gets bounds no value lies within (low +inf, high -inf), so one
        # comparison per bound decides "inside" for every neuron
        self._low = np.where(live, low, np.inf)
        self._high = np.where(live, low + span, -np.inf)
        self._span = np.where(live, span, 1.0)
        self._base = np.arange(self.layout.n_neurons, dtype=np.int64) * self.k

    def cells(self, obs: Observation, roots: np.ndarray | None = None) -> np.ndarray:
        v = obs.values64()
        with np.errstate(invalid="ignore", over="ignore"):
            offset = v - self._low
            # offset >= 0 exactly when v >= low (IEEE subtraction keeps the sign; NaN fails both tests)
            outside = offset < 0
            outside |= ~(v <= self._high)
            # floor(offset / span * k), in place (the same operations in the same order)
            np.divide(offset, self._span, out=offset)
            np.multiply(offset, self.k, out=offset)
            np.floor(offset, out=offset)
            np.minimum(offset, self.k - 1, out=offset)  # the top edge belongs to the last section
            section = offset.astype(np.int64)  # garbage outside the range, masked next
        section += self._base
        np.copyto(section, -1, where=outside)
        return section

    def metric(self, bits: np.ndarray) -> float:
        return float(bits.mean()) if bits.size else 0.0

    def params(self) -> dict[str, Any]:
        return {"k": self.k}


class NeuronBoundaryCoverage(Criterion):
    """NBC (DeepGauge): values beyond a neuron's profiled bounds, bucketed by how far beyond.

    Cells ``[0, n*k)`` are the lower side, ``[n*k, 2*n*k)`` the upper side (DeepHunter's released code
    indexes both sides into the same cells; the spec fixes that, A.3).
    """

    name = "nbc"
    needs_profile = True
    sides: tuple[str, ...] = ("lower", "upper")

    def __init__(self, k: int = 10) -> None:
        super().__init__()
        if int(k) < 1:
            raise InvalidInputError(
                f"coverage: {self.name.upper()} `k` must be a positive integer. Got {k} instead."
            )
        self.k = int(k)

    def _fit(self, **context: Any) -> None:
        assert self.profile is not None
        n = self.layout.n_neurons
        self.n_cells = n * self.k * len(self.sides)
        self._low = self.profile.low.astype(np.float64)
        self._high = self.profile.high.astype(np.float64)
        span = self._high - self._low
        self._unit = np.where(span > 0, span / _OVERSHOOT_DIVISOR, _EMPTY_RANGE_UNIT)
        self._base = np.arange(n, dtype=np.int64) * self.k
        # float32 bounds that decide "beyond" exactly as the float64 ones do for float32 values: the
        # largest float32 <= high (v > it iff v > high) and the smallest float32 >= low
        high32 = self._high.astype(np.float32)
        self._high32 = np.where(high32 > self._high, np.nextafter(high32, np.float32(-np.inf)), high32)
        low32 = self._low.astype(np.float32)
        self._low32 = np.where(low32 < self._low, np.nextafter(low32, np.float32(np.inf)), low32)

    def cells(self, obs: Observation, roots: np.ndarray | None = None) -> np.ndarray:
        upper, lower = self.corners(obs, lower="lower" in self.sides)
        out = np.full(obs.values.shape, -1, dtype=np.int64)
        flat = out.reshape(-1)
        n_side = self.layout.n_neurons * self.k
        flat[upper[0]] = (len(self.sides) - 1) * n_side + upper[1]
        if lower is not None:
            flat[lower[0]] = lower[1]
        return out

    def open_cells(self, obs: Observation, bits: np.ndarray, roots: np.ndarray | None = None) -> np.ndarray:
        return self.from_corners(*self.corners(obs, lower="lower" in self.sides))

    def corners(
        self, obs: Observation, lower: bool = True
    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
        """The corner cases of ``obs``: for the upper side (and the lower one with ``lower``), the flat
        positions in ``obs.values`` and the side-relative cell ids ``neuron * k + bucket``.

        Corner cases are rare: they are found with one float32 comparison per side (exact, see
        ``_fit``) over the flattened values, and only those are bucketed, in float64.
        """
        if obs.values.dtype == np.float32:
            v, high, low = obs.values, self._high32, self._low32
        else:  # values of another type (a hand-built observation): compare in float64
            v, high, low = obs.values64(), self._high, self._low
        n = self.layout.n_neurons
        flat = v.reshape(-1)
        at = np.flatnonzero(v > high)
        cols = at % n
        over = flat[at].astype(np.float64) - self._high[cols]
        upper = (at, self._base[cols] + self._bucket(over, cols))
        if not lower:
            return upper, None
        at = np.flatnonzero(v < low)
        cols = at % n
        under = self._low[cols] - flat[at].astype(np.float64)
        return upper, (at, self._base[cols] + self._bucket(under, cols))

    def from_corners(
        self, upper: tuple[np.ndarray, np.ndarray], lower: tuple[np.ndarray, np.ndarray] | None
    ) -> np.ndarray:
        """This criterion's cell ids (1-D) from :meth:`corners` (computed by this criterion or by
        another of the family with the same bounds and ``k``: SNAC's cells are NBC's upper side)."""
        n_side = self.layout.n_neurons * self.k
        ids = upper[1] + (len(self.sides) - 1) * n_side
        if "lower" in self.sides:
            if lower is None:
                raise InvalidInputError("coverage: NBC needs the lower corner cases")
            ids = np.concatenate([lower[1], ids])
        return ids

    def corner_key(self) -> tuple[Any, ...]:
        """What decides the corner cells: criteria of the NBC family with equal keys share
        :meth:`corners` (used by :class:`CoverageBook`)."""
        return (self.k, self.layout.sizes, self._low.tobytes(), self._high.tobytes())

    def _bucket(self, overshoot: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Bucket of a positive overshoot of neurons ``cols``: whole units of the neuron's range over
        1000, the last bucket open-ended."""
        return np.minimum(np.floor(overshoot / self._unit[cols]), self.k - 1).astype(np.int64)

    def metric(self, bits: np.ndarray) -> float:
        n = self.layout.n_neurons
        if n == 0:
            return 0.0
        corner = bits.reshape(len(self.sides), n, self.k).any(axis=2)
        return float(corner.sum() / (len(self.sides) * n))

    def params(self) -> dict[str, Any]:
        return {"k": self.k}


class StrongNeuronActivationCoverage(NeuronBoundaryCoverage):
    """SNAC (DeepGauge): NBC's upper side only -- values above the profiled maximum."""

    name = "snac"
    sides = ("upper",)


class TopKNeuronCoverage(Criterion):
    """TKNC (DeepGauge): the ``k`` most active neurons of each layer, cells ``(neuron, rank)``."""

    name = "tknc"

    def __init__(self, k: int = 10) -> None:
        super().__init__()
        if int(k) < 1:
            raise InvalidInputError(f"coverage: TKNC `k` must be a positive integer. Got {k} instead.")
        self.k = int(k)

    def _fit(self, **context: Any) -> None:
        sizes = self.layout.sizes
        self._ks = [min(self.k, s) for s in sizes]
        cells_per_layer = [s * k for s, k in zip(sizes, self._ks, strict=True)]
        self._cell_offsets = np.concatenate([[0], np.cumsum(cells_per_layer)]).astype(np.int64)
        self.n_cells = int(self._cell_offsets[-1])
        self._offsets = self.layout.offsets

    def cells(self, obs: Observation, roots: np.ndarray | None = None) -> np.ndarray:
        parts = []
        for j, k in enumerate(self._ks):
            v = obs.values[:, self._offsets[j] : self._offsets[j + 1]]
            top = top_k(v, k).astype(np.int64)
            parts.append(self._cell_offsets[j] + top * k + np.arange(k, dtype=np.int64))
        return np.concatenate(parts, axis=1)

    def metric(self, bits: np.ndarray) -> float:
        n = self.layout.n_neurons
        if n == 0:
            return 0.0
        hit = 0
        for j, k in enumerate(self._ks):
            block = bits[self._cell_offsets[j] : self._cell_offsets[j + 1]].reshape(-1, k)
            hit += int(block.any(axis=1).sum())
        return hit / n

    def params(self) -> dict[str, Any]:
        return {"k": self.k}


def top_k(v: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest values of each row, largest first, ties to the lower index.

    The same as ``np.argsort(-v, axis=1, kind="stable")[:, :k]`` (the definition), 2-7x faster on rows
    of 16-64 values. For float32 rows without NaN, each value and its column become one int64 sort
    key: the high 32 bits are the bits of ``-v`` mapped to integers of the same order (``-0.0`` counted
    as ``0.0``, as the comparison does), the low 32 bits the column. The keys are distinct, so NumPy's
    SIMD sort orders them exactly as the stable sort orders the values, the lower column first among
    equal values. Other rows go through :func:`_top_k_argsort`.
    """
    if v.dtype != np.float32 or v.shape[1] == 0 or np.isnan(v).any():
        return _top_k_argsort(v, k)
    neg = -v + np.float32(0.0)  # a fresh C-ordered array; -0.0 + 0.0 is +0.0
    bits = neg.view(np.int32)
    key = (bits ^ ((bits >> 31) & 0x7FFFFFFF)).astype(np.int64)  # order-preserving (no NaN here)
    key <<= 32
    key |= np.arange(v.shape[1], dtype=np.int64)
    key.sort(axis=1)
    return key[:, :k] & 0xFFFFFFFF


def _top_k_argsort(v: np.ndarray, k: int) -> np.ndarray:
    """:func:`top_k` for any dtype and NaN: NumPy's default (unstable, SIMD) argsort; an unstable sort
    orders distinct values exactly as a stable one and can only differ where equal values meet, so a
    row whose first ``k + 1`` sorted values hold a tie (or NaN, which compares unequal to itself) is
    sorted again stably."""
    width = v.shape[1]
    neg = -v
    order = np.argsort(neg, axis=1)
    top = order[:, :k]
    head = np.take_along_axis(neg, order[:, : min(k + 1, width)], 1)
    tied = (head[:, 1:] == head[:, :-1]).any(axis=1) | np.isnan(head).any(axis=1)
    if tied.any():
        top = top.copy()
        top[tied] = np.argsort(neg[tied], axis=1, kind="stable")[:, :k]
    return top


class PredictionCoverage(Criterion):
    """Prediction-based feedback for black-box models: cells ``(root seed, predicted class, confidence
    bucket)``. The paper-style metric is the mean number of distinct classes reached per seed."""

    name = "prediction"
    needs_layers = False

    def __init__(self, n_buckets: int = 10) -> None:
        super().__init__()
        if int(n_buckets) < 1:
            raise InvalidInputError(
                f"coverage: prediction `n_buckets` must be a positive integer. Got {n_buckets} instead."
            )
        self.n_buckets = int(n_buckets)

    def _fit(self, **context: Any) -> None:
        self.n_classes = int(context.get("n_classes", 0))
        self.n_roots = int(context.get("n_roots", 0))
        if self.n_classes < 1 or self.n_roots < 1:
            raise InvalidInputError("coverage: the prediction criterion needs n_classes and n_roots")
        self.n_cells = self.n_roots * self.n_classes * self.n_buckets

    def cells(self, obs: Observation, roots: np.ndarray | None = None) -> np.ndarray:
        if roots is None:
            raise InvalidInputError("coverage: the prediction criterion needs the root seed of each input")
        pred = obs.probs.argmax(axis=1).astype(np.int64)
        conf = obs.probs.max(axis=1)
        bucket = np.minimum(np.floor(conf * self.n_buckets), self.n_buckets - 1).astype(np.int64)
        cell = (np.asarray(roots, dtype=np.int64) * self.n_classes + pred) * self.n_buckets + bucket
        return cell[:, None]

    def metric(self, bits: np.ndarray) -> float:
        per_seed = bits.reshape(self.n_roots, self.n_classes, self.n_buckets).any(axis=2).sum(axis=1)
        return float(per_seed.mean()) if per_seed.size else 0.0

    def params(self) -> dict[str, Any]:
        return {"n_buckets": self.n_buckets}


CRITERIA: dict[str, Callable[..., Criterion]] = {
    "nc": NeuronCoverage,
    "kmnc": KMultisectionCoverage,
    "nbc": NeuronBoundaryCoverage,
    "snac": StrongNeuronActivationCoverage,
    "tknc": TopKNeuronCoverage,
    "prediction": PredictionCoverage,
}
NEURON_CRITERIA = ("nc", "kmnc", "nbc", "snac", "tknc")


def make_criterion(spec: str | Criterion, **params: Any) -> Criterion:
    """A criterion from its name (``nc``, ``kmnc``, ``nbc``, ``snac``, ``tknc``, ``prediction``) or an
    instance (returned as is)."""
    if isinstance(spec, Criterion):
        return spec
    key = str(spec).lower()
    if key not in CRITERIA:
        raise InvalidInputError(
            f"coverage: unknown criterion '{spec}'. Expected one of {', '.join(CRITERIA)}."
        )
    return CRITERIA[key](**params)


# -- coverage state -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoverageSummary:
    """Coverage of one criterion at one moment: the paper metric and the cell counts."""

    criterion: str
    metric: float
    cells_covered: int
    cells_total: int

    @property
    def cell_ratio(self) -> float:
        """Touched cells / all cells (what guided the fuzzer)."""
        return self.cells_covered / self.cells_total if self.cells_total else 0.0


class Coverage:
    """The touched-cell bitmap of one criterion.

    Parameters
    ----------
    criterion
        A fitted :class:`Criterion`.

    Notes
    -----
    The bitmap is a boolean array, one byte per cell (fancy-index updates are faster than on packed
    bits); :meth:`packed` returns it as packed bits for storage. :attr:`bits` is a view of an array one
    cell longer whose last cell is always set: the cell id ``-1`` ("none") indexes it, so updates need
    no pass to drop the ``-1`` entries.
    """

    def __init__(self, criterion: Criterion) -> None:
        self.criterion = criterion
        self._cells = np.zeros(criterion.n_cells + 1, dtype=bool)
        self._cells[-1] = True  # the "none" cell, -1

    @property
    def bits(self) -> np.ndarray:
        """The bitmap, ``(n_cells,)`` bool, True where a cell was touched (a view: change it in place)."""
        return self._cells[:-1]

    def update(self, cells: np.ndarray) -> np.ndarray:
        """Mark ``cells`` touched and say which inputs touched a cell for the first time.

        Inputs count in batch order, as if fed one by one: an input is new when it touches a cell that
        no earlier input (in this or an earlier batch) touched.

        Parameters
        ----------
        cells
            ``(N, m)`` cell ids from :meth:`Criterion.cells`, ``-1`` for none.

        Returns
        -------
        numpy.ndarray
            ``(N,)`` bool: the inputs that brought new coverage.
        """
        n = cells.shape[0]
        flat = cells.reshape(-1)
        # positions (row-major) of the cells not touched before; -1 reads the always-set last cell
        fresh = np.flatnonzero(~self._cells[flat])
        new = np.zeros(n, dtype=bool)
        if fresh.size:
            # first occurrence of each fresh cell in row-major order = the earliest input touching it
            uniq, first = np.unique(flat[fresh], return_index=True)
            new[fresh[first] // (flat.size // n)] = True
            self._cells[uniq] = True
        return new

    def mark(self, cells: np.ndarray) -> None:
        """Mark ``cells`` touched (any shape, ``-1`` for none), without asking which input was first
        (cheaper than :meth:`update`; for criteria that are measured but do not guide)."""
        self._cells[cells.reshape(-1)] = True

    def summary(self) -> CoverageSummary:
        """The current paper metric and cell counts."""
        return CoverageSummary(
            self.criterion.name, self.criterion.metric(self.bits), int(self.bits.sum()), int(self.bits.size)
        )

    def packed(self) -> np.ndarray:
        """The bitmap as ``np.packbits`` bytes."""
        return np.packbits(self.bits)


class CoverageBook:
    """The coverage of a fuzzing run under several criteria: one guides, the others are measured.

    The guide's bitmap is updated batch by batch, because the loop must know which input of each batch
    touched a new cell. The measured criteria only need the union of the cells touched over the run,
    which does not depend on the order or the grouping of the inputs, so their cells are computed in
    bulk: the observations are held (neuron values, layer extrema, scores, roots: ``(N, neurons)``
    floats per batch, nothing of the layer tensors) until about ``buffer_bytes`` of neuron values have
    gathered, then every measured criterion computes its cells once over all of them. A few dozen NumPy
    calls per criterion then serve many batches instead of one, which is most of their cost on a small
    network (~20k values per batch of 160 inputs). The bitmaps are the same as marking every batch;
    :meth:`summaries` (and :meth:`flush`) bring them up to date.

    Parameters
    ----------
    trackers
        The bitmaps by criterion name.
    guide
        Name of the guiding criterion (a key of ``trackers``).
    buffer_bytes
        Neuron-value bytes gathered before the measured criteria run (at least one batch; 0 runs them
        every batch).
    """

    def __init__(self, trackers: dict[str, Coverage], guide: str, buffer_bytes: int = 1 << 20) -> None:
        if guide not in trackers:
            raise InvalidInputError(f"coverage: the guide '{guide}' is not among {', '.join(trackers)}")
        self.trackers = trackers
        self.guide = trackers[guide]
        self.buffer_bytes = int(buffer_bytes)
        self._held: list[tuple[Observation, np.ndarray | None]] = []
        self._held_bytes = 0
        # measured criteria of the NBC family: (corner key, whether the lower side is needed) by tracker
        family: list[tuple[Coverage, NeuronBoundaryCoverage]] = [
            (t, t.criterion)
            for t in trackers.values()
            if t is not self.guide and isinstance(t.criterion, NeuronBoundaryCoverage)
        ]
        lower: dict[tuple[Any, ...], bool] = {}
        for _, c in family:
            lower[c.corner_key()] = lower.get(c.corner_key(), False) or "lower" in c.sides
        self._corner_keys = {id(t): (c.corner_key(), lower[c.corner_key()]) for t, c in family}

    def observe(self, obs: Observation, roots: np.ndarray | None = None) -> np.ndarray:
        """Record a batch; returns ``(N,)`` bool, the inputs that touched a new cell of the guide."""
        new = self.guide.update(self.guide.criterion.cells(obs, roots))
        if len(self.trackers) > 1:
            # a fresh record holds the arrays, not the float64 copy cached on ``obs``
            self._held.append((Observation(obs.probs, obs.values, obs.layer_min, obs.layer_max), roots))
            self._held_bytes += obs.values.nbytes + obs.probs.nbytes
            if self._held_bytes >= self.buffer_bytes:
                self.flush()
        return new

    def flush(self) -> None:
        """Mark the held observations in the measured criteria's bitmaps."""
        if not self._held:
            return
        held, self._held, self._held_bytes = self._held, [], 0
        if len(held) == 1:
            obs, roots = held[0]
        else:
            obs = Observation(
                np.concatenate([o.probs for o, _ in held]),
                np.concatenate([o.values for o, _ in held]),
                np.concatenate([o.layer_min for o, _ in held]),
                np.concatenate([o.layer_max for o, _ in held]),
            )
            roots = None if held[0][1] is None else np.concatenate([r for _, r in held])
        corners: dict[tuple[Any, ...], Any] = {}
        for tracker in self.trackers.values():
            if tracker is self.guide:
                continue
            c = tracker.criterion
            key = self._corner_keys.get(id(tracker))
            if key is None:
                tracker.mark(c.open_cells(obs, tracker.bits, roots))
                continue
            # NBC and SNAC with the same bounds and k find the corner cases once
            if key[0] not in corners:
                corners[key[0]] = c.corners(obs, lower=key[1])
            assert isinstance(c, NeuronBoundaryCoverage)
            tracker.mark(c.from_corners(*corners[key[0]]))

    def extrema_gate(self) -> ExtremaGate | None:
        """The NC gate for a probe feeding this book (:meth:`~roadworthy.coverage._layers.Probe.gate_extrema`),
        or None when the book has no NC bitmap.

        The gate reads NC's bitmap as it is when a batch is summarised. A measured NC is marked in bulk
        later, so the bitmap may lag behind; it is never ahead (cells only get covered), so the gate can
        only read more extrema than needed, never fewer.
        """
        for tracker in self.trackers.values():
            if type(tracker.criterion) is NeuronCoverage:
                return ExtremaGate(tracker.criterion.threshold, lambda t=tracker: t.bits)
        return None

    def summaries(self) -> dict[str, CoverageSummary]:
        """Every criterion's current summary (held observations marked first)."""
        self.flush()
        return {name: t.summary() for name, t in self.trackers.items()}


def measure(
    probe: Probe,
    x: np.ndarray,
    criteria: Iterable[str | Criterion] = NEURON_CRITERIA,
    profile_data: Profile | None = None,
    batch_size: int = 256,
) -> dict[str, CoverageSummary]:
    """Coverage reached by a fixed test set ``x`` under each criterion (no fuzzing).

    ``profile_data`` supplies the bounds of KMNC, NBC and SNAC; without it they are profiled on ``x``
    itself (then NBC and SNAC are zero by construction).
    """
    fitted = [make_criterion(c) for c in criteria]
    if profile_data is None and any(c.needs_profile for c in fitted):
        profile_data = profile(probe, x, batch_size, source="evaluation")
    trackers = [Coverage(c.fit(probe.layout, profile_data)) for c in fitted]
    for i in range(0, len(x), batch_size):
        obs = probe(x[i : i + batch_size])
        for t in trackers:
            t.mark(t.criterion.cells(obs))
    return {t.criterion.name: t.summary() for t in trackers}
