"""Vector views of training samples shared by the integrity checks.

Two views: the model's penultimate features where it offers them (what the model "sees"), and a
model-free view of the inputs themselves (images shrunk by area averaging to a few hundred numbers,
tabular rows as they are) for duplicates, leakage and models without a feature layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from roadworthy.checks.base import Context


def shrink_inputs(x: np.ndarray, max_side: int = 16) -> np.ndarray:
    """Flattened float32 inputs; images are area-averaged to at most ``max_side`` px per side.

    Area averaging keeps the mean grey level of every block, so the root-mean-square difference of two
    shrunk images is a pixel-unit distance (0 = identical, 1 = black vs white) that does not depend on
    the original resolution.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4:
        return x.reshape(len(x), -1)
    n, c, h, w = x.shape
    fh, fw = max(1, int(np.ceil(h / max_side))), max(1, int(np.ceil(w / max_side)))
    hh, ww = h // fh, w // fw
    if fh > 1 or fw > 1:
        x = x[:, :, : hh * fh, : ww * fw].reshape(n, c, hh, fh, ww, fw).mean(axis=(3, 5))
    return x.reshape(n, -1)


def reduce_dims(
    z: np.ndarray, max_dims: int, seed: int, per_column: bool = True, robust: bool = False
) -> np.ndarray:
    """``z`` centred, scaled and, when wider than ``max_dims``, projected on its top principal components.

    ``per_column`` scales every column to unit variance first (features in unrelated units); otherwise
    one common scale keeps the relative weight of the columns (pixels, all in the same unit), so that
    low-variance noise directions are not blown up. ``robust`` centres each column on its median and
    scales it by its interquartile range (as a normal standard deviation, IQR / 1.349; the standard
    deviation where the IQR is 0): raw table columns (an income beside an age) often have long tails
    whose extremes would otherwise set the scale of the whole column.
    """
    z = np.asarray(z, dtype=np.float32)
    if per_column and robust:
        z = (z - np.median(z, axis=0)).astype(np.float32)
        q1, q3 = np.percentile(z, [25, 75], axis=0)
        scale = (q3 - q1) / 1.349
        flat = scale <= 0
        scale[flat] = z[:, flat].std(axis=0)
        scale[scale <= 0] = 1.0
        z = z / scale.astype(np.float32)
    z = z - z.mean(axis=0)
    if per_column and not robust:
        std = z.std(axis=0)
        std[std == 0] = 1.0
        z = z / std
    if z.shape[1] > max_dims and len(z) > max_dims:
        from sklearn.decomposition import PCA

        z = PCA(n_components=max_dims, svd_solver="randomized", random_state=seed).fit_transform(z)
    scale = float(np.sqrt((z**2).sum(axis=1).mean() / max(1, z.shape[1])))
    return (z / (scale if scale > 0 else 1.0)).astype(np.float32)


def train_representation(ctx: Context, max_dims: int = 64) -> tuple[np.ndarray, str]:
    """A standardised representation of the training samples and a phrase naming its source.

    The model's penultimate features when it offers them, else the (shrunk) raw inputs; projected on
    at most ``max_dims`` principal components. Cached per context so checks share the work.

    The scaling follows what the numbers are: features and table columns are in unrelated units, so
    each column is standardised (a table's raw columns robustly, by median and interquartile range);
    pixels share one unit, so images keep one common scale.
    """
    assert ctx.train_data is not None
    tabular = ctx.train_data.modality != "image"
    robust = False
    if "features" in ctx.capabilities:
        source = "the model's penultimate features"
        raw = ctx.train_features
        per_column = True
    else:
        source = "the raw inputs (no feature layer)"
        raw = ctx.cached("integrity.train_inputs_shrunk", lambda: shrink_inputs(ctx.train_data.x))  # type: ignore[union-attr]
        per_column = robust = tabular
        if tabular:
            source += ", each column scaled by its median and interquartile range"
    key = f"integrity.train_representation.{max_dims}"
    seed = ctx.random_state(key)  # keyed by what it computes, not by the check: the result is shared
    z = ctx.cached(key, lambda: reduce_dims(raw.reshape(len(raw), -1), max_dims, seed, per_column, robust))
    if z.shape[1] < raw.reshape(len(raw), -1).shape[1]:
        source += f", {z.shape[1]} principal components"
    return z, source


def prefetch_features(ctx: Context) -> None:
    """Compute (and cache) the training features before the work that runs on one BLAS thread."""
    if ctx.train_data is not None and "features" in ctx.capabilities:
        _ = ctx.train_features
