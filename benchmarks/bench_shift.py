"""Shift suite vs the ``imagecorruptions`` package: per-image time for every corruption both implement.

Run by hand (the reference library is not a dependency; see benchmarks/README.md for how to install it)::

    .venv/bin/python -m benchmarks.bench_shift [--n32 200] [--n224 12]

Both sides run single-threaded on the same images (crops of scikit-learn's two sample photographs): roadworthy
on one float32 NCHW batch per severity (its native format), imagecorruptions image by image on uint8 HWC
arrays (its native format). For each corruption the time per image is averaged over severities 1-5. Writes
``benchmarks/results/shift.json`` and ``benchmarks/results/shift.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
SLOW_RUN_S = 20.0  #: a reference run longer than this is not repeated (glass_blur's per-pixel loop at 224 px)


def photos(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` random square crops of scikit-learn's sample photos, resized to ``size``: float32 NCHW."""
    import cv2
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    imgs = load_sample_images().images
    out = []
    for i in range(n):
        img = imgs[i % len(imgs)]
        side = int(rng.integers(160, min(img.shape[:2]) + 1))
        top = int(rng.integers(0, img.shape[0] - side + 1))
        left = int(rng.integers(0, img.shape[1] - side + 1))
        crop = img[top : top + side, left : left + side]
        out.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
    return np.ascontiguousarray(np.stack(out).transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)


def run_ours(name: str, x: np.ndarray) -> float:
    """Seconds for roadworthy to apply ``name`` at severities 1-5 to the batch ``x``."""
    from roadworthy.checks.shift import SHIFTS

    shift = SHIFTS[name]
    start = time.perf_counter()
    for s in range(1, 6):
        shift.apply(x, s, np.random.default_rng(s))
    return time.perf_counter() - start


def patch_reference() -> list[str]:
    """Let the three corruptions that crash under NumPy 2 / scikit-image >= 0.19 run, unchanged otherwise.

    imagecorruptions 1.1.2 calls ``skimage.filters.gaussian(..., multichannel=True)`` (glass_blur,
    gaussian_blur), a keyword scikit-image removed in 0.19 for ``channel_axis=-1``, and allocates its fog
    texture as ``np.float_``, an alias NumPy 2 removed for ``np.float64``. Both are renames: the shims below
    restore them for this process only, so that the reference runs its own algorithm for every corruption.
    Returns what was patched.
    """
    import imagecorruptions.corruptions as ic
    from skimage.filters import gaussian

    patched = []
    if not hasattr(np, "float_"):
        np.float_ = np.float64  # type: ignore[attr-defined]
        patched.append("np.float_ = np.float64 (fog)")

    def gaussian_compat(
        image: np.ndarray, sigma: float = 1, multichannel: bool | None = None, **kwargs: object
    ) -> np.ndarray:
        if multichannel is not None:
            kwargs.setdefault("channel_axis", -1 if multichannel else None)
        return gaussian(image, sigma=sigma, **kwargs)

    ic.gaussian = gaussian_compat
    patched.append("skimage gaussian(multichannel=True) -> channel_axis=-1 (glass_blur, gaussian_blur)")
    return patched


def run_reference(name: str, u8: list[np.ndarray]) -> float:
    """Seconds for imagecorruptions to apply ``name`` at severities 1-5 to each uint8 HWC image."""
    from imagecorruptions import corrupt

    np.random.seed(0)
    start = time.perf_counter()
    for s in range(1, 6):
        for im in u8:
            corrupt(im, severity=s, corruption_name=name)
    return time.perf_counter() - start


