"""Scaling of the Ray backend on one host: the shift and attack suites with 1, 2 and 4 Ray workers
against the local backend, and a critical-path estimate for 8 and 32 workers.

One command (a local Ray instance is started in this process, 4 worker CPUs declared)::

    .venv/bin/python -m benchmarks.bench_ray            # 2,000 demo images, standard budget
    .venv/bin/python -m benchmarks.bench_ray --quick    # 256 images, 3 shifts + PGD, quick budget

Every configuration runs :func:`roadworthy.check` on the demo road-sign model with the same seed; the
metrics of every Ray run are compared with the local backend's (latency aside: they must be equal).
Measured: wall time per configuration; the overhead of Ray with one worker (wall / local wall); and
from the one-worker run each check's seconds (a sharded check: its shard's seconds per block). The
estimate for 8 and 32 workers schedules that work the way the backend does (a sharded check cut into at
most one shard per worker, whole blocks; every item to the next free worker, in the runner's order) and
adds the driver's own time measured in the one-worker run (start-up, latency, merges, aggregators). It
is an estimate: it assumes one CPU per worker, no contention and the per-block time of the one-worker run.

What a 2-core host can and cannot show: with 1 worker Ray's cost over local is visible (start-up, the
worker's own clean predictions, one-thread torch vs the local backend's two threads); 2 workers can use
both cores; 4 workers on 2 cores share them, so the 4-worker wall time shows the scheduling, not a speed-up.
Writes ``benchmarks/results/ray.json`` and ``benchmarks/results/ray.md``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
QUICK_SUITES = ["shift.gaussian_noise", "shift.brightness", "shift.contrast", "attack.pgd_linf"]


def _measured(report: Any) -> dict[str, float]:
    return {k: v for k, v in report.metrics.items() if not k.startswith("sanity.latency")}


def _items(report: Any) -> tuple[list[dict[str, Any]], float]:
    """The work items of a Ray run in the runner's order (a sharded check: seconds per block), and the
    seconds of work the workers did (every item's own time)."""
    items, worker_s = [], 0.0
    for c in report.checks:
        ray = (c.details or {}).get("ray")
        if not ray:
            continue
        shards = ray.get("shards")
        if shards and (c.details or {}).get("sequential"):
            # a sequential attack: its blocks run one after another (the stop rule reads each in turn);
            # running ahead on idle workers is not counted, so this is the slow bound
            secs = float(sum(s["seconds"] for s in shards))
            items.append({"id": c.id, "blocks": 0, "seconds": secs})
            worker_s += secs
        elif shards:
            n_blocks = int(sum(s["blocks"] for s in shards))
            secs = float(sum(s["seconds"] for s in shards))
            items.append({"id": c.id, "blocks": n_blocks, "per_block": secs / max(1, n_blocks)})
            worker_s += secs
        else:
            items.append({"id": c.id, "blocks": 0, "seconds": float(c.duration_s)})
            worker_s += float(c.duration_s)
    return items, worker_s


def critical_path(items: list[dict[str, Any]], workers: int) -> float:
    """Makespan of ``items`` on ``workers`` workers, scheduled as the backend does: a sharded check cut
    into at most ``workers`` shards of whole blocks, every item to the next free worker, in order."""
    work: list[float] = []
    for it in items:
        if it["blocks"]:
            n = min(workers, it["blocks"])
            size, extra = divmod(it["blocks"], n)
            work += [(size + (1 if i < extra else 0)) * it["per_block"] for i in range(n)]
        else:
            work.append(it["seconds"])
    free = [0.0] * workers
    heapq.heapify(free)
    for w in work:
        heapq.heappush(free, heapq.heappop(free) + w)
    return max(free)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="256 images, 3 shifts and PGD, quick budget")
    ap.add_argument("--images", type=int, default=None)
    ap.add_argument("--budget", default=None)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--suites", nargs="+", default=None, help="check ids or suites (default: shift attack)")
    ap.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="then local (torch on one thread) and Ray with one worker this many times each, alternately; "
        "the overhead is the ratio of their medians (0: skip)",
    )
    ap.add_argument("--name", default=None, help="results file name (default: ray, ray.quick or ray.subset)")
    ap.add_argument(
        "--no-prepare-too",
        action="store_true",
        help="in the alternating runs, also Ray with one worker without the session's prepare hook (the "
        "worker actors then start after the plan, as before the hook): what the overlap saves",
    )
    ap.add_argument(
        "--one-thread-only",
        action="store_true",
        help="skip the local run on torch's default threads (on a busy host it can take many times longer)",
    )
    args = ap.parse_args()
    images = args.images or (256 if args.quick else 2000)
    budget = args.budget or ("quick" if args.quick else "standard")
    suites = args.suites or (QUICK_SUITES if args.quick else ["shift", "attack"])

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    import roadworthy
    from roadworthy.demo import load_demo_data
    from roadworthy.demo.model import load_demo_model

    demo = load_demo_data(seed=0, n_train=200, n_test=images)
    data = (demo.test.x[:images], demo.test.y[:images])
    model = load_demo_model()
    kw = {"suites": suites, "budget": budget, "seed": args.seed}

    import torch

    load_before = os.getloadavg()
    # warm-up (imports, first calls), then the local backend
    roadworthy.check(model, (data[0][:64], data[1][:64]), suites=suites[:1], budget="quick")
    runs: dict[str, Any] = {}
    per_check: dict[str, dict[str, float]] = {}
    threads = torch.get_num_threads()
    if args.one_thread_only:
        torch.set_num_threads(1)
    start = time.perf_counter()
    local = roadworthy.check(model, data, **kw)
    name = "local-1-thread" if args.one_thread_only else "local"
    runs[name] = {"wall_s": time.perf_counter() - start, "torch_threads": torch.get_num_threads()}
    torch.set_num_threads(threads)
    for c in local.checks:
        per_check.setdefault(c.id, {})[name] = c.duration_s
    print(f"{name}: {runs[name]['wall_s']:.1f} s", flush=True)
    from roadworthy.runner.ray import connect

    connect(None, 120, num_cpus=max(args.workers))  # as `--backend ray` starts one: on 127.0.0.1 only
    one: Any = None
    pairs: dict[str, list[float]] = {"local-1-thread": [], "ray-1": []}
    if args.no_prepare_too:
        pairs["ray-1-no-prepare"] = []
    from roadworthy import runner

    try:
        for w in args.workers:
            start = time.perf_counter()
            remote = roadworthy.check(model, data, backend="ray", workers=w, cpus_per_task=1.0, **kw)
            wall = time.perf_counter() - start
            same = _measured(remote) == _measured(local)
            runs[f"ray-{w}"] = {"wall_s": wall, "identical_metrics": same, "workers": w}
            print(f"ray, {w} worker(s): {wall:.1f} s, metrics identical to local: {same}", flush=True)
            for c in remote.checks:
                per_check.setdefault(c.id, {})[f"ray-{w}"] = c.duration_s
            if w == 1:
                one = remote
        # the one-worker overhead, side by side: on a shared host the load drifts between runs minutes
        # apart, so local (one thread) and Ray (one worker) alternate and their medians are compared;
        # the driver runs torch on one thread in both (its model timing, plan and sanity.latency), so the
        # difference is Ray's alone
        hook = runner.PREPARE["ray"]
        for _ in range(max(0, args.repeats)):
            torch.set_num_threads(1)
            try:
                start = time.perf_counter()
                roadworthy.check(model, data, **kw)
                pairs["local-1-thread"].append(time.perf_counter() - start)
                start = time.perf_counter()
                roadworthy.check(model, data, backend="ray", workers=1, cpus_per_task=1.0, **kw)
                pairs["ray-1"].append(time.perf_counter() - start)
                if args.no_prepare_too:
                    runner.PREPARE.pop("ray")
                    try:
                        start = time.perf_counter()
                        roadworthy.check(model, data, backend="ray", workers=1, cpus_per_task=1.0, **kw)
                        pairs["ray-1-no-prepare"].append(time.perf_counter() - start)
                    finally:
                        runner.PREPARE["ray"] = hook
            finally:
                torch.set_num_threads(threads)
            print("alternating: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in pairs.items()), flush=True)
    finally:
        ray.shutdown()
    if not args.one_thread_only:
        # the local backend again, last, with torch on one thread as a Ray worker runs it: on a busy host
        # a multi-threaded torch can be many times slower, which would flatter Ray
        torch.set_num_threads(1)
        try:
            start = time.perf_counter()
            again = roadworthy.check(model, data, **kw)
        finally:
            torch.set_num_threads(threads)
        runs["local-1-thread"] = {
            "wall_s": time.perf_counter() - start,
            "identical_metrics": _measured(again) == _measured(local),
            "torch_threads": 1,
        }
        for c in again.checks:
            per_check.setdefault(c.id, {})["local-1-thread"] = c.duration_s
        print(f"local, torch on 1 thread: {runs['local-1-thread']['wall_s']:.1f} s", flush=True)

    result: dict[str, Any] = {
        "images": images,
        "budget": budget,
        "suites": suites,
        "seed": args.seed,
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()},
        "runs": runs,
        "checks": len(local.checks),
        "per_check_s": per_check,
    }
    if "ray-1" in runs:
        if "local" in runs:
            result["overhead_1_worker"] = runs["ray-1"]["wall_s"] / runs["local"]["wall_s"]
        result["overhead_1_worker_vs_1_thread"] = runs["ray-1"]["wall_s"] / runs["local-1-thread"]["wall_s"]
    if pairs["ray-1"]:
        med = {k: float(statistics.median(v)) for k, v in pairs.items()}
        result["alternating"] = {
            "runs_s": pairs,
            "median_s": med,
            "overhead": med["ray-1"] / med["local-1-thread"],
            "load_before": load_before,
            "load_after": os.getloadavg(),
        }
        if "ray-1-no-prepare" in med:
            result["alternating"]["overhead_no_prepare"] = med["ray-1-no-prepare"] / med["local-1-thread"]
    if one is not None:
        items, worker_s = _items(one)
        driver_s = max(0.0, runs["ray-1"]["wall_s"] - worker_s)
        result["estimate"] = {
            "driver_s": driver_s,
            "work_s": worker_s,
            "items": items,
            **{f"{w}_workers_s": driver_s + critical_path(items, w) for w in (1, 2, 4, 8, 32)},
        }
    RESULTS.mkdir(exist_ok=True)
    name = args.name or ("ray.quick" if args.quick else ("ray.subset" if args.suites else "ray"))
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=float))
    (RESULTS / f"{name}.md").write_text(table(result))
    print(table(result))


