"""The Ray backend on a real cluster: a head node and a second node started with ``ray start``.

Every node advertises and listens on 127.0.0.1 only (started through :mod:`tests._ray_loopback`, which
stops Ray's CLI from replacing that address by the host's; a test checks every listening socket), keeps
its files in its own temporary folder (no clash
with another user's Ray) and is torn down by the PIDs of its processes, never by ``ray stop`` (which
would stop every Ray of this user on the machine). The cluster uses token authentication with a token
made for it, so a wrong token can be tried too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from roadworthy.config import RunConfig
from roadworthy.errors import InvalidInputError, UnsafeFileError
from tests._ray_loopback import DRIVER_ENV

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ANSI = re.compile(r"\x1b\[")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pids_under(folder: str) -> list[int]:
    """This user's processes whose command line names ``folder``, and their descendants."""
    parents: dict[int, int] = {}
    hits: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if folder in cmd:
            hits.add(int(entry.name))
    grew = True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in hits} - hits
        grew = bool(more)
        hits |= more
    return sorted(hits - {os.getpid()})


def _stop(folder: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _pids_under(folder)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while pids and time.monotonic() < deadline and _pids_under(folder):
            time.sleep(0.2)


def _env(token: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update(
        PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}",  # tests/ too: the crashing model below
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        RAY_USAGE_STATS_ENABLED="0",
        **DRIVER_ENV,  # drivers keep the loopback address (the nodes are started by tests._ray_loopback)
    )
    return env


#: the temporary folder of each running test cluster, by address (its processes name it)
CLUSTER_TEMP: dict[str, str] = {}


@pytest.fixture(scope="module")
def cluster():
    """``(address, env)`` of a running two-node cluster (one CPU each), stopped afterwards by PID."""
    temp = tempfile.mkdtemp(prefix="rw-ray-", dir="/tmp")  # short: Ray's socket paths must fit
    port = _free_port()
    env = _env(secrets.token_hex(16))
    common = [
        "--node-ip-address",
        "127.0.0.1",
        "--num-cpus",
        "1",
        "--temp-dir",
        temp,
        "--disable-usage-stats",
    ]
    try:
        for extra in (
            ["--head", "--port", str(port), "--include-dashboard", "false"],
            ["--address", f"127.0.0.1:{port}"],
        ):
            done = subprocess.run(
                [sys.executable, "-m", "tests._ray_loopback", "start", *extra, *common],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr[-2000:]
        CLUSTER_TEMP[f"127.0.0.1:{port}"] = temp
        yield f"127.0.0.1:{port}", env
    finally:
        _stop(temp)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory, digits_module, digits_split):
    """A folder holding a TorchScript digits model and a test ``.npz``, and an empty sub-folder."""
    torch = pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("project")
    torch.jit.script(digits_module).save(str(root / "model.pt"))
    _, _, x_te, y_te = digits_split
    np.savez(root / "test.npz", x=x_te[:300], y=y_te[:300])
    (root / "elsewhere").mkdir()
    return root


SUITES = ["--suite", "shift.gaussian_noise", "--suite", "shift.brightness"]


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "roadworthy"), "check", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _measured(report: dict) -> dict[str, float]:
    return {k: v for k, v in report["metrics"].items() if not k.startswith("sanity.latency")}


@pytest.mark.slow
def test_relative_paths_from_another_directory_give_the_local_metrics_for_two_seeds(cluster, project):
    address, env = cluster
    for seed in (0, 1):
        out = project / f"ray-{seed}"
        done = _cli(
            [
                "--model",
                "../model.pt",
                "--data",
                "../test.npz",
                *SUITES,
                "--budget",
                "quick",
                "--seed",
                str(seed),
                "--backend",
                "ray",
                "--ray-address",
                address,
                "--out",
                f"../ray-{seed}",
                "--workers",
                "2",
            ],
            env,
            project / "elsewhere",  # the workers run elsewhere again: only the driver sees these paths
        )
        assert done.returncode in (0, 1), done.stderr[-3000:]
        assert not ANSI.search(done.stdout) and not ANSI.search(done.stderr)
        assert "raylet" not in done.stdout and "SIGTERM" not in done.stdout + done.stderr
        remote = json.loads((out / "report.json").read_text())
        local = _local_report(project, seed)
        assert [c["id"] for c in remote["checks"]] == [c["id"] for c in local["checks"]]
        assert all(c["status"] != "error" for c in remote["checks"]), [c["error"] for c in remote["checks"]]
        assert _measured(remote) == _measured(local)
        where = {c["id"]: c["details"].get("ray") for c in remote["checks"]}
        assert where["sanity.latency"] is None  # measured in the driver, always
        ran = [w for w in where.values() if w is not None]
        assert ran and all(w["retries"] == 0 and w["node_id"] and w["pid"] for w in ran)
        nodes = {s["node_id"] for w in ran for s in w.get("shards", [w])}
        assert len(nodes) == 2  # both nodes took work (the shift checks' shards)


