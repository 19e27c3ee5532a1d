"""Shift suite vs the ``imagecorruptions`` package: per-image time and strength for every corruption both implement.

Run by hand (the reference library is not a dependency; see benchmarks/README.md for how to install it)::

    .venv/bin/python -m benchmarks.bench_shift [--n32 200] [--n224 12]

Both sides run single-threaded on the same images (crops of scikit-learn's two sample photographs): roadworthy
on one float32 NCHW batch per severity (its native format), imagecorruptions image by image on uint8 HWC
arrays (its native format). For each corruption the time per image is averaged over severities 1-5. In the
same run, at 224 px (where both use the ImageNet-C table), the strength per corruption and severity: mean
absolute change on the photographs and accuracy drop of the demo road-sign CNN (behind a 224 -> 32 px
downscale) on demo signs rendered at 224 px, each within +-20% of the reference's. Writes
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
    from roadworthy.shifts import SHIFTS

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


# ------------------------------------------------------------------------------------ strength comparison

STRENGTH_SIZE = 224  #: both sides apply the ImageNet-C table here (at 32 px roadworthy uses CIFAR-10-C's)
TOLERANCE = 0.20  #: a strength within +-20% of the reference's passes
#: corruptions whose reference takes about a second per 224 px image (a per-pixel Python loop): their
#: accuracy drop is measured on the first SLOW_MODEL_IMAGES signs only
SLOW_REFERENCE = {"glass_blur"}
SLOW_MODEL_IMAGES = 40


def reference_output(name: str, u8: np.ndarray, severity: int) -> np.ndarray:
    """imagecorruptions' ``name`` on one uint8 HWC image, as float64 in [0, 255] before its uint8 cast.

    ``corrupt`` truncates the result to uint8 (0.5 grey levels darker on average); the corruption function
    itself returns the float image, which is what roadworthy's float output is compared with.
    """
    from imagecorruptions import corruption_dict
    from PIL import Image

    out = np.asarray(corruption_dict[name](Image.fromarray(u8), severity), dtype=np.float64)
    return np.clip(out.reshape(u8.shape), 0.0, 255.0)


def reference_batch(name: str, x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """imagecorruptions' ``name`` on each image of the float32 NCHW batch ``x`` (values k/255): NCHW in [0, 1]."""
    np.random.seed(seed)
    u8 = np.rint(x.transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    out = np.stack([reference_output(name, im, severity) for im in u8])
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)


def ours_batch(name: str, x: np.ndarray, severity: int, seed: int) -> np.ndarray:
    from roadworthy.shifts import SHIFTS

    return SHIFTS[name].apply(x, severity, np.random.default_rng(seed))


def mean_abs_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute pixel change in grey levels (0-255)."""
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))) * 255)


class SignModel:
    """The demo road-sign CNN behind an area downscale to its 32 px input: a classifier of 224 px images.

    The corruptions act at 224 px (where both libraries use the ImageNet-C table); the network sees the
    result as a camera pipeline feeding a small model would, downscaled.
    """

    def __init__(self) -> None:
        from roadworthy.demo import load_demo_model

        self.model = load_demo_model()

    def predict(self, x: np.ndarray) -> np.ndarray:
        import cv2

        small = np.stack(
            [cv2.resize(im.transpose(1, 2, 0), (32, 32), interpolation=cv2.INTER_AREA) for im in x]
        )
        scores = self.model.predict(np.ascontiguousarray(small.transpose(0, 3, 1, 2), dtype=np.float32))
        return np.argmax(scores, axis=1)


def sign_images(n: int, size: int = STRENGTH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``n`` demo road signs rendered at ``size`` px (a test stream the model was not trained on), quantised
    to 8 bits so that both sides get the same input."""
    from roadworthy.demo.signs import make_signs

    x, y = make_signs(n, seed=20260510, size=size)
    return np.rint(x * 255) / np.float32(255), y


def within(ours: float, ref: float, noise: float = 0.0) -> bool:
    """``ours`` within +-:data:`TOLERANCE` of ``ref``, or closer to it than ``noise``."""
    return abs(ours - ref) <= max(TOLERANCE * abs(ref), noise)


def compare_strength(
    names: list[str], photos_x: np.ndarray, signs: tuple[np.ndarray, np.ndarray] | None
) -> list[dict]:
    """Per corruption and severity: mean absolute change on ``photos_x`` and accuracy drop of
    :class:`SignModel` on ``signs``, both sides, with their ratio and whether it is within tolerance."""
    model = SignModel() if signs is not None else None
    if signs is not None:
        xs, ys = signs
        clean = float(np.mean(model.predict(xs) == ys))
    rows = []
    for name in names:
        for s in range(1, 6):
            seed = 1000 * s + 7
            ours = mean_abs_change(ours_batch(name, photos_x, s, seed), photos_x)
            ref = mean_abs_change(reference_batch(name, photos_x, s, seed), photos_x)
            row = {
                "corruption": name,
                "severity": s,
                "mac_roadworthy": ours,
                "mac_reference": ref,
                "mac_ratio": ours / ref if ref > 0 else None,
                "mac_ok": within(ours, ref),
            }
            if signs is not None:
                m = SLOW_MODEL_IMAGES if name in SLOW_REFERENCE else len(ys)
                clean_m = float(np.mean(model.predict(xs[:m]) == ys[:m])) if m < len(ys) else clean
                acc_ours = float(np.mean(model.predict(ours_batch(name, xs[:m], s, seed)) == ys[:m]))
                acc_ref = float(np.mean(model.predict(reference_batch(name, xs[:m], s, seed)) == ys[:m]))
                d_ours, d_ref = clean_m - acc_ours, clean_m - acc_ref
                # two binomial standard errors of the difference of the two accuracies
                noise = 2 * math.sqrt((acc_ours * (1 - acc_ours) + acc_ref * (1 - acc_ref)) / m)
                row.update(
                    {
                        "model_images": m,
                        "clean_accuracy": clean_m,
                        "drop_roadworthy": d_ours,
                        "drop_reference": d_ref,
                        "drop_ratio": d_ours / d_ref if d_ref > 0 else None,
                        "drop_noise": noise,
                        "drop_ok": within(d_ours, d_ref, noise),
                    }
                )
            rows.append(row)
            print(_strength_line(row))
    return rows


