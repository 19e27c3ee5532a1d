"""What a check is, what it may use while it runs, and the registry that lists them.

A check is one small class with an ``id`` like ``attack.pgd_linf``, a frozen dataclass of parameters
(``Params``, a default for every field, ``budget_params`` overriding some per budget), a declared
``requires``, and one method ``run(ctx) -> Outcome``. The runner skips what the model cannot support,
isolates failures and times each check. A check measures; only the policy judges pass or fail.

Adding a check: write the class in the suite's file, decorate it with ``@register``, and add the module
to ``BUILTIN_MODULES`` in ``roadworthy/checks/__init__.py`` if it is a new file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from roadworthy.data.base import Dataset, stratified_sample
from roadworthy.errors import InvalidInputError, plural
from roadworthy.models.base import Model, capabilities, to_logits, to_probs
from roadworthy.types import BUDGETS  # re-exported: the budget names live on the ground floor

if TYPE_CHECKING:
    from roadworthy.results import CheckResult, Example, Report

__all__ = [
    "BUDGETS",
    "CHECKS",
    "SHARD_BLOCK",
    "Block",
    "Check",
    "Context",
    "NoParams",
    "NullProgress",
    "Outcome",
    "ProgressReporter",
    "Requires",
    "ShardInputError",
    "ShiftedOutputs",
    "blocks_of",
    "register",
]

#: Sample positions per block: the unit a sample-sharded check splits its work into. Randomness is
#: keyed per block and every model call sees one block at a time, so any split of the blocks into shards
#: (one on the local backend, several on Ray) gives bit-identical numbers.
SHARD_BLOCK = 64


@dataclass(frozen=True)
class Block:
    """Positions ``start:stop`` of a sharded check's items (its sample), the ``index``-th block."""

    index: int
    start: int
    stop: int


def blocks_of(n_items: int, size: int = SHARD_BLOCK) -> list[Block]:
    """The blocks covering ``n_items`` positions, ``size`` each (the last one shorter)."""
    size = max(1, int(size))
    return [Block(i, start, min(n_items, start + size)) for i, start in enumerate(range(0, n_items, size))]


class ShardInputError(InvalidInputError):
    """Every shard of a sharded check failed for an input reason: the run stops (exit 2), no verdict."""


@dataclass(frozen=True)
class Requires:
    """What a check needs to run. Unmet requirements make the runner skip it, saying why."""

    capabilities: frozenset[str] = frozenset()  # "white_box", "features"
    modalities: frozenset[str] = frozenset({"image", "tabular"})
    train_data: bool = False
    min_classes: int = 2


@dataclass(frozen=True)
class NoParams:
    """Parameters of a check that has none."""