LISTENERS = """
import json, os, sys
import ray
from tests._ray_loopback import listening
from tests.test_ray_cluster import _pids_under

address, temp = sys.argv[1:3]
ray.init(address=address, log_to_driver=False)

@ray.remote(num_cpus=1)
class Probe:
    def where(self):
        return os.getpid(), ray.get_runtime_context().get_node_id()

probes = [Probe.remote() for _ in range(2)]  # one CPU per node: one actor on each
found = ray.get([p.where.remote() for p in probes])
pids = sorted(set(_pids_under(temp)) | {os.getpid()} | {pid for pid, _ in found})
print(json.dumps({"nodes": len({n for _, n in found}), "pids": len(pids), "listening": listening(pids)}))
"""


@pytest.mark.slow
def test_every_process_of_the_cluster_listens_on_loopback_only(cluster):
    """The GCS, both raylets (node manager, object manager), the workers' and the driver's gRPC servers:
    every listening TCP socket of the cluster's processes is on 127.0.0.1, none on another interface."""
    from tests._ray_loopback import is_loopback

    address, env = cluster
    temp = CLUSTER_TEMP[address]
    done = subprocess.run(
        [sys.executable, "-c", LISTENERS, address, temp],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["nodes"] == 2
    listening = [tuple(x) for x in out["listening"]]
    assert len({pid for pid, _, _ in listening}) >= 5  # GCS, 2 raylets, 2 actors, the driver...
    assert [x for x in listening if not is_loopback(x[1])] == []


class CrashOnce:
    """A linear digits classifier whose first call in a process other than ``driver`` kills that process
    (once in all: the marker file is created atomically), as a worker lost mid-check."""

    def __init__(self, weights: np.ndarray, marker: str, driver: int) -> None:
        self.weights, self.marker, self.driver = weights, marker, driver

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if os.getpid() != self.driver:
            try:
                with open(self.marker, "x"):
                    pass
            except FileExistsError:
                pass
            else:
                os._exit(1)
        return np.asarray(x, dtype=np.float64).reshape(len(x), -1) @ self.weights


KILLED = """
import json, os, sys
import numpy as np
import ray
import roadworthy
from tests.test_ray_cluster import CrashOnce

address, marker, x_path = sys.argv[1:4]
d = np.load(x_path)
model = CrashOnce(d["w"], marker, os.getpid())
kw = {"suites": ["clean"], "budget": "quick", "input_shape": (1, 16, 16)}
remote = roadworthy.check(model, (d["x"], d["y"]), backend="ray", ray_address=address, ray_timeout=60, **kw)
ray.shutdown()
local = roadworthy.check(model, (d["x"], d["y"]), **kw)
print(json.dumps({"remote": json.loads(remote.model_dump_json()), "local": json.loads(local.model_dump_json())}))
"""


@pytest.mark.slow
def test_a_worker_killed_mid_check_is_retried_and_recorded(cluster, digits_split, tmp_path):
    address, env = cluster
    x_tr, y_tr, x_te, y_te = digits_split
    weights = np.linalg.lstsq(x_tr.reshape(len(x_tr), -1), np.eye(10)[y_tr], rcond=None)[0]
    np.savez(tmp_path / "d.npz", w=weights, x=x_te[:200], y=y_te[:200])
    marker = tmp_path / "crashed"
    done = subprocess.run(
        [sys.executable, "-c", KILLED, address, str(marker), str(tmp_path / "d.npz")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert marker.exists()  # a worker did die
    out = json.loads(done.stdout.strip().splitlines()[-1])
    remote, local = out["remote"], out["local"]
    assert all(c["status"] != "error" for c in remote["checks"]), [c["error"] for c in remote["checks"]]
    where = [c["details"]["ray"] for c in remote["checks"] if c["details"].get("ray")]
    assert sorted(w["retries"] for w in where) == [0] * (len(where) - 1) + [1]  # the lost one, once
    assert _measured(remote) == _measured(local)


def _local_report(project: Path, seed: int) -> dict:
    import roadworthy

    report = roadworthy.check(
        str(project / "model.pt"),
        str(project / "test.npz"),
        suites=[s for s in SUITES if s != "--suite"],
        budget="quick",
        seed=seed,
    )
    return json.loads(report.model_dump_json())


@pytest.mark.slow
def test_a_wrong_token_is_refused_with_exit_2(cluster, project):
    address, env = cluster
    bad = {**env, "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    done = _cli(
        [
            "--model",
            "model.pt",
            "--data",
            "test.npz",
            "--suite",
            "clean",
            "--budget",
            "quick",
            "--backend",
            "ray",
            "--ray-address",
            address,
            "--ray-timeout",
            "5",
            "--out",
            "bad-token",
        ],
        bad,
        project,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "gcs_client" not in done.stderr  # Ray's own retry warnings stay quiet
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("roadworthy: error: --ray-address") and not ANSI.search(last)
    assert not (project / "bad-token" / "report.json").exists()


def test_an_unreachable_address_exits_2_with_one_line(project):
    port = _free_port()  # nothing listens there
    started = time.monotonic()
    done = _cli(
        [
            "--model",
            "model.pt",
            "--data",
            "test.npz",
            "--suite",
            "clean",
            "--budget",
            "quick",
            "--backend",
            "ray",
            "--ray-address",
            f"127.0.0.1:{port}",
            "--out",
            "unreachable",
        ],
        _env(secrets.token_hex(16)),
        project,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"roadworthy: error: --ray-address 127.0.0.1:{port}: no Ray cluster answers")
    assert "Traceback" not in done.stderr
    # the socket probe answers at once; the bound is the default 30 s connection timeout's order
    assert time.monotonic() - started < 120


def test_the_model_bytes_rebuild_the_model_with_the_same_trust_rules(tmp_path, digits_module):
    import pickle

    import torch

    from roadworthy.config import LoadOptions, ModelRecipe
    from roadworthy.runner.ray import ShippedModel, _rebuild

    path = tmp_path / "m.pt"
    torch.jit.script(digits_module).save(str(path))
    data = path.read_bytes()
    shipped = ShippedModel(ModelRecipe(str(path), LoadOptions(), (1, 16, 16)), data, "m.pt", False, "a" * 64)
    model = _rebuild(pickle.loads(pickle.dumps(shipped)))
    assert model.identity.sha256 == __import__("hashlib").sha256(data).hexdigest()
    assert _rebuild(shipped) is model  # loaded once per worker process

    pkl = tmp_path / "m.pkl"
    pkl.write_bytes(pickle.dumps({"not": "a model"}))
    untrusted = ShippedModel(
        ModelRecipe(str(pkl), LoadOptions(), None), pkl.read_bytes(), "m.pkl", False, "b" * 64
    )
    with pytest.raises(UnsafeFileError):
        _rebuild(untrusted)


def test_the_session_starts_the_backend_before_it_plans_and_always_closes_it(
    monkeypatch, digits_model, digits_data
):
    """The backend's prepare hook (Ray: the worker actors start) runs before the model timing and the
    plan, its pool reaches the run function, and is closed after the run, or when planning fails."""
    from roadworthy import session as S
    from roadworthy.runner import run_checks

    events: list = []

    class Pool:
        def close(self) -> None:
            events.append("close")

    def prepare(**options):
        assert len(options["sample"]) == 2  # a few rows the workers warm the model up on
        events.append(("prepare", options["workers"], options["model_recipe"] is recipe))
        return Pool()

    def backend(classes, ctx, prepared=None, **kw):
        events.append(("run", isinstance(prepared, Pool)))
        return run_checks(classes, ctx, **kw)

    plan = S.Session.make_plan
    monkeypatch.setitem(S.BACKENDS, "ray", backend)
    monkeypatch.setitem(S.PREPARE, "ray", prepare)
    monkeypatch.setattr(S.Session, "make_plan", lambda self, c: events.append("plan") or plan(self, c))
    recipe = object()

    def run():
        return S.Session(
            model=digits_model, data=digits_data, suites=["clean"], budget="quick", backend="ray",
            model_recipe=recipe, backend_options={"workers": 3},
        ).run()  # fmt: skip

    assert run().metrics["clean.accuracy"] > 0.5
    assert events == [("prepare", 3, True), "plan", ("run", True), "close"]
    events.clear()

    def broken(self, classes):
        raise InvalidInputError("the plan failed")

    monkeypatch.setattr(S.Session, "make_plan", broken)
    with pytest.raises(InvalidInputError, match="the plan failed"):
        run()
    assert events == [("prepare", 3, True), "close"]


def test_a_cancelled_shard_stops_at_its_next_model_call(monkeypatch):
    """Inside a Ray task the driver cancelled (a block run ahead past its check's stop), the worker's
    next model call raises instead of computing; outside the block the model's methods are its own."""
    ray = pytest.importorskip("ray")
    from roadworthy.runner.ray import _cancellable, _Cancelled

    class Flag:
        cancelled = False

        def is_canceled(self) -> bool:
            return self.cancelled

    flag = Flag()
    monkeypatch.setattr(ray, "get_runtime_context", lambda: flag)

    class Model:
        def predict(self, x):
            return x * 2

    model = Model()
    with _cancellable(model):
        assert model.predict(3) == 6  # not cancelled: the call goes through
        flag.cancelled = True
        with pytest.raises(_Cancelled):
            model.predict(3)
    assert "predict" not in vars(model) and model.predict(3) == 6


def test_ray_errors_become_one_clean_line():
    from roadworthy.runner.ray import clean_line

    text = "Traceback (most recent call last):\n  File \x1b[36m'x.py'\x1b[0m\n\x1b[31mValueError: bad input\x1b[0m\n"
    assert clean_line(text) == "ValueError: bad input"
    assert clean_line("\x1b[1mone\x1b[0m line") == "one line"


@pytest.mark.parametrize(
    ("field", "value"),
    [("ray_timeout", 0), ("ray_timeout", float("nan")), ("workers", 0), ("cpus_per_task", -1)],
)
def test_ray_settings_are_validated(field, value):
    with pytest.raises(InvalidInputError, match=field.replace("_", "-")):
        RunConfig(**{field: value})


def test_ray_settings_stay_out_of_the_run_key():
    assert {"ray_address", "ray_timeout", "workers", "cpus_per_task"} <= RunConfig.NOT_IN_RUN_KEY
    assert RunConfig(workers=2).backend_options()["workers"] == 2


def _dashboard_missing() -> str | None:
    """Why Ray's job server (its dashboard, ``ray[default]``) cannot start here, or ``None``."""
    try:
        import ray.dashboard.optional_deps  # noqa: F401
    except ImportError as exc:
        return f"Ray's job server needs ray[default] ({exc})"
    return None


def _submit_when_an_agent_answers(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``ray job submit``, again while the head's job server says it has no agent yet.

    ``ray start`` returns before the head node's dashboard agent has registered with the job server; a
    submission in that window is refused with "No available agent to submit job, please try again later"
    (HTTP 500, nothing was created, so submitting again is safe). On a loaded machine the window lasts
    seconds, so the test waits for the agent -- up to three minutes -- as Ray's message asks.
    """
    deadline = time.monotonic() + 180
    while True:
        job = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240)
        refused = "No available agent" in job.stdout + job.stderr
        if not refused or time.monotonic() > deadline:
            return job
        time.sleep(2)


@pytest.mark.slow
def test_ray_job_submit_runs_the_readme_command(project, tmp_path):
    """``ray job submit -- roadworthy check ...`` on a head node with its job server on 127.0.0.1: the
    job's driver runs on the cluster, connects through the ``RAY_ADDRESS`` Ray gives it, and writes the
    report the local backend would (metrics equal, latency aside)."""
    missing = _dashboard_missing()
    if missing:
        pytest.skip(missing)
    temp = tempfile.mkdtemp(prefix="rw-job-", dir="/tmp")
    port, dash = _free_port(), _free_port()
    env = _env(secrets.token_hex(16))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env["PYTHONPATH"], os.environ.get("PYTHONPATH")]))
    out = tmp_path / "job-report"
    try:
        done = subprocess.run(
            [
                sys.executable, "-m", "tests._ray_loopback", "start", "--head", "--port", str(port),
                "--node-ip-address", "127.0.0.1",
                "--num-cpus", "2", "--temp-dir", temp, "--disable-usage-stats", "--include-dashboard", "true",
                "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
                # the module's cluster may still run on this machine, its agents on Ray's default ports: a
                # second agent on a taken port never registers, and the job server then has no agent
                "--dashboard-agent-listen-port", str(_free_port()),
                "--dashboard-agent-grpc-port", str(_free_port()),
                "--runtime-env-agent-port", str(_free_port()),
                "--metrics-export-port", str(_free_port()),
            ],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        command = " ".join(
            [
                str(BIN / "roadworthy"), "check", "--model", str(project / "model.pt"), "--data",
                str(project / "test.npz"), *SUITES, "--budget", "quick", "--seed", "0", "--backend", "ray",
                "--workers", "2", "--out", str(out),
            ]
        )  # fmt: skip
        job = _submit_when_an_agent_answers(
            [str(BIN / "ray"), "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--", "sh", "-c",
             f'{command}; echo "roadworthy exit code: $?"'],
            env,
        )  # fmt: skip
        assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
        code = re.search(r"roadworthy exit code: (\d+)", job.stdout)
        assert code and code.group(1) in ("0", "1"), job.stdout[-3000:]
        report = json.loads((out / "report.json").read_text())
        assert all(c["status"] != "error" for c in report["checks"]), [c["error"] for c in report["checks"]]
        assert _measured(report) == _measured(_local_report(project, 0))
        assert any(c["details"].get("ray") for c in report["checks"])  # the checks ran on the cluster
    finally:
        _stop(temp)
        shutil.rmtree(temp, ignore_errors=True)
