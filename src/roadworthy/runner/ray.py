"""The Ray backend: checks that depend on no other check, and the shards of sample-sharded checks, run
in parallel on Ray worker actors.

One actor per worker (:class:`Worker`) rebuilds the model once and keeps one cache (clean predictions
and features, the validity gate) for every check and shard it runs. A check that implements the
sharding protocol (:meth:`~roadworthy.checks.base.Check.shard_items`: the shift checks, the attacks
but the sticker, the OOD detectors, the integrity checks' shared embedding) is split into shards of
whole blocks of its sample, at most one per worker (checks with the same
:meth:`~roadworthy.checks.base.Check.shard_key` and blocks share one set of shards); the blocks' parts come back here and :meth:`~roadworthy.checks.base.Check.merge`
computes the metrics from the merged per-sample arrays. Randomness is keyed per block, so 1 worker, 4
workers and the local backend give bit-identical metrics. A check with a sequential rule
(:meth:`~roadworthy.checks.base.Check.stops_early`: Square, few-pixel, line, laser) goes one block per
task (:class:`_Sequence`): its parts are consumed in block order and its own rule decides after each
whether to stop, as on the local backend; later blocks run ahead only on workers nothing else needs
(those still running at the stop are cancelled: they stop at their next model call).
A check whose every shard failed for an input reason stops the run
(:class:`~roadworthy.checks.base.ShardInputError`, exit 2): no verdict.

What a cluster needs: roadworthy and the model's framework installed on every node, nothing else. No
shared filesystem: every path is resolved on the driver (this process), the data sets go to Ray's
object store once, and so does the model: a model file's *bytes* (a folder's as a tar archive) travel
once through the object store and each worker process rebuilds the model from them once (a temporary
file, the same loader and the same ``--trust-pickle`` rule as here), then keeps it for every check and
shard it runs. A model given as a Python object travels pickled, like any task argument.

The session starts the worker actors (:func:`prepare_ray`, its backend hook) before it times the model
and plans the run, so their start overlaps that work; :func:`run_ray` then hands them the session's
inputs.

A local instance (no address) starts as one machine: node address 127.0.0.1, every Ray server on
loopback (:func:`_one_machine`).

Failures are said in one line: an unreachable or refusing cluster stops the run before any check
(:class:`~roadworthy.errors.InvalidInputError`, exit 2) within ``timeout`` seconds; a model that cannot
be rebuilt in a worker for an input reason does too; a lost worker is retried here (``retries``) and
then that check's ``error``, a message without Ray's colour codes. Each result records where it ran in
``details["ray"]`` (``node_id``, ``node_ip``, ``pid``, ``retries``; a sharded check also ``shards``, one
entry per shard with its node, process, retries and seconds). ``sanity.latency`` always runs in
this process: a Ray worker's one-thread torch would not describe the model. Aggregating checks
(``depends_on``) then run here, in order, on the results.

Install with ``pip install 'roadworthy[ray]'``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from roadworthy.checks.base import Block, Check, Context, Outcome, ShardInputError
from roadworthy.errors import InvalidInputError, require
from roadworthy.results import CheckResult
from roadworthy.runner.local import counting_passes, order_checks, run_check

#: Checks that always run in this process (what they measure is this machine's, not a worker's).
DRIVER_CHECKS = frozenset({"sanity.latency"})
#: Times a check is resubmitted after its worker or node died.
RETRIES = 2

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def clean_line(text: str) -> str:
    """``text`` without terminal escape codes, on one line (the last meaningful line of a traceback)."""
    lines = [ln.strip() for ln in _ANSI.sub("", str(text)).splitlines() if ln.strip()]
    if not lines:
        return ""
    # a Ray error prints the remote traceback, whose last line is the exception itself
    return lines[-1] if len(lines) > 1 and lines[-1][:1].isalpha() else " ".join(lines)


@dataclass(frozen=True)
class ShippedModel:
    """A model file's bytes in the object store and how to rebuild the model from them (picklable).

    ``recipe`` is the driver's :class:`~roadworthy.config.ModelRecipe` with its path resolved;
    ``name`` the file's (or folder's) own name, kept so the loader still sees its suffix.
    """

    recipe: Any
    blob: Any  # an ObjectRef to the bytes
    name: str
    folder: bool
    sha256: str


_LOADED: dict[str, Any] = {}
_LOCK = threading.Lock()


def _rebuild(shipped: Any) -> Any:
    """The model in this worker process, loaded once per model (bytes or recipe) and then reused."""
    if not isinstance(shipped, ShippedModel):
        return shipped()
    with _LOCK:
        if shipped.sha256 in _LOADED:
            return _LOADED[shipped.sha256]
        import ray

        data = shipped.blob if isinstance(shipped.blob, bytes) else ray.get(shipped.blob)
        where = Path(tempfile.mkdtemp(prefix="roadworthy-model-"))
        if shipped.folder:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
                tar.extractall(where, filter="data")
        else:
            (where / shipped.name).write_bytes(data)
        model = replace(shipped.recipe, source=str(where / shipped.name))()
        _LOADED[shipped.sha256] = model
        return model


def _where() -> dict[str, Any]:
    """Which node and process this is (``None`` where Ray cannot say)."""
    where: dict[str, Any] = {"node_id": None, "node_ip": None, "pid": os.getpid()}
    try:
        import ray

        where["node_id"] = ray.get_runtime_context().get_node_id()
        where["node_ip"] = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - where it ran is a detail, never a reason to fail
        pass
    return where


class Worker:
    """One Ray actor per worker: the model rebuilt once from its bytes, one cache for every check and
    shard it runs (clean predictions and features, the validity gate, the attack order), as the local
    backend shares them in its one :class:`~roadworthy.checks.base.Context`."""

    def __init__(self, shipped: Any, payload: dict[str, Any] | None = None, warm: Any = None) -> None:
        """Imports the checks and rebuilds the model at once, and with ``warm`` (a few input rows) warms
        up what a fresh process would otherwise pay during its first check (:meth:`_warm_up`): the
        actor starts while the driver still times the model and plans the run (:func:`prepare_ray`);
        the session's inputs come later (:meth:`configure`), before the first check."""
        from roadworthy.checks import load_builtin_checks
        from roadworthy.memory import keep_freed_memory

        keep_freed_memory()  # as the driver's session does: freed batch memory reused, not re-faulted
        load_builtin_checks()
        self.shipped, self.payload = shipped, payload
        self.cache: dict[str, Any] = {}
        self.model: Any = None
        self.failure: BaseException | None = None
        try:
            self.model = _rebuild(shipped)
        except Exception as exc:  # noqa: BLE001 - said by the first check or shard (input errors in one line)
            self.failure = exc
        if warm is not None and self.model is not None:
            self._warm_up(warm)

    def _warm_up(self, x: Any) -> None:
        """The libraries the checks import lazily (scikit-learn's neighbours and PCA, with pandas behind
        them: about 0.6 s) and, for a torch model, one forward and one input-gradient call on ``x``
        (thread pools, allocator, autograd), as the driver's process has them after its model timing.
        Nothing is kept and no number depends on it; a failure here is left to the real calls."""
        with contextlib.suppress(Exception):
            import sklearn.decomposition
            import sklearn.neighbors  # noqa: F401
        if not hasattr(self.model, "forward_torch"):
            return  # a remote (HTTP) or non-torch model: no call that is not a check's
        with contextlib.suppress(Exception):
            import numpy as np
            import torch

            xb = np.ascontiguousarray(x, dtype=np.float32)
            self.model.predict(xb)
            t = torch.from_numpy(xb).to(getattr(self.model, "device", "cpu")).requires_grad_(True)
            torch.autograd.grad(self.model.forward_torch(t).sum(), t)

    def configure(self, payload: dict[str, Any]) -> None:
        """The session's inputs (data, seed, budget, plan) for every later check and shard."""
        self.payload = payload
        self.cache = {}

    def _context(self) -> Context | str:
        """The context on this worker, or the model's input error (the same on every worker)."""
        if self.failure is not None:
            if isinstance(self.failure, InvalidInputError):
                return str(self.failure)
            raise self.failure
        assert self.payload is not None, "Worker.configure was not called"
        return Context(model=self.model, **self.payload, _cache=self.cache)

    def check(self, check_id: str) -> CheckResult:
        """A whole check, as the local backend runs it."""
        from roadworthy.checks import CHECKS

        where = _where()
        ctx = self._context()
        if isinstance(ctx, str):
            return CheckResult(
                id=check_id, suite=check_id.split(".")[0], title=check_id, status="error",
                error=f"model: {ctx}", details={"ray": where, "model_input_error": True},
            )  # fmt: skip
        try:
            result = run_check(CHECKS[check_id], ctx)
        except ShardInputError as exc:  # a sharded check run whole (it was not split): same rule
            return CheckResult(
                id=check_id, suite=check_id.split(".")[0], title=check_id, status="error",
                error=str(exc), details={"ray": where, "input_error": True},
            )  # fmt: skip
        result.details = {**(result.details or {}), "ray": where}
        return result

    def shard(self, check_id: str, blocks: list[Block]) -> dict[str, Any]:
        """:meth:`~roadworthy.checks.base.Check.run_blocks` of one shard: the parts, or why it failed."""
        import time
        import warnings

        from roadworthy.checks import CHECKS
        from roadworthy.errors import RoadworthyWarning

        out: dict[str, Any] = {
            "where": _where(),
            "passes": {"forward": 0, "gradient": 0},
            "blocks": len(blocks),
        }
        ctx = self._context()
        if isinstance(ctx, str):
            return out | {"model_input_error": ctx}
        check = CHECKS[check_id].planned(ctx.budget, ctx.plan_params.get(check_id))
        start = time.perf_counter()
        try:
            with (
                warnings.catch_warnings(record=True) as caught,
                counting_passes(ctx.model, out["passes"]),
                _cancellable(ctx.model),
            ):
                warnings.simplefilter("always", RoadworthyWarning)
                out["parts"] = check.run_blocks(ctx, blocks)
            out["warnings"] = [str(w.message) for w in caught if issubclass(w.category, RoadworthyWarning)]
        except _Cancelled:
            out["cancelled"] = True
        except InvalidInputError as exc:
            out["input_error"] = clean_line(str(exc))
        except Exception as exc:  # noqa: BLE001 - the shard's error, reported by the driver
            out["error"] = f"{type(exc).__name__}: {clean_line(str(exc))}"
        out["seconds"] = time.perf_counter() - start
        return out