def table(r: dict[str, Any]) -> str:
    lines = [
        f"# Ray backend scaling: {r['images']} demo images, `{r['budget']}` budget, suites {', '.join(r['suites'])}",
        "",
        f"Host: {r['host']['cpus']} CPUs. Local Ray instance with {max(v.get('workers', 1) for v in r['runs'].values())} "
        "declared worker CPUs; 1 CPU per worker.",
        "",
        "Measured on a shared, loaded 2-core machine (other jobs running): compare the rows of one run as "
        "ratios, not with other files. `local` runs torch on its default threads, `local-1-thread` on one, "
        "as each Ray worker does.",
        "",
        "| run | wall (s) | vs local | metrics identical to local |",
        "|---|---:|---:|---|",
    ]
    base = r["runs"].get("local", r["runs"].get("local-1-thread"))["wall_s"]
    for name, v in r["runs"].items():
        same = "-" if name == next(iter(r["runs"])) else ("yes" if v["identical_metrics"] else "**no**")
        lines.append(f"| {name} | {v['wall_s']:.1f} | {v['wall_s'] / base:.2f} | {same} |")
    if "overhead_1_worker_vs_1_thread" in r:
        first = (
            f"Ray with one worker over local: **{r['overhead_1_worker']:.2f}x**; "
            if "overhead_1_worker" in r
            else ""
        )
        lines += [
            "",
            f"{first}Ray with one worker over local with torch on one thread: "
            f"**{r['overhead_1_worker_vs_1_thread']:.2f}x** (target <= 1.15).",
        ]
    if "alternating" in r:
        a = r["alternating"]
        lines += [
            "",
            f"Alternating, {len(a['runs_s']['ray-1'])} times each (same process, Ray already started, the "
            "driver's torch on one thread in both): local "
            f"{', '.join(f'{x:.1f}' for x in a['runs_s']['local-1-thread'])} s, Ray with "
            f"one worker {', '.join(f'{x:.1f}' for x in a['runs_s']['ray-1'])} s; medians "
            f"{a['median_s']['local-1-thread']:.1f} vs {a['median_s']['ray-1']:.1f} s: **{a['overhead']:.2f}x** "
            "(target <= 1.15).",
        ]
        if "overhead_no_prepare" in a:
            lines += [
                "",
                "Without the session's prepare hook (worker actors started after the plan): "
                f"{', '.join(f'{x:.1f}' for x in a['runs_s']['ray-1-no-prepare'])} s, median "
                f"{a['median_s']['ray-1-no-prepare']:.1f} s: {a['overhead_no_prepare']:.2f}x.",
            ]
        if "load_before" in a:
            lines += [
                "",
                "Load average (1, 5, 15 min) at the start: "
                f"{', '.join(f'{x:.1f}' for x in a['load_before'])}; at the end: "
                f"{', '.join(f'{x:.1f}' for x in a['load_after'])} (2 cores).",
            ]
    if "estimate" in r:
        e = r["estimate"]
        lines += [
            "",
            "## Critical-path estimate (not measured)",
            "",
            f"From the one-worker run: {e['work_s']:.1f} s of work in the worker, {e['driver_s']:.1f} s in the driver "
            "(the session's model timing and plan, the workers' start, latency, merges, aggregators). Sharded "
            "checks are cut into at most one shard per worker (whole blocks), every item goes to the next free "
            "worker; a sequential attack's blocks run one after another; one CPU per worker, no contention.",
            "",
            "| workers | estimated wall (s) |",
            "|---:|---:|",
        ]
        for w in (1, 2, 4, 8, 32):
            lines.append(f"| {w} | {e[f'{w}_workers_s']:.1f} |")
    lines += [
        "",
        "## Seconds per check",
        "",
        "| check | " + " | ".join(r["runs"]) + " |",
        "|---|" + "---:|" * len(r["runs"]),
    ]
    for cid, row in r["per_check_s"].items():
        lines.append(
            f"| {cid} | " + " | ".join(f"{row[k]:.1f}" if k in row else "-" for k in r["runs"]) + " |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
