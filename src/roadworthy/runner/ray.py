"""The Ray backend: checks that depend on no other check run in parallel as Ray tasks.

What a cluster needs: roadworthy and the model's framework installed on every node, nothing else. No
shared filesystem: every path is resolved on the driver (this process), the data sets go to Ray's
object store once, and so does the model: a model file's *bytes* (a folder's as a tar archive) travel
once through the object store and each worker process rebuilds the model from them once (a temporary
file, the same loader and the same ``--trust-pickle`` rule as here), then keeps it for the next check it
runs. A model given as a Python object travels pickled, like any task argument.

Failures are said in one line: an unreachable or refusing cluster stops the run before any check
(:class:`~roadworthy.errors.InvalidInputError`, exit 2) within ``timeout`` seconds; a model that cannot
be rebuilt in a worker for an input reason does too; a lost worker is retried here (``retries``) and
then that check's ``error``, a message without Ray's colour codes. Each result records where it ran in
``details["ray"]`` (``node_id``, ``node_ip``, ``pid``, ``retries``). ``sanity.latency`` always runs in
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from roadworthy.checks.base import Check, Context
from roadworthy.errors import InvalidInputError, require
from roadworthy.results import CheckResult
from roadworthy.runner.local import order_checks, run_check

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


def _remote_check(check_id: str, shipped: Any, payload: dict[str, Any]) -> CheckResult:
    import ray

    from roadworthy.checks import CHECKS, load_builtin_checks

    load_builtin_checks()
    where = {"node_id": None, "node_ip": None, "pid": os.getpid()}
    try:
        ctx_ray = ray.get_runtime_context()
        where["node_id"] = ctx_ray.get_node_id()
        where["node_ip"] = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - where it ran is a detail, never a reason to fail
        pass
    try:
        model = _rebuild(shipped)
    except InvalidInputError as exc:  # the same failure on every worker: the driver stops the run
        return CheckResult(
            id=check_id, suite=check_id.split(".")[0], title=check_id, status="error",
            error=f"model: {exc}", details={"ray": where, "model_input_error": True},
        )  # fmt: skip
    result = run_check(CHECKS[check_id], Context(model=model, **payload))
    result.details = {**(result.details or {}), "ray": where}
    return result


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
        )
        if hasattr(ray.exceptions, n)
    )
    return isinstance(exc, kinds)


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
        Ray tasks in flight at once (``None``: every independent check at once).
    cpus_per_task
        CPUs reserved for each task.
    """
    ray = require("ray", "ray", "--backend ray")
    if model_recipe is None:
        raise InvalidInputError(
            "--backend ray needs a model that can be rebuilt in a worker (a file or a picklable object)"
        )
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
    connect(address, timeout, num_cpus)
    shipped = _ship(model_recipe, ray)
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
    # retries are ours (max_retries=0), so each result can say how many it took
    task = ray.remote(_remote_check).options(num_cpus=cpus_per_task, max_retries=0)
    by_id = {c.id: c for c in parallel}
    queue = [c.id for c in parallel]
    tries: dict[str, int] = dict.fromkeys(queue, 0)
    pending: dict[Any, str] = {}
    limit = workers or len(queue) or 1
    finished: dict[str, CheckResult] = dict(done or {})

    def submit() -> None:
        while queue and len(pending) < limit:
            cid = queue.pop(0)
            pending[task.remote(cid, shipped, payload_ref)] = cid

    submit()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        ref = ready[0]
        cid = pending.pop(ref)
        try:
            result = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - a lost worker is that check's error, not the run's
            if _lost_worker(exc, ray) and tries[cid] < RETRIES:
                tries[cid] += 1
                if say:
                    say(f"  {cid}: its Ray worker was lost; retry {tries[cid]}/{RETRIES}")
                queue.insert(0, cid)
                submit()
                continue
            cause = getattr(exc, "cause", None)
            text = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else str(exc)
            message = f"{type(exc).__name__}: {clean_line(text)}"
            result = _error_result(by_id[cid], message, {"retries": tries[cid]})
        if result.details.get("model_input_error"):
            reason = result.error.removeprefix("model: ")
            raise InvalidInputError(f"--backend ray: a worker could not rebuild the model: {reason}")
        result.details.setdefault("ray", {})["retries"] = tries[cid]
        if result.error:
            result.error = _ANSI.sub("", result.error)
        finished[cid] = result
        if say:
            say(f"  {cid}: {result.status} ({result.duration_s:.1f} s, ray)")
        ctx.results[cid] = result
        if on_result:
            on_result(result)
        submit()
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