class _Cancelled(Exception):
    """The driver cancelled this shard (a block run ahead past its check's stop)."""


@contextlib.contextmanager
def _cancellable(model: Any) -> Iterator[None]:
    """Inside the block, every call of the model's ``predict``, ``features`` or ``forward_torch`` first
    asks Ray whether the driver cancelled this task (``ray.cancel``) and stops it with
    :class:`_Cancelled` if so: a block run ahead and then dropped frees its worker at its next model
    call instead of running to its end. What a stopped block computed is dropped (nothing is cached
    half-done: :meth:`~roadworthy.checks.base.Context.cached` keeps only finished values)."""
    try:
        import ray

        context = ray.get_runtime_context()
        context.is_canceled()  # not available (an old Ray, no task): nothing to check
    except Exception:  # noqa: BLE001
        yield
        return

    def guarded(method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if context.is_canceled():
                raise _Cancelled
            return method(*args, **kwargs)

        return call

    saved = {}
    for name in ("predict", "features", "forward_torch"):
        method = getattr(model, name, None)
        if method is None or not callable(method):
            continue
        try:
            saved[name] = vars(model).get(name)
            setattr(model, name, guarded(method))
        except (AttributeError, TypeError):  # slots or a read-only attribute: not guarded
            saved.pop(name, None)
    try:
        yield
    finally:
        for name, before in saved.items():
            with contextlib.suppress(AttributeError):
                if before is None:
                    delattr(model, name)
                else:
                    setattr(model, name, before)


def _probe(address: str, timeout: float) -> None:
    """Fail fast (exit 2) when nothing listens at ``address``'s ``host:port``."""
    target = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" or another form Ray resolves itself
    try:
        with socket.create_connection(
            (host.strip("[]") or "127.0.0.1", int(port)), timeout=min(timeout, 10.0)
        ):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise InvalidInputError(
            f"--ray-address {address}: no Ray cluster answers there ({why}); start one with "
            "'ray start --head' or fix the address"
        ) from None


def connect(address: str | None, timeout: float, num_cpus: int | None = None) -> None:
    """Connect to (or start) Ray within ``timeout`` seconds, else :class:`InvalidInputError` (exit 2)."""
    import logging

    # Ray's C++ core writes its warnings (retries of a refused connection...) to stderr itself
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
    ray = require("ray", "ray", "--backend ray")
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    shown = address or "a local Ray instance"
    if address and address not in ("auto", "local"):
        _probe(address, timeout)
    outcome: dict[str, BaseException | None] = {}

    def init() -> None:
        try:
            ray.init(
                address=address,
                num_cpus=num_cpus if not address else None,
                include_dashboard=False,
                log_to_driver=False,  # workers' output stays off our stdout
                ignore_reinit_error=True,
                configure_logging=False,
                logging_level=logging.ERROR,
            )
            outcome["error"] = None
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = exc

    quiet = logging.getLogger("ray")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # Ray's own notices ("SIGTERM handler is not set"...) stay off the terminal
    try:
        if not address:  # a local instance: its processes die with the thread that starts them
            with _one_machine(ray):
                init()
            return _raise_init_error(outcome.get("error"), shown)
        # a cluster: connect from a thread, so an address that answers but never completes cannot hang us;
        # Ray's C++ core writes its retries ("Failed to get cluster ID"...) straight to file descriptor 2,
        # so that goes to a file while we wait, and stays there if the connection fails
        thread = threading.Thread(target=init, name="roadworthy-ray-init", daemon=True)
        with _core_stderr_aside() as failed:
            thread.start()
            thread.join(timeout)
            failed.append(thread.is_alive() or outcome.get("error") is not None)
    finally:
        quiet.setLevel(level)
    if thread.is_alive():
        raise InvalidInputError(
            f"--ray-address {shown}: Ray did not connect within {timeout:g} s (--ray-timeout); "
            "is the cluster up and reachable from here?"
        )
    _raise_init_error(outcome.get("error"), shown)


@contextlib.contextmanager
def _one_machine(ray: Any) -> Iterator[None]:
    """A local Ray instance started inside the block advertises and listens on 127.0.0.1 only.

    On Linux Ray gives a new instance the host's outward address, and its servers (GCS, raylet, the
    workers' gRPC servers, agents) then listen on every interface; it keeps to 127.0.0.1 only where it
    assumes one machine (macOS, Windows: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``). A local instance is
    one machine by definition, so its start reads that setting here (only while ``ray.init`` runs).
    Where this Ray has no such setting, nothing changes.
    """
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is None or not hasattr(constants, "ENABLE_RAY_CLUSTER"):
        yield
        return
    saved = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = saved


@contextlib.contextmanager
def _core_stderr_aside() -> Iterator[list[bool]]:
    """File descriptor 2 goes to a temporary file in the block. When the block appends ``True`` (the
    connection failed), fd 2 stays there and Python's ``sys.stderr`` moves to the terminal instead, so
    Ray's threads that keep retrying cannot print past roadworthy's one-line message."""
    import sys

    failed: list[bool] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (embedded, captured): nothing to do
        yield failed
        return
    aside = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    os.dup2(aside.fileno(), 2)
    try:
        yield failed
    finally:
        if failed and failed[-1]:
            sys.stderr = os.fdopen(saved, "w", buffering=1)
        else:
            os.dup2(saved, 2)
            os.close(saved)
        aside.close()


def _raise_init_error(exc: BaseException | None, shown: str) -> None:
    if exc is not None:
        msg = clean_line(str(exc)) or type(exc).__name__
        if _looks_like_auth(msg):
            why = f"the Ray cluster refused the connection: {msg}"
        elif isinstance(exc, ConnectionError):  # the port answered (probed), the cluster did not accept us
            why = f"{msg}; check the address and the cluster's auth token (RAY_AUTH_TOKEN)"
        else:
            why = f"the Ray cluster could not be used: {msg}"
        raise InvalidInputError(f"--ray-address {shown}: {why}") from None


def _looks_like_auth(msg: str) -> bool:
    low = msg.lower()
    return any(w in low for w in ("auth", "token", "permission", "unauthori", "denied", "credential"))


def _ship(recipe: Callable[[], Any], ray: Any) -> Any:
    """The model as it travels: a path's bytes through the object store, any other recipe as it is."""
    source = getattr(recipe, "source", None)
    if not isinstance(source, str | Path) or str(source).startswith(("http://", "https://")):
        return recipe
    path = Path(source).expanduser().resolve()
    if not path.exists():
        return replace(recipe, source=str(path))  # the loader says what is missing, here
    if path.is_dir():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(path, arcname=path.name)
        data = buf.getvalue()
    else:
        data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    return ShippedModel(replace(recipe, source=str(path)), ray.put(data), path.name, path.is_dir(), digest)


def _error_result(cls: type[Check], message: str, where: dict[str, Any]) -> CheckResult:
    return CheckResult(
        id=cls.id,
        suite=cls.suite(),
        title=cls.title,
        status="error",
        error=message,
        summary=f"The Ray task failed: {message}",
        details={"ray": where},
    )


def _lost_worker(exc: BaseException, ray: Any) -> bool:
    kinds = tuple(
        getattr(ray.exceptions, n)
        for n in (
            "WorkerCrashedError",
            "NodeDiedError",
            "ObjectLostError",
            "OwnerDiedError",
            "TaskUnschedulableError",
            "ActorDiedError",
            "ActorUnavailableError",
            "RayActorError",
        )
        if hasattr(ray.exceptions, n)
    )
    return isinstance(exc, kinds)


def _worker_count(ray: Any, workers: int | None, cpus_per_task: float) -> int:
    """Workers to start: ``workers``, else as many as the cluster's CPUs hold at ``cpus_per_task``
    (never more than that: the cluster is not assumed to grow)."""
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    fit = max(1, int(cpus // max(cpus_per_task, 1e-9)))
    # a worker the cluster cannot place would wait forever (the others hold their CPUs to the end)
    return min(int(workers), fit) if workers else fit


def _split(blocks: list[Block], n: int) -> list[list[Block]]:
    """``blocks`` in at most ``n`` contiguous shards of (nearly) equal size."""
    n = max(1, min(n, len(blocks)))
    size, extra = divmod(len(blocks), n)
    out, at = [], 0
    for i in range(n):
        step = size + (1 if i < extra else 0)
        out.append(blocks[at : at + step])
        at += step
    return out


def _merged(cls: type[Check], ctx: Context, shards: list[dict[str, Any]], started: float) -> CheckResult:
    """The sharded check's result: its shards' parts merged here, in block order.

    Every shard failed for an input reason: :class:`ShardInputError` (exit 2, no verdict). Any other
    failed shard makes the check's ``error`` (its first message, one clean line). The result records
    each shard's node, process, number of blocks, seconds and retries in ``details["ray"]["shards"]``.
    """
    import warnings

    from roadworthy.errors import RoadworthyWarning

    inputs = [sh["input_error"] for sh in shards if sh.get("input_error")]
    if inputs and len(inputs) == len(shards):
        raise ShardInputError(f"{cls.id}: every shard failed: {inputs[0]}")
    where = [
        {
            **sh.get("where", {}),
            "blocks": sh.get("blocks", 0),
            "retries": sh.get("retries", 0),
            "seconds": round(sh.get("seconds", 0.0), 3),
            **({"shared_with": sh["shared_with"]} if "shared_with" in sh else {}),
        }
        for sh in shards
    ]
    summary = {**where[0], "retries": sum(w["retries"] for w in where), "shards": where}
    failed = next((sh.get("error") or sh.get("input_error") for sh in shards if "parts" not in sh), None)
    if failed is not None:
        return _error_result(cls, _ANSI.sub("", failed), summary)

    def compute(check: Check) -> Outcome:
        for sh in shards:
            for text in sh.get("warnings", []):
                warnings.warn(text, RoadworthyWarning, stacklevel=2)
        return check.merge(ctx, [part for sh in shards for part in sh["parts"]])

    result = run_check(cls, ctx, compute=compute)
    result.details = {**(result.details or {}), "ray": summary}
    for sh in shards:
        for kind, n in sh.get("passes", {}).items():
            result.model_passes[kind] = result.model_passes.get(kind, 0) + int(n)
    result.duration_s = time.perf_counter() - started
    return result


@dataclass
class _Sequence:
    """The driver's view of a check with a sequential rule (:meth:`~roadworthy.checks.base.Check.stops_early`).

    Its blocks go out one task each, in order: the next block is queued as soon as none of the check's
    is queued or running (it is needed), and later blocks run ahead on workers that would otherwise idle.
    Parts are consumed in block order; after each, the check's own rule (``enough``) decides whether to
    stop, so the stop and the numbers are those of the local backend however the blocks were spread.
    """

    check: Check
    blocks: list[Block]
    handed: int = 0  #: blocks handed out (queued or run), in block order
    got: dict[int, dict[str, Any]] = field(default_factory=dict)  #: shard outputs by block index
    used: int = 0  #: blocks consumed, a prefix
    parts: list[Any] = field(default_factory=list)
    done: bool = False
    cancelled: int = 0  #: blocks still running at the stop, cancelled

    def hand_out(self, cid: str) -> tuple[str, int, list[Block]]:
        block = self.blocks[self.handed]
        self.handed += 1
        return (cid, block.index, [block])

    def consume(self, ctx: Context) -> list[dict[str, Any]] | None:
        """The shard outputs to merge once the prefix is decided (stopped, failed or complete), else None."""
        while self.used in self.got:
            sh = self.got[self.used]
            self.used += 1
            if "parts" not in sh:  # this block failed: the check fails with it (merge says how)
                self.done = True
                return [self.got[i] for i in range(self.used)]
            self.parts.extend(sh["parts"])
            if self.used == len(self.blocks) or self.check.enough(ctx, self.parts):
                self.done = True
                return [self.got[i] for i in range(self.used)]
        return None


@dataclass
class RayPool:
    """Worker actors started before the run is planned (:func:`prepare_ray`), handed to :func:`run_ray`.

    ``actors`` are starting (or ready): each imports roadworthy's checks and rebuilds the model from
    ``shipped`` while the driver times the model and plans; ``n_workers`` is how many the cluster holds.
    """

    shipped: Any
    actor_class: Any
    actors: list[Any]
    n_workers: int

    def close(self) -> None:
        """Stop every actor of the pool (a run that ended before using it)."""
        import ray

        for actor in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        self.actors = []


def prepare_ray(
    model_recipe: Callable[[], Any] | None = None,
    num_cpus: int | None = None,
    address: str | None = None,
    timeout: float = 30.0,
    workers: int | None = None,
    cpus_per_task: float = 1.0,
    sample: Any = None,
    **_: object,
) -> RayPool:
    """Connect to Ray, ship the model and start the worker actors without waiting for them.

    The session calls this before it times the model and plans the run (a backend hook), so that the
    actors' start (a new process importing roadworthy, torch and the model: seconds) overlaps the
    driver's own work; :func:`run_ray` then configures them with the session's inputs. The parameters
    are :func:`run_ray`'s; ``sample``: a few input rows the actors warm the model up on
    (:meth:`Worker._warm_up`). An unreachable cluster stops here, before any planning (exit 2).
    """
    ray = require("ray", "ray", "--backend ray")
    if model_recipe is None:
        raise InvalidInputError(
            "--backend ray needs a model that can be rebuilt in a worker (a file or a picklable object)"
        )
    connect(address, timeout, num_cpus)
    shipped = _ship(model_recipe, ray)
    n_workers = _worker_count(ray, workers, cpus_per_task)
    # retries are ours (no restarts), so each result can say how many it took
    actor_class = ray.remote(Worker).options(num_cpus=cpus_per_task, max_restarts=0, max_task_retries=0)
    actors = [actor_class.remote(shipped, None, sample) for _ in range(n_workers)]
    return RayPool(shipped, actor_class, actors, n_workers)


def run_ray(
    classes: Sequence[type[Check]],
    ctx: Context,
    on_result: Callable[[CheckResult], None] | None = None,
    done: dict[str, CheckResult] | None = None,
    say: Callable[[str], None] | None = None,
    model_recipe: Callable[[], Any] | None = None,
    num_cpus: int | None = None,
    address: str | None = None,
    timeout: float = 30.0,
    workers: int | None = None,
    cpus_per_task: float = 1.0,
    prepared: RayPool | None = None,
    **_: object,
) -> list[CheckResult]:
    """Run ``classes`` with Ray; results come back in dependency order, like the local backend's.

    Parameters
    ----------
    model_recipe
        Rebuilds the model (a :class:`~roadworthy.config.ModelRecipe`); a path's bytes are shipped.
    num_cpus
        CPUs of a Ray instance started here (no ``address``).
    address
        Ray cluster (``None``: ``RAY_ADDRESS``, else a local instance).
    timeout
        Seconds to wait for the cluster before stopping with exit 2.
    workers
        Worker actors (``None``: as many as the cluster's CPUs hold at ``cpus_per_task``); each loads
        the model once and runs whole checks and shards of sample-sharded checks, one at a time. A
        sharded check is split into at most ``workers`` shards of whole blocks, merged here.
    cpus_per_task
        CPUs reserved for each worker.
    prepared
        The pool :func:`prepare_ray` started with these settings (the session's hook), else one is
        started here.
    """
    own = prepared is None
    pool = prepared or prepare_ray(model_recipe, num_cpus, address, timeout, workers, cpus_per_task)
    try:
        return _run_on(pool, classes, ctx, on_result, done, say)
    finally:
        if own:  # a pool started here ends here (the session closes its own)
            pool.close()


def _run_on(
    pool: RayPool,
    classes: Sequence[type[Check]],
    ctx: Context,
    on_result: Callable[[CheckResult], None] | None,
    done: dict[str, CheckResult] | None,
    say: Callable[[str], None] | None,
) -> list[CheckResult]:
    """:func:`run_ray`'s work on the workers of ``pool`` (it takes them over and stops them at the end)."""
    import ray

    ordered = order_checks(classes)
    # the parity suite compares with ctx.reference_model, which stays in this process: it runs here
    parallel = [
        c
        for c in ordered
        if not c.depends_on
        and c.suite() != "parity"
        and c.id not in DRIVER_CHECKS
        and not (done and c.id in done and done[c.id].status != "error")
    ]
    shipped, actor_class, n_workers = pool.shipped, pool.actor_class, pool.n_workers
    payload = {
        "data": ctx.data,
        "train_data": ctx.train_data,
        "ood_data": ctx.ood_data,
        "budget": ctx.budget,
        "seed": ctx.seed,
        "baseline": ctx.baseline,
        "batch_size": ctx.batch_size,
        "plan_params": ctx.plan_params,
    }
    payload_ref = ray.put(payload)
    # the work: a sample-sharded check becomes shards of whole blocks (as many as workers, at most one
    # per block); any other check is one item
    items: list[tuple[str, int, list[Block]]] = []  # (check id, shard number or -1, blocks)
    n_shards: dict[str, int] = {}
    # checks with a sequential rule: one block per task, in order (the shard number is the block's index)
    sequences: dict[str, _Sequence] = {}
    # checks whose shards compute the same parts (Check.shard_key): the first one's shards serve the others
    shared: dict[tuple[Any, tuple[Block, ...]], str] = {}
    aliases: dict[str, list[str]] = {}
    for cls in parallel:
        check = cls.planned(ctx.budget, ctx.plan_params.get(cls.id))
        blocks = check.blocks(ctx) if cls.unmet(ctx) is None and check.shard_items(ctx) is not None else None
        if blocks is None:
            items.append((cls.id, -1, []))
            continue
        if check.stops_early() and blocks:
            sequences[cls.id] = _Sequence(check, blocks)
            items.append(sequences[cls.id].hand_out(cls.id))
            continue
        groups = [g for g in _split(blocks, n_workers) if g] or [[]]
        n_shards[cls.id] = len(groups)
        key = check.shard_key(ctx)
        if key is not None:  # the same parts as an earlier check's (the integrity embedding): run once
            owner = shared.setdefault((key, tuple(blocks)), cls.id)
            if owner != cls.id:
                aliases.setdefault(owner, []).append(cls.id)
                continue
        items.extend((cls.id, k, g) for k, g in enumerate(groups))
    ahead = sum(len(sq.blocks) - 1 for sq in sequences.values())  # blocks that may run ahead
    limit = min(n_workers, max(1, len(items) + ahead)) if items else 0
    actors, spare = pool.actors[:limit], pool.actors[limit:]
    pool.actors = []  # this run owns them now (stopped at its end)
    for actor in spare:  # more workers than work: stopped now, their CPUs free for the others
        with contextlib.suppress(Exception):
            ray.kill(actor)
    for actor in actors:
        actor.configure.remote(payload_ref)  # before any check: an actor runs its calls in order
    free = list(range(len(actors)))
    by_id = {c.id: c for c in parallel}
    queue = list(items)
    tries: dict[tuple[str, int], int] = {}
    pending: dict[Any, tuple[tuple[str, int, list[Block]], int]] = {}
    shards: dict[str, dict[int, dict[str, Any]]] = {cid: {} for cid in n_shards}
    started: dict[str, float] = {}
    finished: dict[str, CheckResult] = dict(done or {})

    def run_ahead() -> tuple[str, int, list[Block]] | None:
        """A later block of a sequential check, for a worker nothing else needs now."""
        for cid, sq in sequences.items():
            if not sq.done and sq.handed < len(sq.blocks):
                return sq.hand_out(cid)
        return None

    def waiting(cid: str) -> bool:
        return any(it[0] == cid for it in queue) or any(it[0] == cid for it, _ in pending.values())

    def submit() -> None:
        while free and (queue or sequences):
            item = queue.pop(0) if queue else run_ahead()
            if item is None:
                return
            slot = free.pop(0)
            cid, k, blocks = item
            tries.setdefault((cid, k), 0)
            started.setdefault(cid, time.perf_counter())
            actor = actors[slot]
            ref = actor.check.remote(cid) if k < 0 else actor.shard.remote(cid, blocks)
            pending[ref] = (item, slot)

    def record(result: CheckResult) -> None:
        cid = result.id
        finished[cid] = result
        if say:
            say(f"  {cid}: {result.status} ({result.duration_s:.1f} s, ray)")
        ctx.results[cid] = result
        if on_result:
            on_result(result)

    try:
        submit()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            item, slot = pending.pop(ref)
            cid, k, _blocks = item
            try:
                got = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a lost worker is that item's error, not the run's
                if _lost_worker(exc, ray):
                    with contextlib.suppress(Exception):
                        ray.kill(actors[slot])
                    actors[slot] = actor_class.remote(shipped, payload_ref)  # a fresh worker takes its place
                    if tries[(cid, k)] < RETRIES:
                        tries[(cid, k)] += 1
                        if say:
                            say(f"  {cid}: its Ray worker was lost; retry {tries[(cid, k)]}/{RETRIES}")
                        queue.insert(0, item)
                        free.append(slot)
                        submit()
                        continue
                cause = getattr(exc, "cause", None)
                text = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else str(exc)
                got = {"error": f"{type(exc).__name__}: {clean_line(text)}", "where": {}}
                if k < 0:
                    got = _error_result(by_id[cid], got["error"], {"retries": tries[(cid, k)]})
            free.append(slot)
            if cid not in sequences:
                # the freed worker takes its next item before this result is merged and recorded here
                # (merging, the partial report): the worker does not wait for the driver
                submit()
            if k < 0:
                result = got
                if result.details.get("model_input_error"):
                    reason = result.error.removeprefix("model: ")
                    raise InvalidInputError(f"--backend ray: a worker could not rebuild the model: {reason}")
                if result.details.pop("input_error", False):
                    raise ShardInputError(result.error)
                result.details.setdefault("ray", {})["retries"] = tries[(cid, k)]
                if result.error:
                    result.error = _ANSI.sub("", result.error)
                record(result)
            else:
                if got.get("model_input_error"):
                    raise InvalidInputError(
                        f"--backend ray: a worker could not rebuild the model: {got['model_input_error']}"
                    )
                got["retries"] = tries[(cid, k)]
                if cid in sequences:
                    sq = sequences[cid]
                    if sq.done:  # a block run ahead past the stop: dropped
                        submit()
                        continue
                    sq.got[k] = got
                    decided = sq.consume(ctx)
                    if decided is not None:
                        # blocks handed out past the stop are dropped: cancelled (a running one stops
                        # at its next model call), their workers free for the next item
                        queue[:] = [it for it in queue if it[0] != cid]
                        for ref_, (it, slot_) in list(pending.items()):
                            if it[0] == cid:
                                del pending[ref_]
                                with contextlib.suppress(Exception):
                                    ray.cancel(ref_)
                                sq.cancelled += 1
                                free.append(slot_)
                        submit()  # the freed workers go on while the prefix is merged here
                        result = _merged(by_id[cid], ctx, decided, started[cid])
                        result.details["ray"]["blocks_run_ahead_dropped"] = sq.handed - sq.used
                        result.details["ray"]["blocks_run_ahead_cancelled"] = sq.cancelled
                        record(result)
                    elif not waiting(cid):  # the next block is needed now
                        queue.append(sq.hand_out(cid))
                    submit()
                    continue
                for target in (cid, *aliases.get(cid, ())):
                    # a check served by another's shards: the same parts, no model passes of its own
                    shards[target][k] = got if target == cid else {**got, "passes": {}, "shared_with": cid}
                    if len(shards[target]) == n_shards[target]:
                        parts = [shards[target][i] for i in range(n_shards[target])]
                        record(_merged(by_id[target], ctx, parts, started[cid]))
            submit()
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
    results: list[CheckResult] = []
    for cls in ordered:
        if cls.id not in finished:  # this process's checks and aggregators, in order
            finished[cls.id] = run_check(cls, ctx)
            if say:
                say(f"  {cls.id}: {finished[cls.id].status} ({finished[cls.id].duration_s:.1f} s)")
            if on_result:
                on_result(finished[cls.id])
        ctx.results[cls.id] = finished[cls.id]
        results.append(finished[cls.id])
    return results
