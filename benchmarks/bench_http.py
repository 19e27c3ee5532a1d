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
  the only tensor encoding MLflow's scoring protocol has for a tensor model: CSV and Parquet bodies
  become DataFrames, which a tensor signature refuses);
* ``mlflow-json x2``: the same server, two requests in flight (``concurrency=2``: the client encodes
  the next request while the server works on the current one).

For the MLflow rows the server's own parsing of one request is measured in this process with
MLflow's functions on the same body (the scoring server decodes the JSON twice, then converts the
nested lists to the signature's array): ``server parse (s)``. The ratio no client can beat is then
``model time / (model time + server parse)`` per request, the ``ceiling`` column.

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


def _mlflow_parse_time(model_dir: Path, body: bytes, repeats: int) -> float:
    """Seconds MLflow's scoring server spends turning one request body into the model's input array:
    its two JSON decodes and ``infer_and_parse_data`` with the saved model's signature."""
    from mlflow.models import Model
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    schema = Model.load(str(model_dir)).get_input_schema()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        json.loads(body)  # _decode_json_input
        infer_and_parse_data(json.loads(body), schema)  # _split_data_and_params decodes again
        best = min(best, time.perf_counter() - start)
    return best


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
    parser.add_argument("--render", action="store_true", help="rewrite http.md from http.json only")
    args = parser.parse_args()
    if args.render:
        result = json.loads((RESULTS / "http.json").read_text())
        (RESULTS / "http.md").write_text(_markdown(result))
        return
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
    model_s = args.batch / speed  # the model's own time for one request's batch
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
        rows += _mlflow_rows(module, x, args, reference, env, model_s)

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
    (RESULTS / "http.md").write_text(_markdown(result))
    print(_markdown(result))


def _markdown(result: dict) -> str:
    """The table and what it says about the 0.8 target (also ``--render`` from ``http.json``)."""
    rows = result["rows"]
    lines = [
        "# Served-model throughput (benchmarks/bench_http.py)",
        "",
        f"{result['model']}; {result['samples']} images in requests of {result['batch']}; torch threads "
        f"{result['threads']} on both sides; best of {result['repeats']}. {result['machine']}.",
        "",
        "| path | samples/s | ratio to in-process | client: building one request (s) | server parse (s) | ceiling |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['name']} | {r['samples_per_s']:.0f} | {r['ratio_to_in_process']:.2f} | {r['encode_s']:.3f} | "
        + (f"{r['server_parse_s']:.3f} | {r['ceiling']:.2f} |" if "server_parse_s" in r else "| |")
        for r in rows
    ]
    meet = [r["name"] for r in rows[1:] if r["ratio_to_in_process"] >= 0.8]
    miss = [r["name"] for r in rows[1:] if r["ratio_to_in_process"] < 0.8]
    lines += ["", f"Target (at least 0.8 of in-process for batch requests): met by {', '.join(meet) or 'none'}; "
              f"missed by {', '.join(miss) or 'none'}."]  # fmt: skip
    mlflow_rows = [r for r in rows if "server_parse_s" in r]
    if mlflow_rows:
        r = mlflow_rows[0]
        model_s = result["batch"] / rows[0]["samples_per_s"]
        lines += [
            "",
            f"MLflow's scoring protocol has only JSON for a tensor model. Its server spends "
            f"{r['server_parse_s']:.2f} s parsing one request of {result['batch']} images (two JSON decodes, "
            f"then nested lists to an array) against {model_s:.2f} s for the model itself, so even a client "
            f"that costs nothing stays at or below {r['ceiling']:.2f} of in-process: the floor is the "
            "server, not the adapter. Two requests in flight do not help (one scoring worker, and the "
            "client's encoding competes for the same cores). The adapter sends exact float32 values. A model "
            "that costs more per input byte than signnet gets closer to the target; for throughput serve "
            "it through the Open Inference Protocol with binary tensors (Triton, KServe, MLServer).",
        ]
    lines += [
        "",
        "v2-binary above 1.0: the server process runs its own two torch threads beside the client's, "
        "and on this loaded machine two processes get more CPU time than one. JSON numbers (v2-json) "
        "cost more to write and parse than the model takes to run.",
    ]
    return "\n".join(lines) + "\n"


def _mlflow_rows(module, x, args, reference, env, model_s: float) -> list[dict]:
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
            url = f"http://127.0.0.1:{port}/invocations"
            model = HttpModel(url, input_shape=(3, 32, 32), max_batch=args.batch, timeout=300)
            assert np.allclose(model.predict(x[: args.batch]), reference, atol=1e-3)
            body, _ = model._encode(x[: args.batch])
            parse_s = _mlflow_parse_time(path, body, args.repeats)
            ceiling = model_s / (model_s + parse_s)
            rows = [
                {
                    "name": "mlflow-json",
                    "samples_per_s": _throughput(model.predict, x, args.batch, args.repeats),
                    "encode_s": _encode_time(model, x[: args.batch]),
                }
            ]
            both = HttpModel(url, input_shape=(3, 32, 32), max_batch=args.batch, concurrency=2, timeout=300)
            rows.append(
                {
                    "name": "mlflow-json x2",
                    "samples_per_s": _throughput(both.predict, x, len(x), args.repeats),
                    "encode_s": _encode_time(both, x[: args.batch]),
                }
            )
            for row in rows:
                row["server_parse_s"], row["ceiling"] = parse_s, ceiling
            return rows
        finally:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
