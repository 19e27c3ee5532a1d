"""Served-model throughput: the HTTP adapter beside the same model called in-process.

Run by hand from the repository root (MLflow rows need ``mlflow`` installed)::

    .venv/bin/python -m benchmarks.bench_http [--samples 1024] [--batch 256] [--threads 2] [--no-mlflow]

The model is the demo road-sign CNN (``signnet``, five 3x3 conv stages of 32-128 channels, ~30 MMAC per
32-px image). Each row predicts ``--samples`` images in requests of ``--batch`` and reports samples per
second, best of ``--repeats``, and the ratio to the in-process ``TorchModel.predict`` of the same
module on the same batches (target: at least 0.8 for batch requests on localhost):

* ``in-process``: ``TorchModel.predict``, the reference;
* ``v2-binary``: the Open Inference Protocol with the binary tensor data extension (as Triton and KServe
  speak it), against a v2 server in another process (``tests/_v2server.py``) serving the module;
* ``v2-json``: the same server, tensors as JSON numbers;
* ``mlflow-json``: ``mlflow models serve`` of the module saved with MLflow's ``pt2`` format (JSON is
  the only tensor encoding MLflow's scoring protocol has).

Every server runs with the same torch thread count as the in-process reference. Writes
``benchmarks/results/http.json`` and ``benchmarks/results/http.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def _serve_v2(threads: int) -> None:
    """Child process: serve signnet over the v2 protocol and print the infer URL."""
    import torch
    from tests._v2server import V2Server

    from roadworthy.demo.model import load_demo_module

    torch.set_num_threads(threads)
    module = load_demo_module().eval()

    def fn(x):
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    with V2Server(fn, (3, 32, 32)) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


def _throughput(predict, x, batch: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(x), batch):
            predict(x[i : i + batch])
        best = min(best, time.perf_counter() - start)
    return len(x) / best


def _encode_time(model, x) -> float:
    """Seconds the adapter spends building one request body (JSON numbers or raw bytes)."""
    start = time.perf_counter()
    model._encode(x)
    return time.perf_counter() - start


def _wait(url: str, timeout: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--serve-v2", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_v2:
        _serve_v2(args.threads)
        return

    import numpy as np
    import torch

    from roadworthy.demo.model import load_demo_module
    from roadworthy.demo.signs import make_signs
    from roadworthy.models.http import HttpModel
    from roadworthy.models.torch import TorchModel

    torch.set_num_threads(args.threads)
    x, _ = make_signs(args.samples, seed=3)
    x = np.ascontiguousarray(x, dtype=np.float32)
    module = load_demo_module().eval()
    local = TorchModel(module, input_shape=(3, 32, 32))
    speed = _throughput(local.predict, x, args.batch, args.repeats)
    rows = [{"name": "in-process", "samples_per_s": speed, "encode_s": 0.0}]
    reference = local.predict(x[: args.batch])

    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_http", "--serve-v2", "--threads", str(args.threads)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        url = child.stdout.readline().strip()
        for name, binary in (("v2-binary", True), ("v2-json", False)):
            model = HttpModel(url, max_batch=args.batch, binary=binary, timeout=120)
            assert np.allclose(model.predict(x[: args.batch]), reference, atol=1e-4)
            speed = _throughput(model.predict, x, args.batch, args.repeats)
            rows.append(
                {"name": name, "samples_per_s": speed, "encode_s": _encode_time(model, x[: args.batch])}
            )
    finally:
        child.stdin.close()
        child.wait(timeout=30)

    if not args.no_mlflow:
        rows.append(_mlflow_row(module, x, args, reference, env))

    base = rows[0]["samples_per_s"]
    for row in rows:
        row["ratio_to_in_process"] = row["samples_per_s"] / base
    result = {
        "model": "signnet (demo road-sign CNN, 3x32x32, ~30 MMAC/image)",
        "samples": args.samples,
        "batch": args.batch,
        "threads": args.threads,
        "repeats": args.repeats,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end",
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "http.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Served-model throughput (benchmarks/bench_http.py)",
        "",
        f"{result['model']}; {args.samples} images in requests of {args.batch}; torch threads {args.threads} "
        f"on both sides; best of {args.repeats}. {result['machine']}.",
        "",
        "| path | samples/s | ratio to in-process | client: building one request (s) |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['name']} | {r['samples_per_s']:.0f} | {r['ratio_to_in_process']:.2f} | {r['encode_s']:.3f} |"
        for r in rows
    ]
    (RESULTS / "http.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _mlflow_row(module, x, args, reference, env) -> dict:
    import mlflow.pytorch
    import numpy as np
    from tests._mlflow import free_port

    from roadworthy.models.http import HttpModel

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "signnet"
        mlflow.pytorch.save_model(
            module, str(path), input_example=x[:2], serialization_format="pt2", pip_requirements=[]
        )
        port = free_port()
        env = {
            **env,
            "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
            "OMP_NUM_THREADS": str(args.threads),
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(path), "--env-manager", "local",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
        )  # fmt: skip
        try:
            _wait(f"http://127.0.0.1:{port}/ping")
            model = HttpModel(f"http://127.0.0.1:{port}/invocations", input_shape=(3, 32, 32), max_batch=args.batch,
                              timeout=300)  # fmt: skip
            assert np.allclose(model.predict(x[: args.batch]), reference, atol=1e-3)
            return {
                "name": "mlflow-json",
                "samples_per_s": _throughput(model.predict, x, args.batch, args.repeats),
                "encode_s": _encode_time(model, x[: args.batch]),
            }
        finally:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
