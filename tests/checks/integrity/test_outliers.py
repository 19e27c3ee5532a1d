from __future__ import annotations

from dataclasses import replace

import numpy as np

from roadworthy.checks.integrity.outliers import ClassBalance, Outliers


def test_planted_noise_images_are_the_top_outliers(ctx):
    train = ctx.train_data
    rng = np.random.default_rng(0)
    noise = rng.random((4, *train.x.shape[1:])).astype(np.float32)
    ctx.train_data = replace(
        train, x=np.concatenate([train.x, noise]), y=np.concatenate([train.y, [0, 1, 2, 3]])
    )
    out = Outliers().run(ctx)
    n = len(train.y)
    assert set(out.details["indices"][:4]) == set(range(n, n + 4))
    assert out.metrics["integrity.outliers.count"] == len(out.details["indices"])
    assert out.metrics["integrity.outliers.count"] <= 0.02 * (n + 4)
    assert np.all(np.diff(out.details["scores"]) <= 0)


def test_class_balance_counts_and_missing_classes(ctx):
    train = ctx.train_data
    keep = np.flatnonzero((train.y != 9) & ~((train.y == 0) & (np.arange(len(train.y)) % 2 == 0)))
    ctx.train_data = train.subset(keep)
    out = ClassBalance().run(ctx)
    counts = np.bincount(train.y[keep], minlength=10)
    assert out.details["counts"]["9"] == 0
    assert out.details["missing_classes"] == ["9"]
    assert out.warnings and "9" in out.warnings[0]
    present = counts[counts > 0]
    assert out.metrics["integrity.class_balance.imbalance_ratio"] == present.max() / present.min()
    assert out.details["smallest"] == "0"