@dataclass
class Outcome:
    """What ``Check.run`` returns: numbers, evidence, and any self-diagnosed warnings.

    ``metrics`` keys are full public metric names (``clean.accuracy``). ``details`` is check-specific JSON;
    its ``"evidence"`` list holds the plots and pictures the HTML report draws (built with
    :mod:`roadworthy.evidence`: a check never draws, and the report never imports a check).
    ``warnings`` turn the check's status to ``warn``; ``summary`` is one plain sentence for people.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: str = ""


class Task(Protocol):
    def advance(self, n: int = 1) -> None: ...


class ProgressReporter(Protocol):
    """Progress for long work: a Rich bar on a terminal, plain log lines elsewhere (CI)."""

    def task(self, description: str, total: int) -> Any:  # a context manager yielding a Task
        ...


class _NullTask:
    def advance(self, n: int = 1) -> None:
        pass


class NullProgress:
    """Progress reporter that shows nothing (library use, tests)."""

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Task]:
        yield _NullTask()


class Check:
    """Base of every check. Subclasses set the class attributes and implement :meth:`run`."""

    id: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str] = ""
    requires: ClassVar[Requires] = Requires()
    Params: ClassVar[type] = NoParams
    budget_params: ClassVar[dict[str, dict[str, Any]]] = {}
    budgets: ClassVar[frozenset[str]] = frozenset(BUDGETS)  # budgets in which it runs by default
    depends_on: ClassVar[tuple[str, ...]] = ()  # ids or "suite.*" patterns that must run first

    def __init__(self, params: Any = None, budget: str = "standard") -> None:
        if params is None:
            params = self.Params(**self.budget_params.get(budget, {}))
        self.params = params
        self.budget = budget

    @classmethod
    def suite(cls) -> str:
        return cls.id.split(".", 1)[0]

    def run(self, ctx: Context) -> Outcome:
        """Measure. A sample-sharded check (:meth:`shard_items` not ``None``) need not override this: its
        whole range runs as one shard through :meth:`run_blocks` and :meth:`merge`."""
        if self.shard_items(ctx) is None:
            raise NotImplementedError
        return self.run_sharded(ctx)

    # -- sample sharding: an optional protocol (the Ray backend spreads the blocks over its workers)
    #: positions per block of a sharded check (a fixed number, never derived from the number of workers)
    shard_block: ClassVar[int] = SHARD_BLOCK

    def shard_items(self, ctx: Context) -> int | None:
        """How many sample positions this check's work splits into, or ``None`` (it runs as one piece).

        Must not call the model: the runner asks before any work. A sharded check implements
        :meth:`run_block` (the work on one :class:`Block` of positions, its randomness keyed by
        ``block.index``, never by the shard) and :meth:`merge` (the outcome from every block's part, in
        block order; metrics computed here, from the merged per-sample arrays).
        """
        return None

    def run_block(self, ctx: Context, block: Block) -> Any:
        """The work on one block of positions; a picklable part for :meth:`merge`."""
        raise NotImplementedError

    def merge(self, ctx: Context, parts: list[Any]) -> Outcome:
        """The outcome from every block's part, in block order (runs where the results are gathered)."""
        raise NotImplementedError

    def stops_early(self) -> bool:
        """Whether :meth:`enough` may stop the check before its last block (a sequential rule).

        Such a check's blocks are run in order, one at a time, and merged up to the first prefix the rule
        accepts; the Ray backend gives each block its own task and runs later blocks ahead only on
        workers that would otherwise idle (their parts are dropped when the rule stops earlier).
        """
        return False

    def enough(self, ctx: Context, parts: list[Any]) -> bool:
        """Whether the parts of the first ``len(parts)`` blocks (in block order) are enough: the check
        stops there and :meth:`merge` gets exactly those parts. A function of the parts alone (never of
        how they were computed), so any split of the blocks stops at the same block."""
        return False

    def shard_key(self, ctx: Context) -> Any:
        """A hashable key shared by checks whose blocks compute the same parts (the integrity checks'
        common embedding), else ``None``. The Ray backend runs such shards once for every check with
        the same key and the same blocks, and hands each of them the parts."""
        return None

    def blocks(self, ctx: Context) -> list[Block]:
        """This check's blocks in ``ctx`` (empty when it is not sharded)."""
        n = self.shard_items(ctx)
        return [] if n is None else blocks_of(n, self.shard_block)

    def run_blocks(self, ctx: Context, blocks: list[Block]) -> list[Any]:
        """One shard: :meth:`run_block` on each of ``blocks``, in order.

        An :class:`~roadworthy.errors.InvalidInputError` of the first block stops the shard: the same
        input fails every block, so the shard fails for an input reason (the runner stops the run when
        every shard did).
        """
        parts = []
        with ctx.progress.task(self.title, total=len(blocks)) as task:
            for b in blocks:
                parts.append(self.run_block(ctx, b))
                task.advance()
        return parts

    def run_sharded(self, ctx: Context) -> Outcome:
        """The whole range as one shard, then :meth:`merge` (the local backend's path); a check that
        :meth:`stops_early` stops after the first block at which :meth:`enough` holds."""
        blocks = self.blocks(ctx)
        try:
            if not self.stops_early():
                parts = self.run_blocks(ctx, blocks)
            else:
                parts = []
                with ctx.progress.task(self.title, total=len(blocks)) as task:
                    for b in blocks:
                        parts.append(self.run_block(ctx, b))
                        task.advance()
                        if self.enough(ctx, parts):
                            break
        except ShardInputError:
            raise
        except InvalidInputError as exc:
            raise ShardInputError(f"{self.id}: {exc}") from exc
        return self.merge(ctx, parts)

    @classmethod
    def planned(cls, budget: str, overrides: dict[str, Any] | None = None) -> Check:
        """The check with its budget's params and the cost plan's ``overrides`` (fewer samples).

        The planner only changes fields the params declare (``n_samples``), so the changed value shows
        in the reported ``params`` like any other.
        """
        check = cls(budget=budget)
        if overrides and dataclasses.is_dataclass(check.params):
            check.params = dataclasses.replace(check.params, **overrides)
        return check

    def params_dict(self) -> dict[str, Any]:
        if dataclasses.is_dataclass(self.params):
            return _jsonable(dataclasses.asdict(self.params))
        return {}

    @classmethod
    def unmet(cls, ctx: Context) -> str | None:
        """Why this check cannot run in ``ctx``, or ``None`` when it can."""
        req = cls.requires
        missing = req.capabilities - ctx.capabilities
        if missing:
            return f"the model does not offer {', '.join(sorted(missing))}"
        if ctx.modality not in req.modalities:
            return f"needs {' or '.join(sorted(req.modalities))} data, got {ctx.modality}"
        if req.train_data and ctx.train_data is None:
            return "needs --train-data"
        if ctx.model.n_classes < req.min_classes:
            return f"needs at least {plural(req.min_classes, 'class', 'classes')}, the model has {ctx.model.n_classes}"
        return None


