"""Fuzzing throughput: mutants per second through a 32-px CNN, and where the time goes.

Run by hand from the repository root::

    .venv/bin/python -m benchmarks.bench_fuzz [--queries 3000] [--threads 2]       # throughput
    .venv/bin/python -m benchmarks.bench_fuzz --compare [--budget standard] [--seeds 3]  # guided vs random
    .venv/bin/python -m benchmarks.bench_fuzz --summaries-ab [--repeats 40]  # summaries before/after
    .venv/bin/python -m benchmarks.bench_fuzz --memory  # peak RSS of the loop at 224 px
    .venv/bin/python -m benchmarks.bench_fuzz --micro-ab [--repeats 60]  # probe in micro-batches vs full

Two models: the demo road-sign CNN (``signnet``, five 3x3 conv stages of 32-128 channels, ~30 MMAC per
image) and a small 32-px CNN (two conv layers of 16 and 32 channels and a hidden linear layer). Seeds
are 100 demo road signs; KMNC/NBC/SNAC bounds are profiled on 2,000 more. Each configuration runs the
DeepHunter loop (``prob`` selection, 8 entries x 20 mutants per forward pass) for ``--queries`` model
queries and reports:

* mutants per second over the loop (mutation, forward pass, coverage bookkeeping, queue);
* the split: forward pass, coverage bookkeeping (layer summaries in the hooks, cells, bitmaps), mutation;
* the coverage share: coverage bookkeeping / forward pass (target: under 20%).

Configurations: guided by KMNC with all five criteria measured (NC needs each layer's per-sample
minimum and maximum: two more reductions over every monitored tensor, skipped by the probe's NC gate
where NC cannot use them), and KMNC alone. Then the
coverage split measured fairly (:func:`coverage_split`): the bare forward pass and the bookkeeping timed
in the same process, interleaved, ``--repeats`` times, with ``--threads`` and with 1 torch thread (the
ratio least sensitive to other load). Writes ``benchmarks/results/fuzz.json`` and
``benchmarks/results/fuzz.md``.

``--micro-ab``: the probed forward pass of the small CNN in cache-sized micro-batches (each hook
summarising a map still in the cache) against the full batch, at 1 thread and ``--threads``
(:func:`micro_ab`; ``benchmarks/results/fuzz_micro.md`` / ``.json``). Measured, it wins at no size:
the fixed cost of each extra probed pass outweighs what the cache saves; the loop keeps the full batch.

``--compare``: coverage-guided fuzzing against random testing at equal model queries, through the
public API exactly as a user runs it (``roadworthy.check(..., suites=["fuzz"])``: the ``fuzz.deephunter``
check, its validity gate fitted on the training data, random testing with the same query budget
beside it) on the demo road-sign model (demo data) and on a digits CNN trained in the run
(scikit-learn digits, 16x16 grey, 1,200 training / 597 evaluation images), over ``--seeds`` seeds.
Per run: KMNC and NBC reached, valid failures and unique valid failures (deduplicated by seed and class
pair), for both; and the check's wall time. Beside it, per seed, an ablation through the library
(:func:`ablation`): guided vs DeepHunter's random mode vs random testing with the guided run's
selection, to show which part of the guidance does the work. Writes
``benchmarks/results/fuzz_compare.json`` and ``.md``; the demo rows at the ``standard`` budget are also
the "standard run within 3 minutes" timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def small_cnn():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 64),
        nn.ReLU(),
        nn.Linear(64, 12),
    ).eval()


def digits_cnn():
    """A 16x16 grey digits CNN (8 and 16 conv channels, 32 hidden units), trained here in seconds.

    Returns the model and the ``(x, y)`` training and evaluation splits (float32 NCHW in [0, 1]).
    """
    import numpy as np
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from torch import nn

    from roadworthy.models.torch import TorchModel

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).clamp(0, 1).numpy()
    y = d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    tr, te = order[:1200], order[1200:]
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x[tr]), torch.from_numpy(y[tr])
    g = torch.Generator().manual_seed(0)
    net.train()
    for _ in range(15):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            b = perm[i : i + 64]
            opt.zero_grad()
            F.cross_entropy(net(xt[b]), yt[b]).backward()
            opt.step()
    net.eval()
    model = TorchModel(net, input_shape=(1, 16, 16))
    return model, (x[tr], y[tr]), (x[te], y[te])


def coverage_split(
    model,
    seeds,
    train,
    criteria,
    threads: int,
    repeats: int,
    batch: int = 160,
    gate: bool = True,
    summaries: str = "numpy",
) -> dict:
    """Coverage bookkeeping against the bare forward pass, timed in one process, interleaved.

    Each repeat times, on the same batch of ``batch`` mutants (a fresh batch every repeat, drawn by
    DeepHunter's mutation from the seeds): the model's forward pass with the probe's hooks switched off
    (``probe.active = False``), and the bookkeeping of a hooked pass -- the layer summaries computed in
    the hooks (``probe.reduce_seconds``) plus the loop's :class:`~roadworthy.coverage.CoverageBook`
    (the guide, the first criterion, updated per batch and asked which mutant was first to a cell; the
    measured criteria marked in bulk every ~1 MiB of neuron values), as the fuzz loop does. The order
    of the two alternates between repeats. Medians per batch (robust to other load); the bulk marking,
    timed apart, is spread over the batches it served (its total / repeats) and added:
    ``ratio = (median summaries + guide + bulk per batch) / median forward``. ``median_ratio`` is the
    median of the per-repeat ratios plus the same bulk share; ``ratio_of_totals`` sums everything (the
    most sensitive to load changes during the run). ``gate`` lets the probe skip the layer minima NC
    cannot use, as the loop does (``gate=False``: every minimum read, for comparison). ``summaries``
    picks the probe's summary path (``TorchProbe.summaries``: "numpy" as the loop runs, or "torch" to
    compare them at the same thread count).

    Two checks of the bookkeeping figure, timed in the same repeats (a third pass, order alternating):
    ``probed_extra_ms``, the hooked pass's wall time minus the bare forward pass of the same repeat
    (median of the paired differences: what the hooks cost, timed from outside, overheads included),
    and ``read_once_ms`` / ``read_once_ratio``, the same with
    hooks that only *read* each monitored tensor once (one maximum over its memory, on the summary
    path's threads) and compute nothing: the least any coverage bookkeeping that looks at every
    monitored value must cost on this model and machine, before any cell or bitmap work.
    """
    import statistics
    import time

    import numpy as np
    import torch

    from roadworthy.coverage import CoverageBook, make_probe, profile
    from roadworthy.coverage._layers import _memory_view
    from roadworthy.coverage.criteria import Coverage, make_criterion
    from roadworthy.coverage.mutations import mutate

    torch.set_num_threads(threads)
    probe = make_probe(model, seeds[:1], extrema="nc" in criteria)
    probe.summaries = summaries
    prof = profile(probe, train)
    trackers = {c: Coverage(make_criterion(c).fit(probe.layout, prof)) for c in criteria}
    # the loop's book; its bulk marking is timed apart here (same policy: every ~1 MiB of values)
    buffer_bytes = CoverageBook(trackers, criteria[0]).buffer_bytes
    book = CoverageBook(trackers, criteria[0], buffer_bytes=2**62)
    gated = probe.gate_extrema(book.extrema_gate()) if gate else False
    rng = np.random.default_rng(0)
    n_batches = 16
    pool = []
    for _ in range(n_batches):
        pick = rng.integers(0, len(seeds), batch)
        x = seeds[pick]
        m = mutate(x, x, np.zeros(batch, bool), np.zeros(batch, np.int64), np.zeros(batch), rng)
        pool.append(np.ascontiguousarray(m.x))
    fwd, book_s, reduce, cells, ratios, bulk, probed, floor = [], [], [], [], [], [], [], []
    summarise = probe._reduce

    def read_once(out, gate=None):
        # the least any summary must do: read each monitored tensor once (one reduction over its memory)
        if summaries == "torch" or out.device.type != "cpu":
            out.float().amax()  # on torch's threads, as that summary path reads
        else:
            _memory_view(out.float())[0].max()  # on the calling thread, as the NumPy path reads
        n = out.shape[0]
        return np.zeros((n, out.shape[1]), np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32)

    try:
        for r in range(repeats):
            x = pool[r % n_batches]
            for step in (0, 1, 2) if r % 2 == 0 else (2, 1, 0):
                if step == 2:
                    probe._reduce = read_once
                    t = time.perf_counter()
                    probe(x)
                    floor.append(time.perf_counter() - t)
                    probe._reduce = summarise
                elif step == 0:
                    probe.active = False
                    t = time.perf_counter()
                    with torch.inference_mode():
                        probe._forward(torch.from_numpy(x))
                    fwd.append(time.perf_counter() - t)
                    probe.active = True
                else:
                    r0 = probe.reduce_seconds
                    t = time.perf_counter()
                    obs = probe(x)
                    probed.append(time.perf_counter() - t)
                    red = probe.reduce_seconds - r0
                    t = time.perf_counter()
                    book.observe(obs)
                    cel = time.perf_counter() - t
                    reduce.append(red)
                    cells.append(cel)
                    book_s.append(red + cel)
                    if book._held_bytes >= buffer_bytes or r == repeats - 1:
                        t = time.perf_counter()
                        book.flush()
                        bulk.append(time.perf_counter() - t)
            ratios.append(book_s[-1] / fwd[-1])
    finally:
        probe.close()
    med = statistics.median
    bulk_per_batch = sum(bulk) / repeats  # the measured criteria's bulk marking, spread over the batches
    bookkeeping = med(book_s) + bulk_per_batch
    return {
        "threads": threads,
        "summaries": summaries,  # the probe's summary path for conv layers (TorchProbe.summaries)
        "nc_gate": gated,
        "batch": batch,
        "repeats": repeats,
        "forward_ms": round(med(fwd) * 1e3, 2),
        "summaries_ms": round(med(reduce) * 1e3, 2),
        "probed_ms": round(med(probed) * 1e3, 2),
        # paired: each repeat's hooked (or read-once) pass minus the same repeat's bare forward pass
        "probed_extra_ms": round(med([p - f for p, f in zip(probed, fwd, strict=True)]) * 1e3, 2),
        "read_once_ms": round(med([r - f for r, f in zip(floor, fwd, strict=True)]) * 1e3, 2),
        "read_once_ratio": round(med([(r - f) / f for r, f in zip(floor, fwd, strict=True)]), 3),
        "guide_ms": round(med(cells) * 1e3, 2),
        "bulk_ms_per_batch": round(bulk_per_batch * 1e3, 2),
        "bulk_markings": len(bulk),
        "bookkeeping_ms": round(bookkeeping * 1e3, 2),
        "ratio": round(bookkeeping / med(fwd), 3),
        "median_ratio": round(med(ratios) + bulk_per_batch / med(fwd), 3),
        "ratio_of_totals": round((sum(book_s) + sum(bulk)) / sum(fwd), 3),
        # the same with the hooks timed from outside (hook dispatch included): the stricter figure
        "ratio_outside": round(
            (med([p - f for p, f in zip(probed, fwd, strict=True)]) + med(cells) + bulk_per_batch) / med(fwd),
            3,
        ),
    }


def monitored_bytes_per_sample(probe, example) -> int:
    """Bytes of one sample's monitored layer outputs (the maps the probe's hooks summarise)."""
    sizes = []
    reduce = probe._reduce

    def spy(out, gate=None):
        sizes.append(out[0].numel() * out.element_size())
        return reduce(out, gate)

    probe._reduce = spy
    try:
        probe(example[:1])
    finally:
        del probe._reduce  # back to the class's method
    return int(sum(sizes))


def micro_observe(probe, x, micro: int):
    """The probe over ``x`` in micro-batches of ``micro`` samples, merged into one observation (as the fuzz
    loop merges its forward batches): each hook summarises a micro-batch's map right after the forward
    pass wrote it, while it is still in the cache."""
    import numpy as np

    from roadworthy.coverage import Observation

    if micro >= len(x):
        return probe(x)
    parts = [probe(x[i : i + micro]) for i in range(0, len(x), micro)]
    merged = [
        np.concatenate([getattr(p, f) for p in parts]) for f in ("probs", "values", "layer_min", "layer_max")
    ]
    return Observation(*merged)


def micro_ab(model, seeds, train, threads: int, repeats: int, budgets_mib, batch: int = 160) -> list[dict]:
    """Cache-resident summaries by micro-batching the probed forward pass, against the full batch.

    The fuzz loop's probe (all five criteria, NC gate on, KMNC guiding) runs each batch of ``batch``
    mutants in micro-batches sized so one micro-batch's monitored maps take about ``budget`` MiB (from the
    layer shapes: at least one sample; ``0`` = the whole batch, as the loop runs now). Per repeat, order
    alternating, on the same fresh batch of mutants: the bare forward pass at the full batch (hooks off),
    the bare forward pass in each budget's micro-batches, and the probed pass in each budget's
    micro-batches followed by the guide's update (``CoverageBook.observe``). The measured criteria's bulk
    marking is the same for every row (same observations) and left out.

    ``ratio`` = (probed + guide - bare forward at the full batch) / bare forward at the full batch: the
    bookkeeping with any change of the forward pass's speed from micro-batching counted in it (a slower
    forward counts as bookkeeping cost; a faster one would lower it, see ``ratio_same_batch``).
    ``ratio_same_batch`` = (probed + guide - bare forward in the same micro-batches) / that forward: the
    bookkeeping alone. ``bit_equal``: the micro-batched observation equals the full batch's bit for bit
    (``max_abs_diff`` of the neuron values otherwise).
    """
    import statistics
    import time

    import numpy as np
    import torch

    from roadworthy.coverage import CoverageBook, make_probe, profile
    from roadworthy.coverage.criteria import NEURON_CRITERIA, Coverage, make_criterion
    from roadworthy.coverage.mutations import mutate

    torch.set_num_threads(threads)
    probe = make_probe(model, seeds[:1])
    per_sample = monitored_bytes_per_sample(probe, seeds)
    prof = profile(probe, train)
    criteria = list(NEURON_CRITERIA)
    trackers = {c: Coverage(make_criterion(c).fit(probe.layout, prof)) for c in criteria}
    buffer_bytes = CoverageBook(trackers, criteria[0]).buffer_bytes
    book = CoverageBook(trackers, criteria[0], buffer_bytes=2**62)
    probe.gate_extrema(book.extrema_gate())
    rng = np.random.default_rng(0)
    pool = []
    for _ in range(16):
        pick = rng.integers(0, len(seeds), batch)
        x = seeds[pick]
        m = mutate(x, x, np.zeros(batch, bool), np.zeros(batch, np.int64), np.zeros(batch), rng)
        pool.append(np.ascontiguousarray(m.x))
    micro = {b: batch if not b else max(1, int(b * 2**20) // per_sample) for b in budgets_mib}
    # bit-equality against the full batch (before the timing, gate off: every extremum compared)
    probe.gate_extrema(None)
    full = probe(pool[0])
    same = {}
    for b, m in micro.items():
        obs = micro_observe(probe, pool[0], m)
        diff = float(np.abs(obs.values - full.values).max())
        equal = all(
            np.array_equal(getattr(obs, f), getattr(full, f))
            for f in ("probs", "values", "layer_min", "layer_max")
        )
        same[b] = (equal, diff)
    probe.gate_extrema(book.extrema_gate())

    def bare(x, m):
        probe.active = False
        try:
            with torch.inference_mode():
                for i in range(0, len(x), m):
                    probe._forward(torch.from_numpy(x[i : i + m]))
        finally:
            probe.active = True

    configs = [("bare", m) for m in sorted(set(micro.values()), reverse=True)] + [
        ("probed", b) for b in micro
    ]
    times: dict[tuple, list[float]] = {c: [] for c in configs}
    reduce: dict[float, list[float]] = {b: [] for b in micro}
    guide: dict[float, list[float]] = {b: [] for b in micro}
    try:
        for r in range(repeats):
            x = pool[r % len(pool)]
            for kind, key in configs if r % 2 == 0 else configs[::-1]:
                if kind == "bare":
                    t = time.perf_counter()
                    bare(x, key)
                    times[(kind, key)].append(time.perf_counter() - t)
                    continue
                r0 = probe.reduce_seconds
                t = time.perf_counter()
                obs = micro_observe(probe, x, micro[key])
                times[(kind, key)].append(time.perf_counter() - t)
                reduce[key].append(probe.reduce_seconds - r0)
                t = time.perf_counter()
                book.observe(obs)
                guide[key].append(time.perf_counter() - t)
                if book._held_bytes >= buffer_bytes:
                    book.flush()  # the measured criteria's bulk marking: the same for every row, not timed
    finally:
        probe.close()
    med = {c: statistics.median(v) for c, v in times.items()}
    fwd_full = med[("bare", batch)]
    rows = []
    for b, m in micro.items():
        fwd_m = med[("bare", m)]
        probed = med[("probed", b)]
        g = statistics.median(guide[b])
        rows.append(
            {
                "threads": threads,
                "budget_mib": b,
                "micro_batch": m,
                "micro_batches": -(-batch // m),
                "forward_full_ms": round(fwd_full * 1e3, 2),
                "forward_micro_ms": round(fwd_m * 1e3, 2),
                "probed_ms": round(probed * 1e3, 2),
                "summaries_ms": round(statistics.median(reduce[b]) * 1e3, 2),
                "guide_ms": round(g * 1e3, 2),
                "bookkeeping_ms": round((probed + g - fwd_full) * 1e3, 2),
                "ratio": round((probed + g - fwd_full) / fwd_full, 3),
                "ratio_same_batch": round((probed + g - fwd_m) / fwd_m, 3),
                "bit_equal": same[b][0],
                "max_abs_diff": same[b][1],
                "load_average": [round(v, 1) for v in os.getloadavg()],
            }
        )
    return rows


def _summaries_before(out, gate=None):
    """The layer summaries as they were before issue 14's rework (for :func:`summaries_ab` only): NumPy
    reductions along the logical axes of the tensor's view, which for a channels-last map read strided
    memory (the mean) or copy it first (the extrema)."""
    import numpy as np

    n = out.shape[0]
    a = out.float().numpy()
    flat = a.reshape(n, -1)
    if a.ndim > 2:
        values = a.reshape(n, a.shape[1], -1).mean(axis=2, dtype=np.float32)
    else:
        values = flat.astype(np.float32, copy=True)
    return values, flat.min(axis=1), flat.max(axis=1)


def summaries_ab(models: dict, seeds, repeats: int) -> list[dict]:
    """Layer summaries before and after the rework, in one process on the same batches, 1 torch thread:
    per repeat the bare forward pass and a hooked pass with each implementation (order alternating)."""
    import statistics
    import time

    import numpy as np
    import torch

    from roadworthy.coverage import make_probe
    from roadworthy.coverage.mutations import mutate

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    pool = []
    for _ in range(8):
        x = seeds[rng.integers(0, len(seeds), 160)]
        m = mutate(x, x, np.zeros(160, bool), np.zeros(160, np.int64), np.zeros(160), rng)
        pool.append(np.ascontiguousarray(m.x))
    rows = []
    for name, model in models.items():
        probe = make_probe(model, seeds[:1])
        after = probe._reduce
        times: dict[str, list[float]] = {"before": [], "after": [], "forward": []}
        try:
            for r in range(repeats):
                x = pool[r % len(pool)]
                probe.active = False
                t = time.perf_counter()
                with torch.inference_mode():
                    probe._forward(torch.from_numpy(x))
                times["forward"].append(time.perf_counter() - t)
                probe.active = True
                pair = (("before", _summaries_before), ("after", after))
                for key, fn in pair if r % 2 else pair[::-1]:
                    probe._reduce = fn
                    r0 = probe.reduce_seconds
                    probe(x)
                    times[key].append(probe.reduce_seconds - r0)
        finally:
            probe.close()
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        rows.append(
            {
                "model": name,
                "forward_ms": round(med["forward"], 2),
                "summaries_before_ms": round(med["before"], 2),
                "summaries_after_ms": round(med["after"], 2),
                "before_over_after": round(med["before"] / med["after"], 2),
                "load_average": [round(v, 1) for v in os.getloadavg()],
            }
        )
    return rows


def _memory_run(queries: int, mode: str, batch: int) -> dict:
    """One fuzz run on a cheap 224-px CNN in this process; the peak RSS growth during the run (Linux)."""
    import time

    import numpy as np
    import torch
    from torch import nn

    from roadworthy.coverage import fuzz, make_probe, profile, random_testing
    from roadworthy.memory import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    # ResNet-18's first map size (64 channels at 112 px), then pooled away: the memory of a 224-px
    # network's activations at a fraction of its compute
    net = nn.Sequential(
        nn.Conv2d(3, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=4, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    ).eval()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:224, 0:224] / 224

    def images(n: int) -> np.ndarray:
        c = rng.random((n, 3, 1, 1))
        cy, cx = rng.random((2, n, 1, 1, 1))
        blob = c * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) * 6)
        return np.clip(blob + 0.05 * rng.random((n, 3, 224, 224)), 0, 1).astype(np.float32)

    x, train = images(200), images(200)
    probe = make_probe(net, x[:1])
    prof = profile(probe, train, batch_size=batch)

    def status(field: str) -> float:
        with open("/proc/self/status", encoding="ascii") as fh:
            return next(int(line.split()[1]) / 1024 for line in fh if line.startswith(field))

    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")  # reset VmHWM: the peak of the run alone
    t = time.perf_counter()
    run = fuzz if mode == "coverage" else random_testing
    r = run(net, x, None, probe=probe, train=prof, max_queries=queries, batch_size=batch, seed=0)
    probe.close()
    return {
        "mode": mode,
        "queries": queries,
        "batch_size": batch,
        "queue_entries": r.queue_size,
        "rss_before_mib": round(before),
        "peak_rss_mib": round(status("VmHWM")),
        "growth_mib": round(status("VmHWM") - before),
        "queue_images_peak_mib": round(r.queue_images["peak_bytes"] / 2**20),
        "queue_images_rebuilt": r.queue_images["rebuilt"],
        "seconds": round(time.perf_counter() - t, 1),
    }


def memory(args: argparse.Namespace) -> None:
    """Peak memory of the fuzz loop at 224 px, one fresh process per run (the peak is per process)."""
    import subprocess
    import sys

    rows = []
    for queries in (500, 2000):
        for mode in ("coverage", "random"):
            code = (
                "import json, benchmarks.bench_fuzz as b; "
                f"print(json.dumps(b._memory_run({queries}, {mode!r}, {args.memory_batch})))"
            )
            out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]))
    meta = {"cpu_count": os.cpu_count(), "load_average_end": os.getloadavg()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fuzz_memory.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    head = list(rows[0])
    (RESULTS / "fuzz_memory.md").write_text(
        "\n".join(
            [
                "# Fuzzing memory at 224 px",
                "",
                "The library's fuzz loop (200 seeds of 224x224 RGB, 8 entries x 20 mutants per iteration, "
                f"forward passes of at most {args.memory_batch} inputs) on a cheap CNN whose first map is "
                "ResNet-18's (64 channels at 112 px). One fresh process per row; `growth_mib` is the peak "
                "RSS during the run minus the RSS before it (model, seeds and profile loaded). The queue's "
                "images are held up to 256 MiB (`max_queue_bytes`), the rest rebuilt from seed and steps "
                "when selected (`queue_images_rebuilt`). Load average at the end "
                f"{', '.join(f'{v:.1f}' for v in meta['load_average_end'])} on {meta['cpu_count']} cores "
                "(memory does not depend on load; the seconds do).",
                "",
                "| " + " | ".join(head) + " |",
                "|" + "---|" * len(head),
                *("| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows),
                "",
            ]
        )
    )


COMPARE_KEYS = (
    ("kmnc", "{p}.kmnc.coverage"),
    ("nbc", "{p}.nbc.coverage"),
    ("valid_failures", "{p}.valid_failures"),
    ("unique_valid_failures", "{p}.unique_failures"),
    ("invalid_failures", "{p}.invalid_failures"),
    ("mutants", "{p}.mutants"),
)


ABLATION_ARMS = (
    ("guided", {"strategy": "prob"}, "coverage"),
    ("random, uniform selection", {"strategy": "uniform"}, "random"),
    ("random, prob selection", {"strategy": "prob"}, "random"),
)


def ablation(model, data, train, seed: int, n_seeds: int = 200, n_profile: int = 2000, queries: int = 5000):
    """Which part of the guidance does the work: the library's loop with the check's standard settings,
    three arms on the same seeds, bounds and budget -- coverage-guided (``prob`` selection, only mutants
    with new KMNC cells kept), DeepHunter's random mode (uniform selection, every mutant kept) and
    random testing with the guided run's ``prob`` selection (every mutant kept: the coverage feedback
    alone). No validity gate here, so every failure counts."""
    import numpy as np

    from roadworthy.coverage import fuzz, make_probe, profile, random_testing
    from roadworthy.data.base import stratified_sample

    x_all, y_all = (data.x, data.y) if hasattr(data, "x") else data
    tx, ty = (train.x, train.y) if hasattr(train, "x") else train
    rng = np.random.default_rng(seed)
    idx = stratified_sample(np.asarray(y_all), n_seeds, rng)
    x, y = np.asarray(x_all[idx], np.float32), np.asarray(y_all[idx]).astype(np.int64)
    rows = stratified_sample(np.asarray(ty), n_profile, rng)
    probe = make_probe(model, x[:1])
    try:
        bounds = profile(probe, np.asarray(tx[rows], np.float32))
        out = {}
        for name, params, mode in ABLATION_ARMS:
            fn = fuzz if mode == "coverage" else random_testing
            r = fn(model, x, y, probe=probe, train=bounds, max_queries=queries, seed=seed, **params)
            out[name] = {
                "kmnc": r.coverage_after["kmnc"].metric,
                "nbc": r.coverage_after["nbc"].metric,
                "failures": len(r.failures),
                "unique_failures": len({(f.seed_index, f.true_class, f.predicted_class) for f in r.failures}),
                "seeds_attacked": r.seeds_attacked,
                "queue": r.queue_size,
                "new_share": sum(v["new"] for v in r.operators.values()) / max(1, r.n_mutants),
            }
        return out
    finally:
        probe.close()


def compare(args: argparse.Namespace) -> None:
    """Coverage-guided vs random testing at equal model queries, through ``roadworthy.check``."""
    import statistics
    import time

    import numpy as np
    import torch

    import roadworthy
    from roadworthy.demo import load_demo_data
    from roadworthy.demo.model import load_demo_model

    torch.set_num_threads(args.threads)
    demo = load_demo_data(seed=0)
    digits, digits_train, digits_test = digits_cnn()
    acc = float((np.asarray(digits.predict(digits_test[0])).argmax(1) == digits_test[1]).mean())
    setups = {
        "signnet (demo)": (load_demo_model(), demo.test, demo.train),
        "digits CNN": (digits, digits_test, digits_train),
    }
    rows, ablations = [], []
    for name, (model, data, train) in setups.items():
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            report = roadworthy.check(model, data, train, suites=["fuzz"], budget=args.budget, seed=seed)
            wall = time.perf_counter() - t0
            m = report.metrics
            (result,) = [c for c in report.checks if c.id == "fuzz.deephunter"]
            row: dict = {"model": name, "seed": seed}
            for key, pattern in COMPARE_KEYS:
                row[f"guided_{key}"] = m.get(pattern.format(p="fuzz"))
                row[f"random_{key}"] = m.get(pattern.format(p="fuzz.random"))
            row["check_s"] = round(result.duration_s, 1)
            row["api_s"] = round(wall, 1)
            row["status"] = result.status
            row["load_average"] = [round(v, 1) for v in os.getloadavg()]
            rows.append(row)
            print(json.dumps(row))
            arms = ablation(model, data, train, seed)
            ablations.append({"model": name, "seed": seed, "arms": arms})
            print(json.dumps(ablations[-1]))

    def spread(values: list, digits: int = 1) -> str:
        v = [float(x) for x in values if x is not None]
        if not v:
            return "-"
        fmt = f"{{:.{digits}f}}"
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        return f"{fmt.format(statistics.mean(v))} +- {fmt.format(sd)} ({', '.join(fmt.format(x) for x in v)})"

    meta = {
        "budget": args.budget,
        "seeds": args.seeds,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "load_average_end": os.getloadavg(),
        "digits_accuracy": acc,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fuzz_compare.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "ablation": ablations}, indent=2) + "\n"
    )
    lines = [
        "# Coverage-guided fuzzing vs random testing (equal model queries)",
        "",
        f'`roadworthy.check(..., suites=["fuzz"], budget="{args.budget}")`, seeds 0-{args.seeds - 1}, '
        f"{args.threads} torch threads, {meta['cpu_count']} cores, load average at the end "
        f"{', '.join(f'{v:.1f}' for v in meta['load_average_end'])} (per run in the JSON). The check fits its "
        "validity gate on the training data; random testing gets the same query budget, seeds and bounds. "
        f"Digits CNN: 16x16 grey, trained in the run, evaluation accuracy {acc:.3f}.",
        "",
        "Mean +- standard deviation over the seeds (the values per seed in brackets).",
        "",
        "| model | measure | coverage-guided | random testing |",
        "|---|---|---|---|",
    ]
    for name in setups:
        mine = [r for r in rows if r["model"] == name]
        for key, _ in COMPARE_KEYS:
            d = 4 if key in ("kmnc", "nbc") else 1
            lines.append(
                f"| {name} | {key} | {spread([r[f'guided_{key}'] for r in mine], d)} | "
                f"{spread([r[f'random_{key}'] for r in mine], d)} |"
            )
        lines.append(
            f"| {name} | check wall time, s (both runs) | {spread([r['check_s'] for r in mine])} | |"
        )
    lines += [
        "",
        "## Which part of the guidance does the work (library loop, no validity gate)",
        "",
        "The check's standard settings (200 seeds, 2,000 profiled training images, 5,000 queries, 8 entries x "
        "20 mutants per pass, KMNC k=1000 guiding) in three arms on the same seeds, bounds and budget: "
        "coverage-guided (`prob` selection, only mutants with new KMNC cells queued); DeepHunter's random "
        "mode (uniform selection, every non-failing mutant queued: the check's baseline); random testing with "
        "the guided run's `prob` selection (every mutant queued: the coverage feedback alone). Every failure "
        "counts (no gate). `new_share`: mutants that touched a new KMNC cell / mutants.",
        "",
        "| model | measure | " + " | ".join(a for a, _, _ in ABLATION_ARMS) + " |",
        "|---|---|" + "---|" * len(ABLATION_ARMS),
    ]
    for name in setups:
        mine = [r["arms"] for r in ablations if r["model"] == name]
        for key in ("kmnc", "nbc", "failures", "unique_failures", "seeds_attacked", "queue", "new_share"):
            d = 4 if key in ("kmnc", "nbc") else 3 if key == "new_share" else 1
            cells = [spread([m[arm][key] for m in mine], d) for arm, _, _ in ABLATION_ARMS]
            lines.append(f"| {name} | {key} | " + " | ".join(cells) + " |")
    lines.append("")
    (RESULTS / "fuzz_compare.md").write_text("\n".join(lines))


def micro(args: argparse.Namespace) -> None:
    """``--micro-ab``: :func:`micro_ab` on the small 32-px CNN at 1 torch thread and at ``--threads``."""
    from roadworthy.demo.signs import make_signs
    from roadworthy.models.torch import TorchModel

    seeds, _ = make_signs(100, seed=1)
    train, _ = make_signs(2000, seed=0)
    model = TorchModel(small_cnn(), input_shape=(3, 32, 32))
    budgets = [float(v) for v in args.micro_mib.split(",")]
    rows = []
    for threads in sorted({1, args.threads}):
        for row in micro_ab(model, seeds, train, threads, args.repeats, budgets):
            rows.append(row)
            print(json.dumps(row))
    meta = {"repeats": args.repeats, "cpu_count": os.cpu_count(), "load_average_end": os.getloadavg()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fuzz_micro.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    head = list(rows[0])
    (RESULTS / "fuzz_micro.md").write_text(
        "\n".join(
            [
                "# Micro-batched probe: cache-resident layer summaries vs the full batch (small 32-px CNN)",
                "",
                "All five criteria, NC gate on, KMNC guiding, batches of 160 DeepHunter mutants. Each row "
                "runs the probed forward pass in micro-batches whose monitored maps take about `budget_mib` "
                "MiB (0: the whole batch, as the fuzz loop runs), so each hook summarises a map still in the "
                "cache. Per repeat, order alternating, on the same batch: the bare forward pass at the full "
                "batch and in every row's micro-batches (hooks off), and the probed micro-batched pass plus "
                "the guide's update. `ratio` = (probed + guide - bare forward at the full batch) / bare "
                "forward at the full batch (any slowdown of the forward pass from micro-batching counted as "
                "bookkeeping); `ratio_same_batch` against the bare forward in the same micro-batches. The "
                "measured criteria's bulk marking (~0.3 ms per batch, `fuzz.md`) is the same for every row "
                "and left out. `bit_equal`: the micro-batched observation equals the full batch's bit for "
                f"bit (oneDNN picks its convolution by batch size). {args.repeats} repeats, medians; load "
                f"average at the end {', '.join(f'{v:.1f}' for v in meta['load_average_end'])} on "
                f"{meta['cpu_count']} cores (shared machine).",
                "",
                "| " + " | ".join(head) + " |",
                "|" + "---|" * len(head),
                *("| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows),
                "",
            ]
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=40, help="repeats of the coverage split")
    parser.add_argument(
        "--summaries-ab", action="store_true", help="layer summaries before vs after the rework"
    )
    parser.add_argument("--compare", action="store_true", help="coverage-guided vs random testing")
    parser.add_argument(
        "--micro-ab",
        action="store_true",
        help="probed forward in cache-sized micro-batches vs the full batch",
    )
    parser.add_argument(
        "--micro-mib",
        default="0,1,2,4,8",
        help="--micro-ab: monitored MiB per micro-batch (0: the full batch)",
    )
    parser.add_argument("--memory", action="store_true", help="peak memory of the loop at 224 px")
    parser.add_argument("--memory-batch", type=int, default=32, help="--memory: inputs per forward pass")
    parser.add_argument("--budget", default="standard", help="--compare: the check's budget")
    parser.add_argument("--seeds", type=int, default=3, help="--compare: seeds 0..N-1")
    args = parser.parse_args()
    if args.compare:
        compare(args)
        return
    if args.memory:
        memory(args)
        return
    if args.micro_ab:
        micro(args)
        return
    if args.summaries_ab:
        from roadworthy.demo.model import load_demo_model
        from roadworthy.demo.signs import make_signs
        from roadworthy.models.torch import TorchModel

        seeds, _ = make_signs(100, seed=1)
        models = {"signnet": load_demo_model(), "small_cnn": TorchModel(small_cnn(), input_shape=(3, 32, 32))}
        ab = summaries_ab(models, seeds, args.repeats)
        for row in ab:
            print(json.dumps(row))
        RESULTS.mkdir(exist_ok=True)
        head = list(ab[0])
        (RESULTS / "fuzz_summaries_ab.md").write_text(
            "\n".join(
                [
                    "# Layer summaries before and after the rework (same process, same batches)",
                    "",
                    f"1 torch thread, {args.repeats} repeats of a batch of 160 mutants, medians; `before` is the "
                    "NumPy reduction along the view's logical axes (strided reads / a copy for channels-last "
                    "maps), `after` the memory-order, chunked reduction now in `TorchProbe`. The machine was "
                    "shared (load average in the table).",
                    "",
                    "| " + " | ".join(head) + " |",
                    "|" + "---|" * len(head),
                    *("| " + " | ".join(str(r[k]) for k in head) + " |" for r in ab),
                    "",
                ]
            )
        )
        return

    import torch

    from roadworthy.coverage import fuzz, make_probe, profile
    from roadworthy.coverage.criteria import NEURON_CRITERIA
    from roadworthy.demo.model import load_demo_model
    from roadworthy.demo.signs import make_signs
    from roadworthy.models.torch import TorchModel

    torch.set_num_threads(args.threads)
    seeds, labels = make_signs(100, seed=1)
    train, _ = make_signs(2000, seed=0)
    models = {
        "signnet": load_demo_model(),
        "small_cnn": TorchModel(small_cnn(), input_shape=(3, 32, 32)),
    }
    rows = []
    for name, model in models.items():
        y = labels if name == "signnet" else None  # the untrained small CNN's own predictions are its labels
        for criteria in (None, ["kmnc"]):
            probe = make_probe(model, seeds[:1], extrema=criteria is None)
            prof = profile(probe, train)
            result = fuzz(
                model, seeds, y, probe=probe, train=prof, criteria=criteria, max_queries=args.queries, seed=0
            )
            s = result.seconds
            row = {
                "model": name,
                "criteria": "all five" if criteria is None else "kmnc",
                "mutants": result.n_mutants,
                "mutants_per_s": round(result.mutants_per_second, 1),
                "forward_only_per_s": round(result.n_mutants / s["forward"], 1),
                "forward_s": round(s["forward"], 3),
                "coverage_s": round(s["coverage"], 3),
                "mutation_s": round(s["mutation"], 3),
                "other_s": round(s["other"] + s["validity"], 3),
                "total_s": round(s["total"], 3),
                "coverage_share_of_forward": round(s["coverage"] / s["forward"], 3),
                "kmnc_after": round(result.coverage_after["kmnc"].metric, 4),
                "failures": len(result.failures),
            }
            rows.append(row)
            print(json.dumps(row))
    splits = []
    for name, model in models.items():
        # all five criteria with the NC gate (as the loop runs), without it (every layer minimum read),
        # and KMNC alone (no minima at all)
        for criteria, gate in (
            (list(NEURON_CRITERIA), True),
            (list(NEURON_CRITERIA), False),
            (["kmnc"], True),
        ):
            runs = [(t, "numpy") for t in sorted({args.threads, 1}, reverse=True)]
            if gate and len(criteria) > 1 and args.threads > 1:
                runs.insert(1, (args.threads, "torch"))  # the parallel summary path at the same threads
            for threads, summaries in runs:
                row = {"model": name, "criteria": "all five" if len(criteria) > 1 else "kmnc"}
                row |= coverage_split(
                    model, seeds, train, criteria, threads, args.repeats, gate=gate, summaries=summaries
                )
                row["load_average"] = [round(v, 1) for v in os.getloadavg()]
                splits.append(row)
                print(json.dumps(row))
    torch.set_num_threads(args.threads)
    meta = {
        "threads": args.threads,
        "queries": args.queries,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fuzz.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "coverage_split": splits}, indent=2) + "\n"
    )
    head = list(rows[0])
    lines = [
        "# Fuzzing throughput (DeepHunter loop, 32-px CNNs)",
        "",
        f"{args.threads} torch threads, {args.queries} queries per run, load average at the end "
        f"{', '.join(f'{v:.1f}' for v in meta['load_average'])} on {meta['cpu_count']} cores.",
        "",
        "Target: 1,000 mutants/s with coverage bookkeeping included, coverage under 20% of the forward "
        "pass. `mutants_per_s` is the whole loop (mutation, forward, coverage, queue); "
        "`forward_only_per_s` is what the model's forward pass alone allows on this machine at this load "
        "(the ceiling of any loop); `coverage_share_of_forward` = coverage_s / forward_s.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows),
        "",
        "## Coverage bookkeeping vs the forward pass (interleaved, same process)",
        "",
        f"{args.repeats} repeats per row, a fresh batch of 160 mutants each; per repeat the bare forward "
        "pass (hooks off) and the bookkeeping of a hooked pass are timed one after the other, order "
        "alternating. Bookkeeping = layer summaries in the hooks (NumPy on one thread; torch's own "
        "reductions on torch's threads when it runs more) + the guide's "
        "cells and bitmap (KMNC, asked which mutant was first to a cell) + the measured criteria's bulk "
        "marking (`CoverageBook`: every ~1 MiB of neuron values, timed apart and spread over the batches it "
        "served). `ratio` = (median summaries + median guide + bulk per batch) / median forward; "
        "`median_ratio` the median per-repeat ratio plus the bulk share; `ratio_of_totals` all sums (most "
        "sensitive to load changes). With 1 torch thread both sides run on one core, the ratio least "
        "sensitive to other load on the machine. `nc_gate`: the probe skips the layer extrema NC cannot "
        "use (as the fuzz loop does: a ReLU layer's per-sample maximum and minimum are read only where an "
        "uncovered neuron could pass NC's threshold); the all-five rows with `nc_gate` false read every "
        "extremum, for comparison in the same run. `summaries`: how the probe summarised the conv layers "
        "(`numpy`, the default: on the calling thread; `torch`: torch's reductions on torch's threads, "
        "`TorchProbe.summaries`); the all-five gated rows are also run with `torch` at the bench's thread "
        "count, to compare the two paths. `probed_ms`: the hooked pass's wall time, and `probed_extra_ms` "
        "the median over repeats of that minus the same repeat's bare forward (the hooks' cost timed from "
        "outside, overheads included; it should agree with `summaries_ms`). `read_once_ms`: the same with "
        "hooks that only read every monitored tensor once (one maximum over its memory, on the summary "
        "path's threads) and compute nothing, and `read_once_ratio` the median of that over the same "
        "repeat's forward pass: the least that bookkeeping which looks at every monitored value can cost "
        "on this model and machine (noisy for signnet, whose forward pass varies by several ms between "
        "repeats). `ratio_outside` = (`probed_extra_ms` + guide + bulk per batch) / forward: `ratio` with "
        "the hooks timed from outside, the hooks' dispatch included (the stricter of the two). Target: "
        "under 0.20 (the table below asks it of both `ratio` and `ratio_outside`).",
        "",
        "| " + " | ".join(k for k in splits[0] if k != "batch") + " |",
        "|" + "---|" * (len(splits[0]) - 1),
        *("| " + " | ".join(str(r[k]) for k in r if k != "batch") + " |" for r in splits),
        "",
        "## Against the targets (all five criteria, NC gate on, NumPy summaries: as the loop runs)",
        "",
        "| model | mutants_per_s (>= 1,000) | threads | ratio (< 0.20) | ratio_outside (< 0.20) | "
        "read_once_ratio | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in models:
        loop = next(r for r in rows if r["model"] == name and r["criteria"] == "all five")
        for r in splits:
            if (
                r["model"] == name
                and r["criteria"] == "all five"
                and r["nc_gate"]
                and r["summaries"] == "numpy"
            ):
                met = loop["mutants_per_s"] >= 1000 and max(r["ratio"], r["ratio_outside"]) < 0.20
                lines.append(
                    f"| {name} | {loop['mutants_per_s']} | {r['threads']} | {r['ratio']} | "
                    f"{r['ratio_outside']} | {r['read_once_ratio']} | {'yes' if met else 'no'} |"
                )
    lines.append("")
    (RESULTS / "fuzz.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
