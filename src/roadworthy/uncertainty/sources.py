"""Out-of-distribution inputs generated on the fly: nothing is downloaded.

*Far-OOD* inputs share nothing with the data but their shape: uniform and Gaussian noise, flat colours
and crops of scikit-learn's two bundled sample photos (a temple and a flower), resized to the model's
input and converted to its channel count. *Near-OOD* inputs are evaluation inputs under the heaviest
shifts (severity 5 of the shift library's corruptions, passed in by the caller, or a simple built-in
version of each), the kind a camera really produces. For tabular data the far sources are random values
inside each column's observed range (snapped onto the feature schema: whole numbers, valid levels) and
noise around and past it; the near sources are the tabular shift library's per-feature shifts at high
severity (passed in by the OOD check) and a table that breaks the joint distribution while keeping every
marginal (each column shuffled independently).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from roadworthy.errors import InvalidInputError
from roadworthy.schema import Schema

log = logging.getLogger(__name__)

FAR_IMAGE_SOURCES = ("uniform_noise", "gaussian_noise", "flat_colour", "photos")
FAR_TABULAR_SOURCES = ("uniform_in_range", "uniform_noise", "gaussian_noise")
NEAR_IMAGE_SHIFTS = ("gaussian_noise", "contrast", "fog", "defocus_blur")
#: near-OOD for tables: shuffled columns and the shift library's per-feature shifts (those a table allows)
NEAR_TABULAR_SHIFTS = (
    "shuffled_columns",
    "tab_gaussian_noise",
    "tab_unit_drift",
    "tab_outliers",
    "tab_unseen_category",
)
#: a shifted batch whose mean absolute change is below this counts as unchanged
UNCHANGED = 1e-3


# ------------------------------------------------------------------------------------------ far-OOD images


def far_ood_images(kind: str, n: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """``n`` far-OOD images of per-sample ``shape`` ``(C, H, W)``, float32 in [0, 1].

    Parameters
    ----------
    kind
        ``uniform_noise`` (every pixel uniform), ``gaussian_noise`` (mid-grey plus N(0, 0.25^2), clipped),
        ``flat_colour`` (one random colour per image) or ``photos`` (random crops of scikit-learn's
        sample photos).
    """
    c, h, w = shape
    if kind == "uniform_noise":
        x = rng.random((n, c, h, w))
    elif kind == "gaussian_noise":
        x = np.clip(0.5 + 0.25 * rng.standard_normal((n, c, h, w)), 0.0, 1.0)
    elif kind == "flat_colour":
        x = np.broadcast_to(rng.random((n, c, 1, 1)), (n, c, h, w))
    elif kind == "photos":
        x = photo_crops(n, shape, rng)
    else:
        raise InvalidInputError(
            f"unknown far-OOD source {kind!r}; choose one of {', '.join(FAR_IMAGE_SOURCES)}"
        )
    return np.ascontiguousarray(x, dtype=np.float32)


def photo_crops(n: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random crops (a tenth to a half of the shorter side) of scikit-learn's sample photos, resized."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    c, h, w = shape
    photos = load_sample_images().images
    out = np.empty((n, c, h, w), np.float32)
    for i in range(n):
        img = photos[int(rng.integers(len(photos)))]
        side = min(img.shape[:2])
        ch = int(rng.integers(side // 10, side // 2 + 1))
        cw = max(1, min(img.shape[1], round(ch * w / h)))
        top = int(rng.integers(0, img.shape[0] - ch + 1))
        left = int(rng.integers(0, img.shape[1] - cw + 1))
        crop = Image.fromarray(img[top : top + ch, left : left + cw]).resize((w, h), Image.BOX)
        rgb = np.asarray(crop, np.float32) / 255.0
        out[i] = to_channels(rgb.transpose(2, 0, 1), c)
    return out


def to_channels(rgb: np.ndarray, c: int) -> np.ndarray:
    """A ``(3, H, W)`` RGB image as ``c`` channels: itself for 3, ITU-R 601 luma (repeated) otherwise."""
    if c == 3:
        return rgb
    grey = np.tensordot(np.array([0.299, 0.587, 0.114], np.float32), rgb, axes=1)
    return np.repeat(grey[None], c, axis=0)


# ----------------------------------------------------------------------------------------- shifted images


def _fallback_shift(x: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Simple corruptions after Hendrycks & Dietterich (ICLR 2019), for when no shift function is given."""
    s = int(np.clip(severity, 1, 5)) - 1
    _, _, h, w = x.shape
    if name == "gaussian_noise":
        return x + rng.standard_normal(x.shape) * (0.08, 0.12, 0.18, 0.26, 0.38)[s]
    if name == "contrast":
        c = (0.4, 0.3, 0.2, 0.1, 0.05)[s]
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        return (x - mean) * c + mean
    if name == "fog":
        # a smooth random haze from bilinear-upsampled coarse noise, added and renormalised like ImageNet-C
        strength = (1.5, 2.0, 2.5, 2.5, 3.0)[s]
        coarse = rng.random((x.shape[0], 1, 4, 4))
        haze = ndimage.zoom(coarse, (1, 1, h / 4, w / 4), order=1, mode="nearest")[:, :, :h, :w]
        peak = x.max(axis=(1, 2, 3), keepdims=True)
        return (x + strength * haze * 0.5) * peak / (peak + strength * 0.5)
    if name == "defocus_blur":
        radius = max(1.0, min(h, w) * (0.015, 0.02, 0.03, 0.035, 0.045)[s])
        r = int(np.ceil(radius))
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        disk = (xx**2 + yy**2 <= radius**2).astype(np.float64)
        disk /= disk.sum()
        return ndimage.convolve(x, disk[None, None], mode="reflect")
    raise InvalidInputError(f"unknown shift {name!r}; choose one of {', '.join(NEAR_IMAGE_SHIFTS)}")


