"""Coverage-guided fuzzing (DeepHunter, Xie et al., ISSTA 2019; algorithms-spec A.6-A.9 and B.3).

The loop, in words:

1. **Dry run.** Every seed (a correctly classified evaluation input) is run once; its label is the
   ground truth of every mutant derived from it, its coverage is the starting coverage, and it enters
   the queue.
2. **Select.** Each iteration takes a *batch pool* of queue entries (``seeds_per_iteration``) by the
   selection strategy:

   ``prob`` (DeepHunter)
       a cursor walks the queue cyclically and takes the entry under it with probability
       ``P(s) = max(p_min, 1 - f(s) / gamma)``, ``f(s)`` being how often ``s`` was taken. New entries
       start at 1 (recency), often-fuzzed ones decay to ``p_min`` (diversity). This decay is
       DeepHunter's power schedule: it sets how much fuzzing energy each entry receives.
   ``uniform``
       any entry, uniformly.
   ``recency`` (DeepTest)
       the newest entries; an entry whose mutants brought no new coverage leaves the queue.
   ``tensorfuzz``
       uniformly among the five newest entries plus one random entry.
3. **Mutate.** Each selected entry yields ``mutants_per_seed`` mutants under DeepHunter's constraint
   (:mod:`roadworthy.coverage.mutations`).
4. **Run.** One forward pass over all mutants of the iteration gives predictions and, for a white-box
   model, the monitored layers; every criterion's bitmap is updated.
5. **Judge.** A mutant whose prediction differs from its root seed's label is a *failure* (never
   mutated further). With a validity gate (``is_valid``, e.g. the suite's best OOD detector fitted on
   training data, "Cats Are Not Fish", Berend et al., ASE 2020) a failure is a model defect only when
   the gate accepts the mutant as in-distribution; rejected ones are recorded as invalid failures.
   A non-failing mutant that touched a new cell of the guiding criterion joins the queue.

Black-box models run the same loop with the prediction criterion: a mutant is new when its lineage
reaches a predicted class or confidence bucket its seed had not reached before.

:func:`random_testing` is the baseline of the same budget, DeepHunter's random mode: every non-failing
mutant joins the queue whatever its coverage (spec A.6), and entries are drawn uniformly from the queue
(the released code's ``select_next`` ignores the strategy in random mode), so the two results can be
compared directly. Passing ``strategy="prob"`` to it instead isolates the coverage feedback: the same
selection as the guided run, only the queue differs.

Budget: ``max_queries`` counts every input sent to the model during fuzzing, the dry run included
(profiling is separate). The same ``seed`` gives the same result.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from roadworthy.coverage._layers import Observation, Probe, make_probe
from roadworthy.coverage.criteria import (
    NEURON_CRITERIA,
    Coverage,
    CoverageBook,
    CoverageSummary,
    Criterion,
    Profile,
    make_criterion,
    profile,
)
from roadworthy.coverage.mutations import (
    ALPHA,
    BETA,
    TRIES,
    Operator,
    Step,
    default_operators,
    mutate,
    replay,
)
from roadworthy.errors import InvalidInputError

Strategy = Literal["prob", "uniform", "recency", "tensorfuzz"]
STRATEGIES = ("prob", "uniform", "recency", "tensorfuzz")
# consecutive iterations without a single successful mutation before the loop gives up
_STALL_LIMIT = 50
#: bytes of queue images held by default (more are rebuilt from their seed and steps when selected)
QUEUE_BYTES = 256 * 2**20


class NoSeedsError(InvalidInputError):
    """The model misclassifies every seed: there is nothing to fuzz from."""


@dataclass(frozen=True)
class Failure:
    """One mutant the model got wrong.

    Attributes
    ----------
    seed_index
        Index of the root seed in the ``x`` passed to :func:`fuzz`.
    chain
        The operators applied from seed to mutant: ``((name, parameter), ...)``.
    true_class, predicted_class
        The seed's label and the mutant's prediction; ``confidence`` is the predicted class's
        probability.
    valid
        The validity gate's verdict (``True`` in-distribution, ``False`` rejected), ``None`` without a
        gate.
    query
        Index of the model query that produced the mutant (when it was found, in queries).
    digest
        Content hash of the mutant (counts unique failures).
    image
        The mutant itself for the first ``max_examples`` valid and invalid failures, else ``None``.
    """

    seed_index: int
    chain: tuple[tuple[str, Any], ...]
    true_class: int
    predicted_class: int
    confidence: float
    valid: bool | None
    query: int
    digest: str
    image: np.ndarray | None = None


@dataclass
class FuzzResult:
    """Everything a fuzzing run measured; a plain record for reports.

    Attributes
    ----------
    mode
        ``"coverage"`` (coverage-guided) or ``"random"`` (random-testing baseline).
    strategy, criterion, criterion_params
        The seed-selection strategy and the guiding criterion with its parameters.
    layers
        Monitored layers (empty for a black-box model).
    profile_source
        Where the KMNC/NBC/SNAC bounds came from: ``"training"``, ``"evaluation"`` or ``None``.
    n_seeds, n_seeds_dropped
        Seeds fuzzed, and seeds left out because the model misclassified them.
    coverage_before, coverage_after
        Per criterion, after the dry run and at the end.
    queue_size_initial, queue_size
        Queue entries after the dry run and at the end.
    failures
        Every failure, in the order found.
    n_queries, n_mutants, n_mutation_failures, iterations
        Model queries (dry run included), mutants run, mutations that found no valid variant within the
        tries, loop iterations.
    operators
        Per operator (the last one of each chain): ``mutants``, ``failures``, ``invalid``, ``new``.
    history
        Per iteration: ``queries``, ``coverage`` (guiding criterion's cell ratio), ``failures``.
    seconds
        Time split of the loop: ``forward``, ``coverage`` (layer summaries, cells and bitmaps),
        ``mutation``, ``validity``, ``other`` (selection, queue, records), and ``total`` (their sum,
        wall clock); outside the loop ``profile`` and ``dry_run``.
    seed
        The random seed.
    validity
        Which mutants the validity gate judged: ``"none"``, ``"failures"`` or ``"all"``.
    mutants_by_seed
        Mutants run per root seed (index into ``x``), so a failure rate per true class has its
        denominator.
    queue_images
        The queue's image store: ``max_bytes`` (the cap), ``peak_bytes`` (most held at once) and
        ``rebuilt`` (selections whose image had been dropped and was replayed from its seed).
    cells
        Only with ``keep_cells=True`` (sub-campaigns to merge, :func:`merge_results`): per criterion,
        the fitted criterion and its touched-cell bitmaps after the dry run and at the end (packed
        bits); else empty.
    """

    mode: str
    strategy: str
    criterion: str
    criterion_params: dict[str, Any]
    layers: tuple[str, ...]
    profile_source: str | None
    n_seeds: int
    n_seeds_dropped: int
    coverage_before: dict[str, CoverageSummary]
    coverage_after: dict[str, CoverageSummary]
    queue_size_initial: int
    queue_size: int
    failures: list[Failure]
    n_queries: int
    n_mutants: int
    n_mutation_failures: int
    iterations: int
    operators: dict[str, dict[str, int]]
    history: list[dict[str, float]]
    seconds: dict[str, float]
    seed: int
    validity: str
    mutants_by_seed: dict[int, int] = field(default_factory=dict)
    queue_images: dict[str, int] = field(default_factory=dict)
    cells: dict[str, tuple[Criterion, np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def valid_failures(self) -> list[Failure]:
        """Failures the validity gate accepted (all failures without a gate): the model defects."""
        return [f for f in self.failures if f.valid is not False]

    @property
    def invalid_failures(self) -> list[Failure]:
        """Failures on mutants the gate rejected as out of distribution ("out of envelope")."""
        return [f for f in self.failures if f.valid is False]

    @property
    def unique_failures(self) -> int:
        """Distinct failing images (by content hash)."""
        return len({f.digest for f in self.failures})

    @property
    def seeds_attacked(self) -> int:
        """Seeds with at least one valid failure among their descendants (DeepHunter's diversity)."""
        return len({f.seed_index for f in self.valid_failures})

    @property
    def mutants_per_second(self) -> float:
        """Mutants run per second of loop time (mutation, forward, bookkeeping)."""
        total = self.seconds.get("total", 0.0)
        return self.n_mutants / total if total > 0 else 0.0


@dataclass(eq=False)
class _Entry:
    """A queue entry: its lineage (root seed and steps) and lineage state (spec A.1). The image and
    its reference live in the fuzzer's :class:`_Images` store, which may drop them: they are rebuilt
    from ``root`` and ``steps`` (:func:`~roadworthy.coverage.mutations.replay`)."""

    affine_used: bool
    l0_ref: int
    linf_ref: float
    root: int
    chain: tuple[tuple[str, Any], ...]
    steps: tuple[Step, ...] = ()
    own_ref: bool = False  #: the reference differs from the root seed (an affine step was taken)
    selected: int = 0
    prob: float = 1.0
    key: int = -1  #: the image store's key (assigned when first stored)


class _Images:
    """The queue's images, held up to ``max_bytes`` (least recently used dropped first), rebuilt on
    demand from the root seed and the entry's steps.

    Root entries read the seeds themselves (nothing held). A mutant's image costs its bytes, plus as
    much again when its lineage took an affine step (its own reference); a reference shared along a
    lineage is counted once per entry, so the held bytes never exceed the count. Rebuilding replays
    the steps (bit-identical, see :func:`~roadworthy.coverage.mutations.replay`); with the default cap
    that only happens for large images (at 32 px, 256 MiB holds ~20,000 entries).
    """

    def __init__(self, seeds: np.ndarray, operators: Sequence[Operator], max_bytes: int) -> None:
        self.seeds = seeds
        self.operators = operators
        self.max_bytes = int(max_bytes)
        self.held: OrderedDict[int, tuple[np.ndarray, np.ndarray, int]] = OrderedDict()
        self._next_key = 0
        self.bytes = 0
        self.peak_bytes = 0
        self.rebuilt = 0

    def put(self, entry: _Entry, x: np.ndarray, ref: np.ndarray) -> None:
        if not entry.steps:
            return
        if entry.key < 0:
            entry.key, self._next_key = self._next_key, self._next_key + 1
        size = x.nbytes + (ref.nbytes if entry.own_ref else 0)
        if size > self.max_bytes:
            return
        while self.held and self.bytes + size > self.max_bytes:
            _, (_, _, dropped) = self.held.popitem(last=False)
            self.bytes -= dropped
        self.held[entry.key] = (x, ref, size)
        self.bytes += size
        self.peak_bytes = max(self.peak_bytes, self.bytes)

    def get(self, entry: _Entry, seed_index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image, reference)`` of ``entry``, whose root is ``seeds[seed_index]``."""
        if not entry.steps:
            return self.seeds[seed_index], self.seeds[seed_index]
        hit = self.held.get(entry.key)
        if hit is not None:
            self.held.move_to_end(entry.key)
            return hit[0], hit[1]
        self.rebuilt += 1
        x, ref = replay(self.seeds[seed_index], entry.steps, self.operators)
        if not entry.own_ref:
            ref = self.seeds[seed_index]
        self.put(entry, x, ref)
        return x, ref

    def forget(self, entry: _Entry) -> None:
        hit = self.held.pop(entry.key, None)
        if hit is not None:
            self.bytes -= hit[2]


@dataclass
class _Clock:
    seconds: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("forward", "coverage", "mutation", "validity", "other"), 0.0)
    )

    def add(self, key: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[key] += now - since
        return now


class Fuzzer:
    """DeepHunter's fuzz loop over one model; :func:`fuzz` and :func:`random_testing` build and run it.

    See :func:`fuzz` for the parameters.
    """

    def __init__(
        self,
        model: Any,
        x: np.ndarray,
        y: np.ndarray | None = None,
        *,
        criterion: str | Criterion | None = None,
        criteria: Sequence[str | Criterion] | None = None,
        criterion_params: Mapping[str, Mapping[str, Any]] | None = None,
        layers: Sequence[str] | None = None,
        train: np.ndarray | Profile | None = None,
        probe: Probe | None = None,
        strategy: Strategy = "prob",
        mode: Literal["coverage", "random"] = "coverage",
        mutants_per_seed: int = 20,
        seeds_per_iteration: int = 8,
        max_queries: int = 5000,
        operators: Sequence[Operator] | None = None,
        alpha: float = ALPHA,
        beta: float = BETA,
        tries: int = TRIES,
        gamma: float = 5.0,
        p_min: float = 0.3,
        is_valid: Callable[[np.ndarray], np.ndarray] | None = None,
        validity_on: Literal["failures", "all"] = "failures",
        queue_invalid: bool = True,
        max_examples: int = 16,
        max_queue_bytes: int = QUEUE_BYTES,
        keep_cells: bool = False,
        batch_size: int = 256,
        seed: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or len(x) == 0:
            raise InvalidInputError(
                f"fuzz: seeds must be a non-empty image batch (N, C, H, W). Got shape {x.shape}."
            )
        if y is not None:
            y = np.asarray(y).astype(np.int64)
            if y.shape != (len(x),):
                raise InvalidInputError(
                    f"fuzz: `y` must have one label per seed ({len(x)}). Got shape {y.shape}."
                )
        if strategy not in STRATEGIES:
            raise InvalidInputError(
                f"fuzz: `strategy` must be one of {', '.join(STRATEGIES)}. Got '{strategy}' instead."
            )
        if mode not in ("coverage", "random"):
            raise InvalidInputError(f"fuzz: `mode` must be 'coverage' or 'random'. Got '{mode}' instead.")
        if validity_on not in ("failures", "all"):
            raise InvalidInputError(
                f"fuzz: `validity_on` must be 'failures' or 'all'. Got '{validity_on}' instead."
            )
        for name, value in (
            ("mutants_per_seed", mutants_per_seed),
            ("seeds_per_iteration", seeds_per_iteration),
            ("max_queries", max_queries),
            ("tries", tries),
            ("batch_size", batch_size),
        ):
            if int(value) < 1:
                raise InvalidInputError(f"fuzz: `{name}` must be a positive integer. Got {value} instead.")
        if int(max_queue_bytes) < 0:
            raise InvalidInputError(
                f"fuzz: `max_queue_bytes` must be >= 0 (0 holds no queue image). Got {max_queue_bytes} instead."
            )
        if gamma <= 0 or not 0.0 <= p_min <= 1.0:
            raise InvalidInputError(
                f"fuzz: need gamma > 0 and p_min in [0, 1]. Got {gamma} and {p_min} instead."
            )
        self.model = model
        self.x, self.y = x, y
        self.mode, self.strategy = mode, strategy
        self.mutants_per_seed, self.seeds_per_iteration = int(mutants_per_seed), int(seeds_per_iteration)
        self.max_queries = int(max_queries)
        self.operators = tuple(operators) if operators is not None else default_operators()
        self.alpha, self.beta, self.tries = alpha, beta, int(tries)
        self.gamma, self.p_min = float(gamma), float(p_min)
        self.is_valid, self.validity_on, self.queue_invalid = is_valid, validity_on, queue_invalid
        self.max_examples, self.batch_size = int(max_examples), int(batch_size)
        self.max_queue_bytes = int(max_queue_bytes)
        self.keep_cells = bool(keep_cells)
        self.seed = int(seed)
        self.progress = progress
        self.rng = np.random.default_rng(seed)

        params = {k.lower(): dict(v) for k, v in (criterion_params or {}).items()}
        extra = list(criteria or ())
        self._own_probe = probe is None  # a probe made here is closed here (its hooks sit on the module)
        if probe is None:
            need_nc = criteria is None or any(_name(c) == "nc" for c in (criterion, *extra) if c is not None)
            probe = make_probe(model, x[:1], layers=layers, extrema=need_nc)
        self.probe = probe
        if criterion is None:
            criterion = "kmnc" if probe.white_box else "prediction"
        guide_name = _name(criterion)
        if criteria is None:
            extra = list(NEURON_CRITERIA) if probe.white_box else []
        wanted = [criterion, *(c for c in extra if _name(c) != guide_name)]
        if not probe.white_box:
            blind = [_name(c) for c in wanted if _name(c) != "prediction"]
            if blind:
                raise InvalidInputError(
                    f"fuzz: criterion {', '.join(blind)} needs neuron values, but this model is a black box "
                    "(no monitored layers); use criterion='prediction'"
                )
        self._wanted = [
            c if isinstance(c, Criterion) else make_criterion(c, **params.get(_name(c), {})) for c in wanted
        ]
        self._train = train
        self.guide_name = guide_name

    # -- the loop
    def run(self) -> FuzzResult:
        """Run the loop until the query budget is spent (or the queue stalls)."""
        try:
            return self._run()
        finally:
            if isinstance(self.probe, Probe):
                self.probe.gate_extrema(None)  # the gate reads this run's NC bitmap: not for a later run

    def _run(self) -> FuzzResult:
        clock = _Clock()
        start = time.perf_counter()
        probe = self.probe
        profile_data, profile_source = self._profile()
        profiled = time.perf_counter()

        # dry run: predictions, seed filter, starting coverage
        obs = self._observe_all(self.x)
        pred = obs.predictions
        if self.y is None:
            keep = np.arange(len(self.x))
            truth = pred
        else:
            keep = np.flatnonzero(pred == self.y)
            truth = self.y[keep]
        if keep.size == 0:
            raise NoSeedsError("fuzz: the model misclassifies every seed; there is nothing to fuzz from")
        n_classes = obs.probs.shape[1]
        criteria = [
            c.fit(probe.layout, profile_data, n_classes=n_classes, n_roots=keep.size) for c in self._wanted
        ]
        trackers = {c.name: Coverage(c) for c in criteria}
        guide = trackers[self.guide_name]
        book = CoverageBook(trackers, self.guide_name)
        # from here on the probe may skip the layer minima NC cannot use (removed when the run ends)
        if isinstance(probe, Probe):
            probe.gate_extrema(book.extrema_gate())
        kept_obs = _take(obs, keep)
        roots = np.arange(keep.size)
        for t in trackers.values():
            t.mark(t.criterion.cells(kept_obs, roots))
        coverage_before = {k: t.summary() for k, t in trackers.items()}
        bits_before = {k: t.packed() for k, t in trackers.items()} if self.keep_cells else {}
        queries = len(self.x)
        queue = [_Entry(False, 0, 0.0, r, ()) for r in range(keep.size)]
        queue_initial = len(queue)
        images = _Images(self.x, self.operators, self.max_queue_bytes)

        failures: list[Failure] = []
        examples = {True: 0, False: 0}
        root_mutants = np.zeros(keep.size, dtype=np.int64)
        op_stats = {op.name: {"mutants": 0, "failures": 0, "invalid": 0, "new": 0} for op in self.operators}
        history: list[dict[str, float]] = []
        n_mutants = n_mut_fail = iterations = stall = 0
        cursor = 0
        loop_start = time.perf_counter()
        while queries < self.max_queries and queue:
            t = time.perf_counter()
            iterations += 1
            picked, cursor = self._select(queue, cursor)
            parents = [queue[i] for i in picked]
            n = self.mutants_per_seed
            t = clock.add("other", t)
            held = [images.get(p, int(keep[p.root])) for p in parents]
            muts = mutate(
                np.repeat(np.stack([h[0] for h in held]), n, axis=0),
                np.repeat(np.stack([h[1] for h in held]), n, axis=0),
                np.repeat([p.affine_used for p in parents], n),
                np.repeat([p.l0_ref for p in parents], n),
                np.repeat([p.linf_ref for p in parents], n),
                self.rng,
                self.operators,
                self.alpha,
                self.beta,
                self.tries,
                copy=False,  # the repeated batches are the mutation's own
            )
            t = clock.add("mutation", t)
            rows = np.flatnonzero(muts.ok)
            n_mut_fail += int((~muts.ok).sum())
            rows = rows[: self.max_queries - queries]
            for p in parents:
                p.selected += 1
                p.prob = max(self.p_min, 1.0 - p.selected / self.gamma)
            if rows.size == 0:
                stall += 1
                if stall >= _STALL_LIMIT:
                    break
                continue
            stall = 0
            parent_of = rows // n
            row_roots = np.array([parents[j].root for j in parent_of], dtype=np.int64)
            root_mutants += np.bincount(row_roots, minlength=keep.size)
            xs = muts.x if rows.size == len(muts.x) else muts.x[rows]
            reduce_before = probe.reduce_seconds
            obs = self._observe_all(xs)  # in batches of at most batch_size (memory of large inputs)
            queries += rows.size
            n_mutants += rows.size
            t = clock.add("forward", t)
            clock.seconds["forward"] -= probe.reduce_seconds - reduce_before
            clock.seconds["coverage"] += probe.reduce_seconds - reduce_before
            # only the guide needs to know which mutant was first to a cell; the others mark in bulk
            new = book.observe(obs, row_roots)
            t = clock.add("coverage", t)
            pred = obs.predictions
            failing = pred != truth[row_roots]
            valid = np.ones(rows.size, dtype=bool)
            judged = np.zeros(rows.size, dtype=bool)
            if self.is_valid is not None:
                ask = np.arange(rows.size) if self.validity_on == "all" else np.flatnonzero(failing)
                if ask.size:
                    verdict = np.asarray(self.is_valid(xs[ask])).astype(bool).reshape(-1)
                    if verdict.shape != (ask.size,):
                        raise InvalidInputError(
                            f"fuzz: `is_valid` must return one bool per input ({ask.size}). "
                            f"Got shape {verdict.shape}."
                        )
                    valid[ask] = verdict
                    judged[ask] = True
            t = clock.add("validity", t)
            # per-operator counts in one pass; only failures and queue candidates need a Python record
            op_of = muts.op[rows]
            invalid = judged & ~valid
            for k in np.unique(op_of):
                stats = op_stats[self.operators[int(k)].name]
                mask = op_of == k
                stats["mutants"] += int(mask.sum())
                stats["new"] += int((new & mask).sum())
                stats["invalid"] += int((invalid & mask).sum())
                stats["failures"] += int((failing & mask).sum())
            record = failing | new if self.mode != "random" else np.ones(rows.size, dtype=bool)
            for j in np.flatnonzero(record):
                r = rows[j]
                parent = parents[parent_of[j]]
                op = self.operators[int(muts.op[r])]
                chain = (*parent.chain, (op.name, _plain(muts.param[r])))
                if failing[j]:
                    verdict_j = bool(valid[j]) if judged[j] else None
                    ok = verdict_j is not False
                    image = None
                    if examples[ok] < self.max_examples:
                        examples[ok] += 1
                        image = xs[j].copy()
                    failures.append(
                        Failure(
                            seed_index=int(keep[parent.root]),
                            chain=chain,
                            true_class=int(truth[parent.root]),
                            predicted_class=int(pred[j]),
                            confidence=float(obs.probs[j, pred[j]]),
                            valid=verdict_j,
                            query=int(queries - rows.size + j),
                            digest=hashlib.blake2b(xs[j].tobytes(), digest_size=8).hexdigest(),
                            image=image,
                        )
                    )
                    continue
                if not self.queue_invalid and judged[j] and not valid[j]:
                    continue
                if self.mode == "random" or new[j]:
                    affine_now = op.kind == "affine"
                    entry = _Entry(
                        bool(muts.affine_used[r]),
                        int(muts.l0_ref[r]),
                        float(muts.linf_ref[r]),
                        parent.root,
                        chain,
                        (*parent.steps, (int(muts.op[r]), muts.param[r], muts.state[r])),
                        own_ref=bool(muts.affine_used[r]),
                    )
                    queue.append(entry)
                    images.put(
                        entry, xs[j].copy(), muts.ref[r].copy() if affine_now else held[parent_of[j]][1]
                    )
            if self.strategy == "recency":
                # DeepTest: a selected entry whose mutants brought no new coverage leaves the queue
                stale = {id(p) for p in parents} - {id(parents[parent_of[j]]) for j in np.flatnonzero(new)}
                for e in queue:
                    if id(e) in stale:
                        images.forget(e)
                queue = [e for e in queue if id(e) not in stale]
            history.append(
                {"queries": queries, "coverage": guide.summary().cell_ratio, "failures": len(failures)}
            )
            clock.add("other", t)
            if self.progress is not None:
                self.progress(min(queries, self.max_queries), self.max_queries)
        t = time.perf_counter()
        book.flush()  # the measured criteria's last held batches, timed with the loop's bookkeeping
        clock.add("coverage", t)
        seconds = dict(clock.seconds)
        seconds["total"] = time.perf_counter() - loop_start
        seconds["profile"] = profiled - start
        seconds["dry_run"] = loop_start - profiled
        return FuzzResult(
            mode=self.mode,
            strategy=self.strategy,
            criterion=self.guide_name,
            criterion_params=guide.criterion.params(),
            layers=tuple(probe.layout.layers),
            profile_source=profile_source,
            n_seeds=int(keep.size),
            n_seeds_dropped=int(len(self.x) - keep.size),
            coverage_before=coverage_before,
            coverage_after=book.summaries(),
            queue_size_initial=queue_initial,
            queue_size=len(queue),
            failures=failures,
            n_queries=int(queries),
            n_mutants=int(n_mutants),
            n_mutation_failures=int(n_mut_fail),
            iterations=iterations,
            operators=op_stats,
            history=history,
            seconds=seconds,
            seed=self.seed,
            validity="none" if self.is_valid is None else self.validity_on,
            mutants_by_seed={int(keep[r]): int(c) for r, c in enumerate(root_mutants) if c},
            queue_images={
                "max_bytes": images.max_bytes,
                "peak_bytes": images.peak_bytes,
                "rebuilt": images.rebuilt,
            },
            cells={k: (t.criterion, bits_before[k], t.packed()) for k, t in trackers.items()}
            if self.keep_cells
            else {},
        )

    # -- helpers
    def _profile(self) -> tuple[Profile | None, str | None]:
        if not any(c.needs_profile for c in self._wanted):
            return None, None
        if isinstance(self._train, Profile):
            return self._train, self._train.source
        if self._train is not None:
            return profile(
                self.probe, np.asarray(self._train, dtype=np.float32), self.batch_size, "training"
            ), "training"
        return profile(self.probe, self.x, self.batch_size, "evaluation"), "evaluation"

    def _observe_all(self, x: np.ndarray) -> Observation:
        if len(x) <= self.batch_size:
            return self.probe(x)
        parts = [self.probe(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        return Observation(
            np.concatenate([p.probs for p in parts]),
            np.concatenate([p.values for p in parts]),
            np.concatenate([p.layer_min for p in parts]),
            np.concatenate([p.layer_max for p in parts]),
        )

    def _select(self, queue: list[_Entry], cursor: int) -> tuple[list[int], int]:
        m = self.seeds_per_iteration
        rng = self.rng
        if self.strategy == "uniform":
            return [int(i) for i in rng.integers(0, len(queue), m)], cursor
        if self.strategy == "recency":
            return list(range(max(0, len(queue) - m), len(queue))), cursor
        if self.strategy == "tensorfuzz":
            recent = list(range(max(0, len(queue) - 5), len(queue)))
            picks = []
            for _ in range(m):
                pool = [*recent, int(rng.integers(0, len(queue)))]
                picks.append(pool[int(rng.integers(0, len(pool)))])
            return picks, cursor
        picks = []
        cursor %= len(queue)
        while len(picks) < m:
            entry = queue[cursor]
            if rng.random() < entry.prob:
                picks.append(cursor)
            cursor = (cursor + 1) % len(queue)
        return picks, cursor


def _name(c: str | Criterion) -> str:
    return c.name if isinstance(c, Criterion) else str(c).lower()


def _plain(value: Any) -> Any:
    """A parameter as a plain Python value (for reports and JSON)."""
    return value.item() if isinstance(value, np.generic) else value


def _take(obs: Observation, idx: np.ndarray) -> Observation:
    return Observation(obs.probs[idx], obs.values[idx], obs.layer_min[idx], obs.layer_max[idx])


def fuzz(model: Any, x: np.ndarray, y: np.ndarray | None = None, **params: Any) -> FuzzResult:
    """Coverage-guided fuzzing of ``model`` from seeds ``x`` (DeepHunter).

    Parameters
    ----------
    model
        A roadworthy model. White-box PyTorch models (and ONNX models given ``layers`` tensor names) are
        guided by neuron coverage; any other model by prediction feedback.
    x, y
        Seeds (float32 NCHW in [0, 1]) and their labels; seeds the model misclassifies are dropped and
        counted. Without ``y`` the model's own predictions are the ground truth.
    criterion
        Guiding criterion: ``kmnc`` (default), ``nc``, ``nbc``, ``snac``, ``tknc`` or ``prediction``.
    criteria
        Criteria to measure besides the guide (default: all five neuron criteria for a white-box model).
    criterion_params
        Parameters by criterion name, e.g. ``{"kmnc": {"k": 1000}, "nc": {"threshold": 0.75}}``.
    layers
        Layers to monitor (module names; ONNX tensor names). Default: ReLU-like activations following
        convolutions and linear layers.
    train
        Training inputs for the KMNC/NBC/SNAC bounds, or a ready :class:`Profile`. Without it the
        seeds are profiled (``profile_source == "evaluation"``).
    probe
        A ready probe (overrides ``layers``).
    strategy
        Seed selection: ``prob`` (DeepHunter, default), ``uniform``, ``recency``, ``tensorfuzz``.
    mutants_per_seed, seeds_per_iteration
        Mutants per selected entry (DeepHunter: 20) and entries per iteration (the batch pool); one
        forward pass runs ``mutants_per_seed * seeds_per_iteration`` mutants.
    max_queries
        Budget in model queries, the dry run included.
    operators, alpha, beta, tries
        Mutation operators and DeepHunter's constraint (0.02, 0.20, 50 tries).
    gamma, p_min
        The ``prob`` strategy's decay: ``P(s) = max(p_min, 1 - f(s) / gamma)``.
    is_valid
        Validity gate ``is_valid(x) -> bool array`` (True = in-distribution).
    validity_on
        ``"failures"`` (default; judge failing mutants only) or ``"all"`` (judge every mutant; gives the
        invalid rate per operator and, with ``queue_invalid=False``, distribution-aware fuzzing).
    queue_invalid
        Whether mutants the gate rejected may join the queue (only with ``validity_on="all"``).
    max_examples
        Failure images kept, separately for valid and invalid failures.
    max_queue_bytes
        Bytes of queue images held (default 256 MiB). The queue itself is unbounded, as in DeepHunter,
        but an entry is kept as its root seed and its steps (operator, parameter, generator seed); the
        images of the least recently used entries beyond this cap are dropped and rebuilt exactly when
        selected again. Memory then stays bounded however long the run; results do not depend on it.
    batch_size
        Inputs per forward pass (profiling, dry run, and each iteration's mutants, which are split
        into passes of at most this many).
    keep_cells
        Keep every criterion's bitmaps in the result (``FuzzResult.cells``), so that sub-campaigns
        run on groups of seeds can be merged into one result (:func:`merge_results`).
    seed
        Seed of every random choice.
    progress
        Called as ``progress(queries_done, max_queries)`` after each iteration.
    """
    return _run_and_close(Fuzzer(model, x, y, **params))


def random_testing(model: Any, x: np.ndarray, y: np.ndarray | None = None, **params: Any) -> FuzzResult:
    """The random-testing baseline with :func:`fuzz`'s parameters and budget (DeepHunter's random mode):
    every non-failing mutant joins the queue, whatever its coverage, and entries are drawn uniformly
    (``strategy="uniform"`` unless given). Coverage is still measured, so the two runs compare
    directly."""
    params.setdefault("strategy", "uniform")
    return _run_and_close(Fuzzer(model, x, y, mode="random", **params))


def _run_and_close(fuzzer: Fuzzer) -> FuzzResult:
    """Run ``fuzzer``; a probe it made itself is removed from the model afterwards, whatever happens."""
    try:
        return fuzzer.run()
    finally:
        close = getattr(fuzzer.probe, "close", None)
        if fuzzer._own_probe and close is not None:
            close()


def merge_results(results: Sequence[FuzzResult | None], groups: Sequence[np.ndarray]) -> FuzzResult:
    """One result from sub-campaigns run on disjoint groups of seeds, as if run one after another.

    Each sub-campaign is a complete fuzzing run (its own queue, coverage feedback, budget and
    generator) on the seeds ``x[groups[g]]``, run with ``keep_cells=True``. The merged coverage is the
    union of their touched cells (per seed for the prediction criterion, whose cells are per root
    seed), so it is the coverage all the mutants reached together; counts add up; failures and
    ``mutants_by_seed`` are re-indexed into the whole seed array; a failure's ``query`` and the
    history's ``queries`` are offset by the queries of the sub-campaigns before it, and each history
    entry names its ``campaign`` (its ``coverage`` is that sub-campaign's own cell ratio).

    Parameters
    ----------
    results
        The sub-campaigns' results, in group order (the same mode, strategy and criteria); ``None``
        for a group whose every seed the model misclassifies (:class:`NoSeedsError`): its seeds count
        as dropped.
    groups
        Per result, the indices of its seeds in the whole seed array.

    Raises
    ------
    NoSeedsError
        When every group had no seed to fuzz from.
    """
    if len(results) != len(groups) or not results:
        raise InvalidInputError(
            f"fuzz: merge_results needs one group of seed indices per result. Got {len(results)} results "
            f"and {len(groups)} groups."
        )
    dropped = sum(len(gr) for r, gr in zip(results, groups, strict=True) if r is None)
    ran = [
        (g, r, np.asarray(gr, dtype=np.int64))
        for g, (r, gr) in enumerate(zip(results, groups, strict=True))
        if r is not None
    ]
    if not ran:
        raise NoSeedsError("fuzz: the model misclassifies every seed; there is nothing to fuzz from")
    if len(results) == 1 and np.array_equal(groups[0], np.arange(len(groups[0]))):
        return ran[0][1]
    campaigns = [g for g, _, _ in ran]
    results = [r for _, r, _ in ran]
    groups = [gr for _, _, gr in ran]
    missing = [g for g, r in enumerate(results) if not r.cells]
    if missing:
        raise InvalidInputError(
            f"fuzz: merge_results needs the sub-campaigns' cells; run them with keep_cells=True "
            f"(missing for campaign {missing[0]})."
        )
    first = results[0]

    def union(name: str, at: int) -> CoverageSummary:
        criterion = first.cells[name][0]
        maps = [np.unpackbits(r.cells[name][at])[: r.cells[name][0].n_cells].astype(bool) for r in results]
        if name == "prediction":  # cells per root seed: the groups' seeds side by side
            n_roots = [r.cells[name][0].n_roots for r in results]
            metrics = [r.cells[name][0].metric(b) for r, b in zip(results, maps, strict=True)]
            total = int(sum(n_roots))
            metric = (
                float(sum(m * n for m, n in zip(metrics, n_roots, strict=True)) / total) if total else 0.0
            )
            return CoverageSummary(
                name, metric, int(sum(int(b.sum()) for b in maps)), int(sum(b.size for b in maps))
            )
        bits = np.logical_or.reduce(maps)
        return CoverageSummary(name, criterion.metric(bits), int(bits.sum()), int(bits.size))

    names = list(first.coverage_after)
    failures: list[Failure] = []
    history: list[dict[str, float]] = []
    mutants_by_seed: dict[int, int] = {}
    operators: dict[str, dict[str, int]] = {}
    seconds: dict[str, float] = {}
    offset = 0
    for g, r, group in zip(campaigns, results, groups, strict=True):
        failures += [
            Failure(
                seed_index=int(group[f.seed_index]),
                chain=f.chain,
                true_class=f.true_class,
                predicted_class=f.predicted_class,
                confidence=f.confidence,
                valid=f.valid,
                query=f.query + offset,
                digest=f.digest,
                image=f.image,
            )
            for f in r.failures
        ]
        history += [{**h, "queries": h["queries"] + offset, "campaign": g} for h in r.history]
        for seed, n in r.mutants_by_seed.items():
            mutants_by_seed[int(group[seed])] = n
        for op, stats in r.operators.items():
            into = operators.setdefault(op, dict.fromkeys(stats, 0))
            for k, v in stats.items():
                into[k] += v
        for k, v in r.seconds.items():
            seconds[k] = seconds.get(k, 0.0) + v
        offset += r.n_queries
    return FuzzResult(
        mode=first.mode,
        strategy=first.strategy,
        criterion=first.criterion,
        criterion_params=first.criterion_params,
        layers=first.layers,
        profile_source=first.profile_source,
        n_seeds=sum(r.n_seeds for r in results),
        n_seeds_dropped=sum(r.n_seeds_dropped for r in results) + dropped,
        coverage_before={name: union(name, 1) for name in names},
        coverage_after={name: union(name, 2) for name in names},
        queue_size_initial=sum(r.queue_size_initial for r in results),
        queue_size=sum(r.queue_size for r in results),
        failures=failures,
        n_queries=sum(r.n_queries for r in results),
        n_mutants=sum(r.n_mutants for r in results),
        n_mutation_failures=sum(r.n_mutation_failures for r in results),
        iterations=sum(r.iterations for r in results),
        operators=operators,
        history=history,
        seconds=seconds,
        seed=first.seed,
        validity=first.validity,
        mutants_by_seed=dict(sorted(mutants_by_seed.items())),
        queue_images={
            "max_bytes": first.queue_images.get("max_bytes", 0),
            "peak_bytes": max(r.queue_images.get("peak_bytes", 0) for r in results),
            "rebuilt": sum(r.queue_images.get("rebuilt", 0) for r in results),
        },
    )


__all__ = [
    "STRATEGIES",
    "Failure",
    "FuzzResult",
    "Fuzzer",
    "NoSeedsError",
    "fuzz",
    "merge_results",
    "random_testing",
]
