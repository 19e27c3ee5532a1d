"""Real MLflow servers for tests: a tracking server on SQLite and a ``mlflow models serve`` endpoint.

Both listen on 127.0.0.1 on a free port, are started as their own process group and stopped by that
PID (SIGTERM, then SIGKILL after a grace period), also when a test fails. Every wait has a timeout;
a server that does not come up fails the fixture with the tail of its log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = float(os.environ.get("ROADWORTHY_TEST_SERVER_TIMEOUT", "240"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A server process we started; ``url`` is its base URL."""

    process: subprocess.Popen
    url: str
    log: Path

    def stop(self, grace_s: float = 3.0) -> None:
        """SIGTERM to the server's process group (its workers too), SIGKILL if it does not exit in time."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=grace_s)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def _mlflow_command() -> list[str]:
    return [sys.executable, "-m", "mlflow"]


def _start(args: list[str], url: str, health: str, log: Path, env: dict[str, str] | None) -> Server:
    handle = log.open("wb")
    process = subprocess.Popen(
        [*_mlflow_command(), *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # its own process group: stopped with every worker it forks
    )
    handle.close()
    server = Server(process, url, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{args[0]} exited with {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(url + health, timeout=2) as answer:
                if answer.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(
        f"{args[0]} did not answer {url + health} within {START_TIMEOUT_S:g} s:\n{server.log_tail()}"
    )


def start_tracking_server(root: Path) -> Server:
    """``mlflow server`` with a SQLite backend and proxied artifacts under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    return _start(args, f"http://127.0.0.1:{port}", "/health", root / "tracking-server.log", None)


def start_model_server(model_uri: str, tracking_uri: str, log_dir: Path) -> Server:
    """``mlflow models serve`` of ``model_uri`` in this Python environment (``--env-manager local``)."""
    port = free_port()
    args = [
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # the scoring server runs `uvicorn` from PATH: this environment's, as in an activated venv
    bin_dir = str(Path(sys.executable).parent)
    env = {"MLFLOW_TRACKING_URI": tracking_uri, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    return _start(args, f"http://127.0.0.1:{port}", "/ping", log_dir / "model-server.log", env)


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Yield ``server`` and stop it afterwards, whatever happened in between."""
    try:
        yield server
    finally:
        server.stop()


# -- pytest fixtures (imported by tests/conftest.py, so one server serves the whole session) ------------

import pytest  # noqa: E402

SKIP_REASON = "MLflow tests need the 'mlflow' package: pip install -e '.[test]' (CI installs it)"


def needs_mlflow() -> None:
    """Skip the calling test (or module) with a clear reason when ``mlflow`` is not importable."""
    pytest.importorskip("mlflow", reason=SKIP_REASON)


@contextlib.contextmanager
def tracking_uri(uri: str | None) -> Iterator[None]:
    """Point MLflow at ``uri`` for a block (a dead server, a file store), then back to what it was."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` on SQLite for the session; MLflow in this process points at it."""
    needs_mlflow()
    import mlflow

    server = start_tracking_server(tmp_path_factory.mktemp("mlflow"))
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        mlflow.set_tracking_uri(server.url)
        yield server
    finally:
        server.stop()
        mlflow.set_tracking_uri(previous)


@dataclass
class Registered:
    """The digits CNN logged once (``pt2``) and registered as ``digits`` version 1."""

    name: str
    version: str
    run_id: str
    model_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@pytest.fixture(scope="session")
def registered_digits(mlflow_server, digits_module, digits_split):
    """The digits CNN in the registry as ``digits`` v1, logged with MLflow's safe ``pt2`` format."""
    import mlflow
    import mlflow.pytorch

    x = digits_split[2][:2]
    mlflow.set_experiment("roadworthy-tests-models")
    with mlflow.start_run(run_name="train digits") as run:
        info = mlflow.pytorch.log_model(
            digits_module,
            name="model",
            input_example=x,
            serialization_format="pt2",
            pip_requirements=[],  # no requirements inference: seconds saved, nothing installed from it
            registered_model_name="digits",
        )
    return Registered("digits", str(info.registered_model_version), run.info.run_id, info.model_id)


@pytest.fixture(scope="session")
def served_digits(registered_digits, mlflow_server, tmp_path_factory):
    """``mlflow models serve`` of ``models:/digits/1`` on 127.0.0.1 (this environment, no new one)."""
    server = start_model_server(registered_digits.uri, mlflow_server.url, tmp_path_factory.mktemp("serve"))
    with running(server):
        yield server


def write_npz(path: Path, digits_split, n: int) -> Path:
    """The first ``n`` digits test images as a uint8 ``.npz`` file (what a pipeline would hand over)."""
    import numpy as np

    _, _, x, y = digits_split
    np.savez(path, x=(x[:n, 0] * 255).round().astype(np.uint8), y=y[:n])
    return path


def run_cli(args: list, capsys) -> tuple[int, str, str]:
    """``roadworthy ARGS`` in this process: (exit code, stdout, stderr)."""
    from roadworthy.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err
