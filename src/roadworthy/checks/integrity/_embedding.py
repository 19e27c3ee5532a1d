"""Vector views of training samples shared by the integrity checks.

Two views: the model's penultimate features where it offers them (what the model "sees"), and a
model-free view of the inputs themselves (images shrunk by area averaging to a few hundred numbers,
tabular rows as they are) for duplicates, leakage and models without a feature layer.

**Sharded** (:class:`EmbeddingShards`): the per-row work of these views -- the model's features of every
training row and, for the label screen's calibration, of every labelled evaluation row, and the shrunk
training inputs -- goes through the sample-sharding protocol of :class:`~roadworthy.checks.base.Check`.
The positions are the training rows followed by those evaluation rows, in blocks of
:data:`~roadworthy.checks.base.SHARD_BLOCK`; a model call never sees more than one block of one set, so
any split of the blocks (one shard here, several Ray workers) gives the same bits. The parts are
concatenated in block order into one :class:`Embedding` per session (cached, so ``label_issues``,
``outliers`` and ``poisoning`` embed once), and each check's own algorithm runs on it in ``merge``.
The checks share one :meth:`~EmbeddingShards.shard_key`, so the Ray backend runs the shards once for
all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from roadworthy.checks.base import SHARD_BLOCK, Block, blocks_of

if TYPE_CHECKING:
    from roadworthy.checks.base import Context, Outcome

#: the session cache's key of the merged :class:`Embedding`
EMBEDDING = "integrity.embedding"


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
    emb = embedding(ctx)
    if emb.train_features is not None:
        source = "the model's penultimate features"
        raw = emb.train_features
        per_column = True
    else:
        source = "the raw inputs (no feature layer)"
        raw = emb.train_shrunk
        per_column = robust = tabular
        if tabular:
            source += ", each column scaled by its median and interquartile range"
    key = f"integrity.train_representation.{max_dims}"
    seed = ctx.random_state(key)  # keyed by what it computes, not by the check: the result is shared
    z = ctx.cached(key, lambda: reduce_dims(raw.reshape(len(raw), -1), max_dims, seed, per_column, robust))
    if z.shape[1] < raw.reshape(len(raw), -1).shape[1]:
        source += f", {z.shape[1]} principal components"
    return z, source


@dataclass(frozen=True)
class Embedding:
    """The per-row views the integrity checks work on, merged from every block in order.

    ``train_features``: the model's penultimate features of every training row (``None`` without a
    feature layer); ``train_shrunk``: the training inputs shrunk by :func:`shrink_inputs`;
    ``eval_features``: the features of every evaluation row when the evaluation data is labelled and the
    model has a feature layer (the poisoning check's label screen calibrates on them), else ``None``.
    """

    train_features: np.ndarray | None
    train_shrunk: np.ndarray
    eval_features: np.ndarray | None


def _layout(ctx: Context) -> tuple[int, int]:
    """(training rows, evaluation rows) of the embedding's positions (the training rows come first)."""
    assert ctx.train_data is not None
    n_train = len(ctx.train_data.x)
    labelled = ctx.data is not None and ctx.data.y is not None and len(ctx.data.y) > 0
    n_eval = len(ctx.data.x) if labelled and "features" in ctx.capabilities else 0
    return n_train, n_eval


def embed_block(ctx: Context, block: Block) -> dict[str, Any]:
    """The views of positions ``block.start:block.stop``: training rows first, then evaluation rows.

    A block that straddles the two sets feeds the model each set's rows in its own call. When this
    session already holds the merged :class:`Embedding`, the block is read from it (no model call).
    """
    n_train, _ = _layout(ctx)
    done = ctx.peek(EMBEDDING)
    a, b = block.start, block.stop
    ta, tb = min(a, n_train), min(b, n_train)  # the block's training rows
    ea, eb = max(a, n_train) - n_train, max(b, n_train) - n_train  # and evaluation rows
    features = "features" in ctx.capabilities
    train = ctx.train_data
    assert train is not None
    if done is not None:
        return {
            "train_features": None if done.train_features is None else done.train_features[ta:tb],
            "train_shrunk": done.train_shrunk[ta:tb],
            "eval_features": None if done.eval_features is None else done.eval_features[ea:eb],
        }
    x_train = train.x[ta:tb]
    return {
        "train_features": _as_rows(ctx.features(x_train)) if features and tb > ta else None,
        "train_shrunk": shrink_inputs(x_train) if tb > ta else None,
        "eval_features": _as_rows(ctx.features(ctx.data.x[ea:eb])) if eb > ea else None,
    }


def _as_rows(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float32)
    return f.reshape(len(f), -1)


def merge_embedding(ctx: Context, parts: list[dict[str, Any]]) -> Embedding:
    """The session's :class:`Embedding` from every block's part, in block order (cached: the first
    merge is kept, and the parts of any split are the same bits)."""

    def join(name: str, n: int) -> np.ndarray | None:
        got = [q[name] for q in parts if q[name] is not None]
        if not got:
            return None
        out = np.concatenate(got)
        assert len(out) == n, (name, len(out), n)
        return out

    def build() -> Embedding:
        n_train, n_eval = _layout(ctx)
        shrunk = join("train_shrunk", n_train)
        features = join("train_features", n_train) if "features" in ctx.capabilities else None
        return Embedding(
            train_features=features,
            train_shrunk=shrunk if shrunk is not None else np.zeros((0, 0), np.float32),
            eval_features=join("eval_features", n_eval) if n_eval else None,
        )

    return ctx.cached(EMBEDDING, build)


def embedding(ctx: Context) -> Embedding:
    """The session's :class:`Embedding`, computed block by block here when no shard merged it yet
    (the same blocks as a sharded run, so the same bits)."""
    done = ctx.peek(EMBEDDING)
    if done is None:
        n_train, n_eval = _layout(ctx)
        done = merge_embedding(ctx, [embed_block(ctx, b) for b in blocks_of(n_train + n_eval, SHARD_BLOCK)])
    return done


class EmbeddingShards:
    """Mixin of the integrity checks that work on the :class:`Embedding`: its blocks are this check's
    shards; :meth:`measure` (the check's algorithm, on one BLAS thread) runs on the merged embedding."""

    shard_block: ClassVar[int] = SHARD_BLOCK

    def shard_items(self, ctx: Context) -> int | None:
        if ctx.train_data is None:
            return None
        n_train, n_eval = _layout(ctx)
        return n_train + n_eval

    def shard_key(self, ctx: Context) -> Any:
        """Every check with this mixin computes the same parts for the same blocks."""
        return EMBEDDING

    def run_block(self, ctx: Context, block: Block) -> dict[str, Any]:
        return embed_block(ctx, block)

    def merge(self, ctx: Context, parts: list[dict[str, Any]]) -> Outcome:
        from roadworthy.threads import single_threaded_blas

        merge_embedding(ctx, parts)
        with single_threaded_blas():  # the model ran with all its threads; the small-matrix work with one
            return self.measure(ctx)

    def measure(self, ctx: Context) -> Outcome:
        """The check's algorithm on ``embedding(ctx)``."""
        raise NotImplementedError