#: ``apply_shift(name=..., x=..., severity=..., rng=...)``, e.g. :func:`roadworthy.shifts.apply_shift`
ShiftFunction = Callable[..., np.ndarray]


def shifted_images(
    x: np.ndarray,
    name: str,
    severity: int,
    rng: np.random.Generator,
    apply_shift: ShiftFunction | None = None,
) -> tuple[np.ndarray, str]:
    """``x`` under shift ``name`` at ``severity`` (1-5), and where the shift came from.

    Uses ``apply_shift`` (the shift suite's, :func:`roadworthy.shifts.apply_shift`, which the OOD checks
    pass) when it knows the shift and it changes the inputs, else a simple built-in version of the same
    corruption; the second value is ``"shift suite"`` or ``"built-in"``.
    """
    if apply_shift is not None:
        try:
            out = np.clip(
                np.asarray(apply_shift(name=name, x=x, severity=severity, rng=rng), np.float32), 0, 1
            )
            if np.abs(out - x).mean() >= UNCHANGED:
                return out, "shift suite"
            # e.g. a blur whose radius rounds to nothing on small images: no use as a changed input
            log.info("the shift suite's %s left the inputs unchanged; using the built-in version", name)
        except (KeyError, ValueError) as exc:  # a shift it does not have, or inputs it cannot take
            log.info("the shift suite cannot apply %s (%s); using the built-in version", name, exc)
        except TypeError as exc:
            log.warning(
                "the shift suite's apply_shift has an unexpected signature (%s); using built-in shifts", exc
            )
    out = _fallback_shift(np.asarray(x, np.float64), name, severity, rng)
    return np.clip(out, 0.0, 1.0).astype(np.float32), "built-in"


# ------------------------------------------------------------------------------------------------ tabular


def far_ood_tabular(
    kind: str, n: int, x_ref: np.ndarray, rng: np.random.Generator, schema: Schema | None = None
) -> np.ndarray:
    """``n`` far-OOD rows for tabular data like ``x_ref`` (missing values in ``x_ref`` are ignored).

    ``uniform_in_range`` draws every column uniformly inside its observed range, independently: each value
    is plausible alone, the row as a whole is not (projected onto ``schema`` when given, so integers stay
    whole, categories take valid levels and immutable columns keep a real row's values);
    ``uniform_noise`` is uniform over each column's range widened by half of it on both sides;
    ``gaussian_noise`` is each column's mean plus three of its standard deviations times N(0, 1).
    """
    x_ref = np.asarray(x_ref, np.float64)
    lo, hi = np.nanmin(x_ref, axis=0), np.nanmax(x_ref, axis=0)
    lo, hi = np.where(np.isfinite(lo), lo, 0.0), np.where(np.isfinite(hi), hi, 0.0)
    d = x_ref.shape[1]
    if kind == "uniform_in_range":
        x = lo + rng.random((n, d)) * (hi - lo)
        if schema is not None:
            real = x_ref[rng.integers(0, len(x_ref), n)] if len(x_ref) else None
            x = schema.project(x, real)
    elif kind == "uniform_noise":
        span = np.where(hi > lo, hi - lo, 1.0)
        x = lo - span / 2 + rng.random((n, d)) * 2 * span
    elif kind == "gaussian_noise":
        sd = np.nanstd(x_ref, axis=0)
        sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
        mean = np.nan_to_num(np.nanmean(x_ref, axis=0))
        x = mean + 3.0 * sd * rng.standard_normal((n, d))
    else:
        raise InvalidInputError(
            f"unknown far-OOD source {kind!r}; choose one of {', '.join(FAR_TABULAR_SOURCES)}"
        )
    return np.asarray(x, np.float32)


def shuffled_columns(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each column permuted independently: every marginal kept, every dependence between columns broken."""
    return np.stack([rng.permutation(col) for col in np.asarray(x).T], axis=1).astype(np.float32)


def noisy_tabular(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of ``0.1 * severity`` column standard deviations: a moderate tabular shift."""
    sd = np.asarray(x).std(axis=0)
    return (x + 0.1 * severity * sd * rng.standard_normal(x.shape)).astype(np.float32)