def planned_samples(params: Any, n_data: int, field_name: str = "n_samples") -> int:
    """The inputs a check's ``params`` ask for (``0`` or less: all), capped by the ``n_data`` available.

    Used by the checks' ``plan_passes`` estimates (:mod:`roadworthy.plan` reads them before a run).
    """
    n = getattr(params, field_name, 0)
    n = int(n) if isinstance(n, int | float) and not isinstance(n, bool) else 0
    return n_data if n <= 0 else min(n, n_data)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# ---------------------------------------------------------------------------------------------- registry

CHECKS: dict[str, type[Check]] = {}


def register(cls: type[Check]) -> type[Check]:
    """Class decorator adding a check to the registry under its ``id``."""
    if not getattr(cls, "id", "") or "." not in cls.id:
        raise ValueError(f"{cls.__name__}.id must look like 'suite.name', got {getattr(cls, 'id', None)!r}")
    if cls.id in CHECKS and CHECKS[cls.id] is not cls:
        raise ValueError(
            f"check id {cls.id!r} is registered twice ({CHECKS[cls.id].__name__}, {cls.__name__})"
        )
    CHECKS[cls.id] = cls
    return cls


# ---------------------------------------------------------------------------------------------- context


@dataclass(frozen=True)
class ShiftedOutputs:
    """The model's raw outputs on evaluation rows under one shift at one severity (no images kept).

    Published by the check that fed the shifted batch to the model (:meth:`Context.share_shifted`) so
    that other checks (``ood.calibration``, ``ood.<detector>``) reuse the predictions instead of shifting
    and predicting again. ``rows`` index ``ctx.data``; ``raw[i]`` is the output on ``rows[i]`` shifted;
    ``change`` is the mean absolute pixel change the shift made (near zero: the shift did nothing on
    these images); ``by`` names the publisher.
    """

    shift: str
    severity: int
    rows: np.ndarray
    raw: np.ndarray
    change: float
    by: str


#: floats of shifted images held at once while streaming a shift through the model (about 16 MB)
SHIFT_CHUNK_FLOATS = 4_000_000


