"""A run's settings as two objects, built once by the CLI or by :func:`roadworthy.check`.

:class:`LoadOptions` says how the model and the data are read (normalisation, input shape, class names,
label column, image size...). :class:`RunConfig` says what runs and where (suites, budget, seed,
backend, batch size, output folder, resume, policy, baseline). The session, the report's ``run_key``
and the Ray backend's model recipe all read these objects, so an option is spelled in one place.

This module imports nothing of roadworthy but :mod:`roadworthy.errors` at import time (the CLI reads
the budget and backend names from it before anything heavy is loaded).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadworthy.errors import InvalidInputError
from roadworthy.types import BUDGETS  # re-exported: the run settings name the budgets

#: Where checks run (see :data:`roadworthy.runner.BACKENDS`, which maps each name to its function).
BACKEND_NAMES = ("local", "ray")
#: Where PyTorch models run.
DEVICES = ("cpu", "cuda")


def _tuple(values: Sequence[Any] | None, kind: type) -> tuple[Any, ...] | None:
    return tuple(kind(v) for v in values) if values is not None else None


@dataclass(frozen=True)
class HttpSettings:
    """How a served model (``--model http://...``) is called: the transport, never a measured number.

    A field left ``None`` falls back to its ``ROADWORTHY_HTTP_*`` environment variable, then to the
    adapter's default (see :class:`roadworthy.models.http.HttpModel`). Secrets do not belong on a
    command line: the ``Authorization`` header comes from ``ROADWORTHY_HTTP_AUTHORIZATION`` (or
    ``headers=`` in Python), and the headers are left out of ``repr``.

    Parameters
    ----------
    timeout
        Seconds one request may take, > 0 (``--http-timeout``; default 30).
    retries
        How often a failed request is tried again, >= 0 (``--http-retries``; default 3).
    max_rps
        Most requests started per second, > 0 (``--http-max-rps``; default: no limit).
    max_batch
        Most samples per request, >= 1 (``--http-max-batch``; default 256).
    concurrency
        Requests in flight at once for one large batch, >= 1 (``--http-concurrency``; default 1).
    binary
        Open Inference Protocol v2: ``True`` raw tensor bytes, ``False`` JSON numbers, ``None`` try
        binary first (``--http-binary`` / ``--http-json``).
    headers
        Extra request headers as ``(name, value)`` pairs (``--http-header "Name: value"``).
    """

    timeout: float | None = None
    retries: int | None = None
    max_rps: float | None = None
    max_batch: int | None = None
    concurrency: int | None = None
    binary: bool | None = None
    headers: tuple[tuple[str, str], ...] | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        checks = (
            ("timeout", "--http-timeout", float, lambda v: v > 0, "> 0 seconds"),
            ("retries", "--http-retries", int, lambda v: v >= 0, "an integer >= 0"),
            ("max_rps", "--http-max-rps", float, lambda v: v > 0, "> 0 requests per second"),
            ("max_batch", "--http-max-batch", int, lambda v: v >= 1, "an integer >= 1"),
            ("concurrency", "--http-concurrency", int, lambda v: v >= 1, "an integer >= 1"),
        )
        for name, option, kind, ok, expected in checks:
            value = getattr(self, name)
            if value is None:
                continue
            number = None
            is_number = isinstance(value, int | float) and not isinstance(value, bool)
            if is_number and math.isfinite(value) and (kind is float or float(value).is_integer()):
                number = kind(value)
            if number is None or not ok(number):
                raise InvalidInputError(f"{option} must be {expected}. Got {value!r} instead.")
            object.__setattr__(self, name, number)
        if self.binary is not None:
            object.__setattr__(self, "binary", bool(self.binary))
        if self.headers is not None:
            pairs = self.headers.items() if isinstance(self.headers, dict) else self.headers
            object.__setattr__(self, "headers", tuple((str(k), str(v)) for k, v in pairs) or None)

    @classmethod
    def coerce(cls, value: Any) -> HttpSettings | None:
        """Settings from ``None``, a dict of the fields, or settings (the Python API's ``http=``)."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, dict):
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise InvalidInputError(
                    f"`http` has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
                )
            return cls(**value)
        raise InvalidInputError(
            f"`http` must be a dict or an HttpSettings. Got {type(value).__name__} instead."
        )

    @classmethod
    def from_cli(
        cls,
        *,
        timeout: float | None = None,
        retries: int | None = None,
        max_rps: float | None = None,
        max_batch: int | None = None,
        concurrency: int | None = None,
        binary: bool | None = None,
        header: Sequence[str] = (),
    ) -> HttpSettings | None:
        """Settings from the ``--http-*`` options, or ``None`` when none was given.

        ``--http-header`` is ``"Name: value"``; an ``Authorization`` header is refused there (a token on
        the command line ends up in shell histories and process lists): it comes from
        ``ROADWORTHY_HTTP_AUTHORIZATION``.
        """
        headers = []
        for text in header:
            name, sep, value = text.partition(":")
            if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
                raise InvalidInputError(
                    f"--http-header must be 'Name: value', e.g. 'X-Team: vision'. Got {text!r} instead."
                )
            if name.strip().lower() in ("authorization", "proxy-authorization", "cookie"):
                raise InvalidInputError(
                    f"--http-header {name.strip()}: secrets are not taken from the command line (shell history, "
                    "process list); set ROADWORTHY_HTTP_AUTHORIZATION for the Authorization header"
                )
            headers.append((name.strip(), value.strip()))
        given = {
            "timeout": timeout,
            "retries": retries,
            "max_rps": max_rps,
            "max_batch": max_batch,
            "concurrency": concurrency,
            "binary": binary,
            "headers": tuple(headers) or None,
        }
        if all(v is None for v in given.values()):
            return None
        return cls(**given)

    def model_kwargs(self) -> dict[str, Any]:
        """The fields that were given, as keyword arguments of ``HttpModel``."""
        kw = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }
        if "headers" in kw:
            kw["headers"] = dict(kw["headers"])
        return kw


@dataclass(frozen=True)
class LoadOptions:
    """How the model and the data are read. Every field but ``trust_pickle`` can change a number.

    Parameters
    ----------
    trust_pickle
        Allow formats that run code from the file (pickles).
    mean, std
        The model's input normalisation in the units of inputs in [0, 1] (one value or one per channel).
    input_shape
        Per-sample shape for models that do not record it (default: the data's).
    feature_layer
        Layer (ONNX tensor) whose input gives the penultimate features.
    class_names
        The model's classes in output order; folder names and string labels are matched to them.
    target
        Label column of CSV/Parquet data.
    image_size
        Size image folders are resized to while read (``224``, ``"224x160"``, ``(224, 160)``).
    strict_data
        Stop on an image that cannot be decoded instead of skipping it.
    http
        How a served model is called (:class:`HttpSettings`, or a dict of its fields); only for an
        ``http(s)://`` model. Transport only, so not in the ``run_key``.
    """

    trust_pickle: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_shape: tuple[int, ...] | None = None
    feature_layer: str | None = None
    class_names: tuple[str, ...] | None = None
    target: str | None = None
    image_size: int | str | tuple[int, ...] | None = None
    strict_data: bool = False
    http: HttpSettings | None = None

    #: Fields that change no measured number, so they stay out of the report's ``run_key``.
    NOT_IN_RUN_KEY = frozenset({"trust_pickle", "http"})

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # normalise sequences once, so equal options compare and hash equal
        set_(self, "mean", _tuple(self.mean, float))
        set_(self, "std", _tuple(self.std, float))
        set_(self, "input_shape", _tuple(self.input_shape, int))
        set_(self, "class_names", _tuple(self.class_names, str))
        if isinstance(self.image_size, Sequence) and not isinstance(self.image_size, str):
            set_(self, "image_size", _tuple(self.image_size, int))
        set_(self, "http", HttpSettings.coerce(self.http))
        _check_normalisation(self.mean, self.std)

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`roadworthy.load_model` (without ``input_shape``)."""
        return {
            "trust_pickle": self.trust_pickle,
            "mean": self.mean,
            "std": self.std,
            "feature_layer": self.feature_layer,
            **({"http": self.http.model_kwargs()} if self.http is not None else {}),
        }

    def data_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`roadworthy.load_data` that apply to every data set."""
        kw: dict[str, Any] = {}
        if self.target is not None:
            kw["target"] = self.target
        if self.strict_data:
            kw["strict_data"] = True
        return kw

    def run_key_fields(self) -> dict[str, Any]:
        """The options that change a number, by name, for the report's ``run_key`` and ``options``."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in self.NOT_IN_RUN_KEY
        }


@dataclass(frozen=True)
class RunConfig:
    """What runs, how and where its report goes.

    Parameters
    ----------
    suites
        Suite names, check ids or patterns (``None``: every suite); ``sanity`` and ``clean`` always run.
    budget
        One of :data:`BUDGETS`.
    seed
        Seed of every random choice.
    backend
        One of :data:`BACKEND_NAMES`.
    batch_size
        Batch size of model calls.
    out
        Folder for the report files (``None``: nothing is written).
    resume
        Reuse the finished checks of an interrupted run in ``out`` with the same ``run_key``.
    policy
        A :class:`roadworthy.policy.Policy`, a YAML path, or ``None`` for the default policy.
    baseline
        A baseline :class:`roadworthy.results.Report` or its path.
    force_baseline
        Compare with a baseline that measured other data.
    time_limit
        Seconds the run should take at most (``--time-limit 15m``); the plan shrinks sample counts to fit
        it instead of the budget's own time target. In the ``run_key``.
    device
        ``cpu`` or ``cuda`` (PyTorch models; refused when no GPU is available).
    ray_address
        Ray cluster the ``ray`` backend connects to (``host:port``, ``ray://host:port``, ``auto``);
        ``None``: ``RAY_ADDRESS``, else a Ray instance started in this process.
    ray_timeout
        Seconds to wait for the Ray cluster to answer before giving up (exit 2).
    workers
        Ray tasks in flight at once (``None``: as many as the cluster schedules).
    cpus_per_task
        CPUs Ray reserves for each task (and the threads the model uses there).
    """

    suites: tuple[str, ...] | None = None
    budget: str = "standard"
    seed: int = 0
    backend: str = "local"
    batch_size: int = 256
    out: Path | None = None
    resume: bool = False
    policy: Any = None
    baseline: Any = None
    force_baseline: bool = False
    time_limit: float | None = None
    device: str = "cpu"
    ray_address: str | None = None
    ray_timeout: float = 30.0
    workers: int | None = None
    cpus_per_task: float = 1.0

    #: Fields that change no measured number (the others are in the ``run_key``: ``suites`` as the
    #: selected check ids, ``baseline`` as a hash of its metrics). The policy only judges the numbers,
    #: and the Ray backend gives the local one's numbers.
    NOT_IN_RUN_KEY = frozenset(
        {
            "backend",
            "out",
            "resume",
            "policy",
            "force_baseline",
            "device",
            "ray_address",
            "ray_timeout",
            "workers",
            "cpus_per_task",
        }
    )

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.suites is not None:
            set_(self, "suites", tuple(str(s) for s in self.suites) or None)
        if self.out is not None:
            set_(self, "out", Path(self.out))
        if self.budget not in BUDGETS:
            raise InvalidInputError(
                f"--budget must be one of {', '.join(BUDGETS)}. Got {self.budget!r} instead."
            )
        if self.backend not in BACKEND_NAMES:
            raise InvalidInputError(
                f"--backend must be one of {', '.join(BACKEND_NAMES)}. Got {self.backend!r} instead."
            )
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InvalidInputError(f"--batch-size must be at least 1. Got {self.batch_size!r} instead.")
        if self.time_limit is not None:
            from roadworthy.plan import parse_duration

            set_(self, "time_limit", parse_duration(self.time_limit))
        if self.device not in DEVICES:
            raise InvalidInputError(
                f"--device must be one of {', '.join(DEVICES)}. Got {self.device!r} instead."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InvalidInputError(f"--seed must be an integer. Got {self.seed!r} instead.")
        if not _positive(self.ray_timeout):
            raise InvalidInputError(
                f"--ray-timeout must be a positive number of seconds. Got {self.ray_timeout!r} instead."
            )
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1
        ):
            raise InvalidInputError(f"--workers must be at least 1. Got {self.workers!r} instead.")
        if not _positive(self.cpus_per_task):
            raise InvalidInputError(
                f"--cpus-per-task must be a positive number. Got {self.cpus_per_task!r} instead."
            )

    def backend_options(self) -> dict[str, Any]:
        """The settings of the ``ray`` backend, as keyword arguments of its run function."""
        return {
            "address": self.ray_address,
            "timeout": float(self.ray_timeout),
            "workers": self.workers,
            "cpus_per_task": float(self.cpus_per_task),
        }


def _positive(v: object) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v) and v > 0


@dataclass(frozen=True)
class ModelRecipe:
    """Loads the model from ``source`` with ``options``: the same call in this process and in a Ray worker.

    Picklable when ``source`` is (a path, or a picklable object), so the Ray backend can rebuild the
    model in each worker without re-spelling any option.
    """

    source: Any
    options: LoadOptions
    input_shape: tuple[int, ...] | None = None

    def __call__(self) -> Any:
        from roadworthy.models import load_model

        return load_model(self.source, input_shape=self.input_shape, **self.options.model_kwargs())


def _check_normalisation(mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
    """``mean`` and ``std`` are in the units of inputs in [0, 1]; 0-255 values are a mistake to refuse."""
    for option, values in (("--mean", mean), ("--std", std)):
        for v in values or ():
            v = float(v)
            ok = math.isfinite(v) and (0 <= v <= 1 if option == "--mean" else 0 < v <= 1)
            if ok:
                continue
            hint = (
                f"; it looks like 0-255 units: pass {v / 255:.4g} ({v:g}/255)"
                if math.isfinite(v) and 1 < v <= 255
                else ""
            )
            expected = "in [0, 1]" if option == "--mean" else "in (0, 1]"
            raise InvalidInputError(
                f"{option} values must be {expected} (images are scaled to [0, 1] before normalisation). "
                f"Got {v:g}{hint}."
            )