def _strength_line(r: dict) -> str:
    text = (
        f"{r['corruption']:18s} s{r['severity']}  change {r['mac_roadworthy']:6.2f} vs {r['mac_reference']:6.2f}"
        f" ({_ratio(r['mac_ratio'])}){'' if r['mac_ok'] else ' !'}"
    )
    if "drop_roadworthy" in r:
        text += (
            f"   drop {r['drop_roadworthy']:+.3f} vs {r['drop_reference']:+.3f}"
            f" ({_ratio(r['drop_ratio'])}){'' if r['drop_ok'] else ' !'}"
        )
    return text


def _ratio(r: float | None) -> str:
    return f"{r:.2f}x" if r is not None else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n32", type=int, default=200, help="images at 32 px")
    parser.add_argument("--n224", type=int, default=12, help="images at 224 px")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many runs")
    parser.add_argument("--sizes", default="32,224", help="image sizes to run, comma-separated")
    parser.add_argument("--only", default="", help="corruptions to run, comma-separated (default: all)")
    parser.add_argument("--n-strength", type=int, default=32, help="224 px photographs for the mean change")
    parser.add_argument("--n-model", type=int, default=200, help="224 px demo signs for the accuracy drop")
    parser.add_argument("--no-speed", action="store_true", help="strength comparison only")
    parser.add_argument("--no-strength", action="store_true", help="speed comparison only")
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
        if size not in sizes or args.no_speed:
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

    strength: list[dict] = []
    if not args.no_strength:
        print(
            f"strength at {STRENGTH_SIZE} px: roadworthy vs imagecorruptions (! = outside +-{TOLERANCE:.0%})"
        )
        strength = compare_strength(
            names, photos(args.n_strength, STRENGTH_SIZE, seed=1), sign_images(args.n_model)
        )
    flagged = [f"{r['corruption']} {r['severity']}" for r in strength if not (r["mac_ok"] and r["drop_ok"])]
    strength_summary = {
        "size": STRENGTH_SIZE,
        "tolerance": TOLERANCE,
        "photos": args.n_strength,
        "model": "roadworthy demo road-sign CNN (32 px input) behind an area downscale from 224 px",
        "model_images": args.n_model,
        "outside_tolerance": flagged,
    }

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
    if args.only or sizes != {32, 224} or args.no_speed or args.no_strength:
        print("partial run (--only / --sizes / --no-speed / --no-strength): results/shift.* not written")
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "shift.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "summary": summary,
                "rows": rows,
                "strength_summary": strength_summary,
                "strength": strength,
            },
            indent=2,
        )
        + "\n"
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
    lines += strength_table(strength, strength_summary)
    (RESULTS / "shift.md").write_text("\n".join(lines) + "\n")


def strength_table(strength: list[dict], summary: dict) -> list[str]:
    """The strength comparison as Markdown lines."""
    n_slow = {r["model_images"] for r in strength if r["corruption"] in SLOW_REFERENCE}
    flagged = ", ".join(summary["outside_tolerance"]) or "none"
    lines = [
        "",
        f"## Strength at {summary['size']} px",
        "",
        f"Mean absolute change (grey levels, 0-255) on {summary['photos']} crops of the same photographs, and "
        f"accuracy drop (clean minus corrupted accuracy) of the {summary['model']}, on "
        f"{summary['model_images']} demo signs rendered at 224 px "
        f"({', '.join(sorted(SLOW_REFERENCE))}: {', '.join(str(k) for k in sorted(n_slow))}); same inputs, one "
        "random draw per side. Ratio = roadworthy / imagecorruptions; `!` marks a value outside "
        f"+-{summary['tolerance']:.0%} of the reference's (for the drop: and further from it than two binomial "
        "standard errors of the two accuracies, the column `noise`).",
        "",
        "| corruption | severity | change ours | change ref | ratio | drop ours | drop ref | ratio | noise |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in strength:
        lines.append(
            f"| {r['corruption']} | {r['severity']} | {r['mac_roadworthy']:.2f} | {r['mac_reference']:.2f} | "
            f"{_ratio(r['mac_ratio'])}{'' if r['mac_ok'] else ' !'} | {r['drop_roadworthy']:+.3f} | "
            f"{r['drop_reference']:+.3f} | {_ratio(r['drop_ratio'])}{'' if r['drop_ok'] else ' !'} | "
            f"{r['drop_noise']:.3f} |"
        )
    lines += ["", f"- Outside the tolerance: {flagged}."]
    return lines


if __name__ == "__main__":
    main()
