"""The untangling statistic: a real second group raises it, a handful of outliers does not."""

from __future__ import annotations

import numpy as np

from roadworthy.backdoor import SCORE_THRESHOLD, class_scores, untangle


def _classes(seed: int = 0, k: int = 8, n: int = 150, d: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 6.0, (k, d))
    y = np.repeat(np.arange(k), n)
    z = centres[y] + rng.normal(0.0, 1.0, (k * n, d))
    # one direction (the last) that the classes barely use: a unit that hardly ever fires
    z[:, -1] = rng.normal(0.0, 0.01, len(y))
    return z, y


def test_a_few_outliers_are_not_a_second_group():
    z, y = _classes()
    rows = np.flatnonzero(y == 0)
    z[rows[:2], -1] = 3.0  # two samples far out along the unused direction (hundreds of sds)
    u = untangle(z, y, 0)
    scores = class_scores(np.array([untangle(z, y, c).statistic for c in range(8)]))
    assert scores[0] < SCORE_THRESHOLD
    # the outliers still get a group and a projection (nothing is dropped from the class)
    assert len(u.group) == len(rows) and np.isfinite(u.projection).all()
    # with the trimming disabled the same two samples dominate the statistic (what the default prevents)
    raw = untangle(z, y, 0, min_group=1)
    assert raw.statistic > 5 * u.statistic
    raw_scores = class_scores(np.array([untangle(z, y, c, min_group=1).statistic for c in range(8)]))
    assert raw_scores[0] > SCORE_THRESHOLD


def test_a_small_separate_group_is_still_found():
    z, y = _classes(seed=1)
    rows = np.flatnonzero(y == 3)
    group = rows[:15]  # 10% of the class, shifted by 6 within-class sds along a used direction
    z[group, 0] += 6.0
    u = untangle(z, y, 3)
    scores = class_scores(np.array([untangle(z, y, c).statistic for c in range(8)]))
    assert scores[3] >= SCORE_THRESHOLD and scores.argmax() == 3
    found = u.rows[u.group == u.group[np.searchsorted(u.rows, group[0])]]
    assert set(group.tolist()) <= set(found.tolist()) and len(found) <= 20