def rows_digest(rows: np.ndarray) -> str:
    """A short digest of a set of evaluation rows, so outputs on different samples never share a key."""
    return hashlib.sha256(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()[:16]


@dataclass
class Context:
    """Everything a check may read while it runs.

    Model outputs on the evaluation data are computed once and cached (``clean_probs``); use
    ``predict_probs`` / ``predict_logits`` for changed inputs, which batch the model calls. Every random
    choice must come from ``ctx.rng(...)`` so that one ``--seed`` reproduces the whole report.
    """

    model: Model
    data: Dataset
    train_data: Dataset | None = None
    ood_data: Dataset | None = None
    budget: str = "standard"
    seed: int = 0
    baseline: Report | None = None
    batch_size: int = 256
    progress: ProgressReporter = field(default_factory=NullProgress)
    results: dict[str, CheckResult] = field(default_factory=dict)
    #: params the session's cost plan changed, by check id (``{"attack.pgd_linf": {"n_samples": 96}}``)
    plan_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the plan's estimated seconds by check id (for the estimate of the time left)
    plan_estimates: dict[str, float] = field(default_factory=dict)
    #: ``--reference-model``: the artifact ``model`` is compared with by the parity suite (or ``None``)
    reference_model: Model | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # -- facts
    @property
    def capabilities(self) -> frozenset[str]:
        return capabilities(self.model)

    @property
    def modality(self) -> str:
        return self.data.modality

    @property
    def n_classes(self) -> int:
        return int(self.model.n_classes)

    def class_name(self, label: int) -> str:
        return self.data.class_name(int(label))

    # -- randomness
    def rng(self, *keys: Any) -> np.random.Generator:
        """A generator seeded from ``--seed`` and ``keys`` (e.g. the check id): independent streams per use."""
        digest = hashlib.sha256(repr((self.seed, *keys)).encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def torch_seed(self, *keys: Any) -> int:
        """An integer seed for ``torch.Generator`` derived like :meth:`rng`."""
        return int(self.rng("torch", *keys).integers(0, 2**62))

    def random_state(self, *keys: Any) -> int:
        """An integer seed in ``[0, 2**31)`` for a library that takes one (scikit-learn's ``random_state``).

        Derived like :meth:`rng`, so two uses with different keys get independent streams and one
        ``--seed`` still reproduces every number; never pass ``ctx.seed`` itself to a library.
        """
        return int(self.rng("random_state", *keys).integers(0, 2**31))

    def sample(self, n: int, *keys: Any) -> np.ndarray:
        """Up to ``n`` stratified row indices of the evaluation data, the same for the same keys and seed."""
        return stratified_sample(self.data.y, n, self.rng("sample", n, *keys))

    # -- model calls
    def predict_raw(self, x: np.ndarray) -> np.ndarray:
        from roadworthy.models.base import batched

        return batched(self.model.predict, x, self.batch_size)

    def predict_probs(self, x: np.ndarray) -> np.ndarray:
        return to_probs(self.predict_raw(x), self.model.output)

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        return to_logits(self.predict_raw(x), self.model.output)

    def predict_reference_raw(self, x: np.ndarray) -> np.ndarray:
        """The reference model's raw outputs on ``x``, batched. Only valid with a ``reference_model``."""
        from roadworthy.models.base import batched

        assert self.reference_model is not None
        return batched(self.reference_model.predict, x, self.batch_size)

    def features(self, x: np.ndarray) -> np.ndarray:
        """Penultimate features, batched. Only valid when ``"features" in ctx.capabilities``."""
        from roadworthy.models.base import batched

        return batched(self.model.features, x, self.batch_size)  # type: ignore[attr-defined]

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """Compute once per session, shared between checks (e.g. training-set features)."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def peek(self, key: str) -> Any:
        """What :meth:`cached` holds under ``key``, or ``None`` when nothing was computed yet."""
        return self._cache.get(key)

    # -- shifted outputs shared between checks
    def share_shifted(self, out: ShiftedOutputs) -> None:
        """Publish outputs on shifted evaluation rows, keyed by shift, severity and the rows' digest.

        Only the outputs are kept (``n x n_classes``), never the shifted images, so publishing every
        severity of every shift costs ``n_shifts x n_severities x n x n_classes`` floats.
        """
        index: dict[tuple[str, int], dict[str, ShiftedOutputs]] = self._cache.setdefault("shifted", {})
        index.setdefault((out.shift, int(out.severity)), {})[rows_digest(out.rows)] = out

    def shared_shifted(self, shift: str, severity: int) -> list[ShiftedOutputs]:
        """Outputs other checks published for ``shift`` at ``severity`` (one entry per sample of rows)."""
        index = self._cache.get("shifted", {})
        return list(index.get((shift, int(severity)), {}).values())

    def find_shifted(self, shift: str, severity: int, rows: np.ndarray) -> ShiftedOutputs | None:
        """Outputs published for ``shift`` at ``severity`` on exactly ``rows``, or ``None``."""
        index = self._cache.get("shifted", {}).get((shift, int(severity)), {})
        return index.get(rows_digest(rows))

    def stream_shifted(
        self,
        shift: str,
        severity: int,
        rows: np.ndarray,
        apply: Callable[[np.ndarray], np.ndarray],
        by: str,
        on_chunk: Callable[[int, int, np.ndarray, np.ndarray], None] | None = None,
    ) -> ShiftedOutputs:
        """Outputs on ``rows`` under ``apply`` (the shift at ``severity``), computed once and shared.

        Streams chunk by chunk (read the rows, shift them, predict, keep only the outputs), so memory
        holds one chunk of images (:data:`SHIFT_CHUNK_FLOATS` floats) whatever the number of rows. When
        another check already published outputs for the same shift, severity and rows, they are returned
        and the model is not called: ``on_chunk(start, stop, shifted, raw)`` (which sees each chunk's
        images, e.g. to keep a few for the report) then is not called, and ``.by`` names the check that
        computed them. When ``by`` itself published them (the same check run again), ``apply`` is
        replayed chunk by chunk without the model, so that ``on_chunk`` sees the same images again
        (``apply`` must then draw its randomness the same way, e.g. from a fresh ``ctx.rng``).
        """
        index = self._cache.get("shifted", {}).get((shift, int(severity)), {})
        hit = index.get(rows_digest(rows))
        if hit is not None and (on_chunk is None or hit.by != by):
            return hit
        n = len(rows)
        per = max(1, int(np.prod(self.data.input_shape)))
        chunk = max(1, SHIFT_CHUNK_FLOATS // per)
        raw: np.ndarray | None = None if hit is None else hit.raw
        change = 0.0
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            x0 = self.data.x[rows[start:stop]]
            xs = apply(x0)
            if hit is None:  # a replay (same check, same shift function) only regenerates the images
                r = self.predict_raw(xs)
                if raw is None:
                    raw = np.empty((n, *r.shape[1:]), np.float32)
                raw[start:stop] = r
                change += float(np.abs(xs - x0, dtype=np.float32).sum(dtype=np.float64))
            if on_chunk is not None:
                on_chunk(start, stop, xs, raw[start:stop])  # type: ignore[index]
            del x0, xs
        if hit is not None:
            return hit
        if raw is None:
            raw = np.zeros((0, self.n_classes), np.float32)
        out = ShiftedOutputs(shift, int(severity), np.asarray(rows), raw, change / max(1, n * per), by)
        self.share_shifted(out)
        return out

    @property
    def clean_raw(self) -> np.ndarray:
        return self.cached("clean_raw", lambda: self.predict_raw(self.data.x))

    @property
    def clean_probs(self) -> np.ndarray:
        """Probabilities on the evaluation data, computed once."""
        return self.cached("clean_probs", lambda: to_probs(self.clean_raw, self.model.output))

    @property
    def clean_logits(self) -> np.ndarray:
        return self.cached("clean_logits", lambda: to_logits(self.clean_raw, self.model.output))

    @property
    def clean_pred(self) -> np.ndarray:
        return self.clean_probs.argmax(axis=1)

    @property
    def train_probs(self) -> np.ndarray:
        assert self.train_data is not None
        return self.cached("train_probs", lambda: self.predict_probs(self.train_data.x))  # type: ignore[union-attr]

    @property
    def train_features(self) -> np.ndarray:
        assert self.train_data is not None
        return self.cached("train_features", lambda: self.features(self.train_data.x))  # type: ignore[union-attr]

    @property
    def clean_features(self) -> np.ndarray:
        return self.cached("clean_features", lambda: self.features(self.data.x))
