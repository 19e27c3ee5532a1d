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
from roadworthy.errors import plural
from roadworthy.models.base import Model, capabilities, to_logits, to_probs
from roadworthy.types import BUDGETS  # re-exported: the budget names live on the ground floor

if TYPE_CHECKING:
    from roadworthy.results import CheckResult, Example, Report

__all__ = [
    "BUDGETS",
    "CHECKS",
    "Check",
    "Context",
    "NoParams",
    "NullProgress",
    "Outcome",
    "ProgressReporter",
    "Requires",
    "register",
]


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
        raise NotImplementedError

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