def time_both(name: str, x: np.ndarray, repeats: int) -> tuple[float, float | None, str | None]:
    """Per-image milliseconds (best of ``repeats``) of both sides, runs interleaved so that a slow spell
    of a shared machine hits both alike; each side is warmed up once first (tables, imports).
    Returns ``(ours, reference or None, reference error or None)``."""
    u8 = [np.ascontiguousarray(np.rint(im.transpose(1, 2, 0) * 255).astype(np.uint8)) for im in x]
    run_ours(name, x[:2])
    ours, ref, error = math.inf, math.inf, None
    try:
        run_reference(name, u8[:1])
    except Exception as exc:  # noqa: BLE001 - a crashing reference is a result, not a failure
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:90]}"
    for _ in range(repeats):
        ours = min(ours, run_ours(name, x))
        if error is None and (ref == math.inf or ref < SLOW_RUN_S):  # a run of many seconds: measured once
            ref = min(ref, run_reference(name, u8))
    per_image = 1e3 / (5 * len(x))
    return ours * per_image, None if error else ref * per_image, error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n32", type=int, default=200, help="images at 32 px")
    parser.add_argument("--n224", type=int, default=12, help="images at 224 px")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many runs")
    parser.add_argument("--sizes", default="32,224", help="image sizes to run, comma-separated")
    parser.add_argument("--only", default="", help="corruptions to run, comma-separated (default: all)")
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="keep glibc's allocator defaults instead of the settings a roadworthy run uses (roadworthy.memory)",
    )
    parser.add_argument(
        "--no-patch",
        action="store_true",
        help="run imagecorruptions as installed (three corruptions crash under NumPy 2)",
    )
    args = parser.parse_args()

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import imagecorruptions
            from imagecorruptions import get_corruption_names
    except ImportError as exc:
        raise SystemExit(
            f"imagecorruptions is not installed ({exc}); see benchmarks/README.md, section 'Shift suite'"
        ) from exc
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")

    from roadworthy.memory import keep_freed_memory

    # both sides run in this process under the allocator settings a roadworthy run applies
    allocator = "glibc defaults" if args.default_malloc or not keep_freed_memory() else "roadworthy.memory"
    patched = [] if args.no_patch else patch_reference()
    names = [c for c in get_corruption_names("all") if not args.only or c in args.only.split(",")]
    sizes = {int(s) for s in args.sizes.split(",")}
    rows = []
    summary = {}
    for size, n in ((32, args.n32), (224, args.n224)):
        if size not in sizes:
            continue
        x = photos(n, size)
        ratios = []
        for name in names:
            ours, ref, error = time_both(name, x, args.repeats)
            ratio = ref / ours if ref is not None else None
            if ratio is not None:
                ratios.append(ratio)
            rows.append(
                {
                    "size": size,
                    "n_images": n,
                    "corruption": name,
                    "roadworthy_ms": ours,
                    "reference_ms": ref,
                    "speedup": ratio,
                    "reference_error": error,
                }
            )
            shown = f"{ratio:7.1f}x" if ratio else "reference crashed"
            print(
                f"{size:4d} px  {name:18s} roadworthy {ours:8.3f} ms  imagecorruptions {ref or float('nan'):8.3f} ms  {shown}"
            )
        gm = float(np.exp(np.mean(np.log(ratios)))) if ratios else None
        summary[str(size)] = {
            "geometric_mean_speedup": gm,
            "slowest_ratio": min(ratios) if ratios else None,
            "compared": len(ratios),
            "reference_crashed": [
                r["corruption"] for r in rows if r["size"] == size and r["reference_error"]
            ],
        }
        print(f"{size:4d} px  geometric mean speedup {gm:.1f}x over {len(ratios)} corruptions")

    meta = {
        "imagecorruptions": getattr(imagecorruptions, "__version__", "1.1.2"),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": 1,
        "repeats": args.repeats,
        "images": "random square crops of scikit-learn's sample photos (china.jpg, flower.jpg)",
        "reference_patches": patched,
        "allocator": allocator,
    }
    if args.only or sizes != {32, 224}:
        print("partial run (--only / --sizes): results/shift.* not written")
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "shift.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        "# Shift suite vs imagecorruptions",
        "",
        f"Per-image milliseconds, mean over severities 1-5, best of {args.repeats} interleaved runs after a "
        f"warm-up, one thread each, both under the same allocator settings ({allocator}) "
        f"(imagecorruptions {meta['imagecorruptions']}, NumPy {meta['numpy']}, OpenCV {meta['opencv']}). "
        "roadworthy transforms one float32 NCHW batch per severity; imagecorruptions one uint8 image at a time.",
        "",
        "| size | corruption | roadworthy ms | imagecorruptions ms | speedup |",
        "|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        ref = f"{r['reference_ms']:.3f}" if r["reference_ms"] is not None else "reference crashed"
        sp = f"{r['speedup']:.1f}x" if r["speedup"] is not None else "-"
        lines.append(f"| {r['size']} | {r['corruption']} | {r['roadworthy_ms']:.3f} | {ref} | {sp} |")
    lines.append("")
    for size, s in summary.items():
        crashed = ", ".join(s["reference_crashed"]) or "none"
        shims = "; ".join(meta["reference_patches"]) or "none"
        lines.append(
            f"- **{size} px**: geometric mean speedup **{s['geometric_mean_speedup']:.1f}x** over {s['compared']} "
            f"corruptions, slowest ratio {s['slowest_ratio']:.1f}x; reference crashed: {crashed}."
        )
    lines.append(f"- Reference compatibility shims (renamed APIs only, see `patch_reference`): {shims}.")
    (RESULTS / "shift.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
