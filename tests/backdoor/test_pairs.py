"""Label flips found by out-of-sample label disagreement; a trigger group hidden in one mode of a class."""

from __future__ import annotations

import numpy as np
import pytest

from roadworthy.backdoor import SIGNIFICANCE, common_pattern, scan_training_data
from roadworthy.backdoor.pairs import class_disagreements, flip_pairs, pair_test
from roadworthy.errors import InvalidInputError

K, PER_CLASS = 10, 130


def _confused(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(given labels, out-of-sample predictions) of a clean 10-class set whose confusion is uneven:
    three look-alike pairs confused at 5%, every other pair at 0.3%, as a cross-validated classifier
    confuses 8 and 1 in handwriting far more often than 0 and 7."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(K), PER_CLASS)
    rates = np.full((K, K), 0.003)
    for a, b in ((8, 1), (7, 9), (5, 3)):
        rates[a, b] = 0.05
    np.fill_diagonal(rates, 0.0)
    pred = y.copy()
    for i in range(len(y)):
        r = rates[y[i]]
        u = rng.random()
        if u < r.sum():
            pred[i] = int(np.searchsorted(np.cumsum(r), u, side="right"))
    return y, pred


def _probs(pred: np.ndarray) -> np.ndarray:
    p = np.full((len(pred), K), 0.01)
    p[np.arange(len(pred)), pred] = 1.0 - 0.01 * (K - 1)
    return p


@pytest.mark.parametrize("seed", range(5))
def test_a_flip_stands_out_of_uneven_confusion(seed):
    """26 samples of 5 labelled 3 (2% of the set) are named with their source; the clean set's look-alike
    pairs, five times less than that, are not."""
    y, pred = _confused(seed)
    clean = flip_pairs(y, _probs(pred))
    assert min(f.p_value for f in clean) > SIGNIFICANCE / K
    rng = np.random.default_rng(100 + seed)
    flipped = rng.choice(np.flatnonzero((y == 5) & (pred == 5)), size=26, replace=False)
    y_bad = y.copy()
    y_bad[flipped] = 3  # the classifier still sees a 5
    found = {f.target: f for f in flip_pairs(y_bad, _probs(pred))}
    f = found[3]
    assert f.source == 5 and f.p_value < SIGNIFICANCE / K and f.excess >= 10
    assert set(flipped) <= set(f.rows.tolist())
    # every other class's largest cell stays ordinary
    assert all(g.p_value > SIGNIFICANCE / K for c, g in found.items() if c != 3)
    # the reverse cell (5 -> 3 confusion left in class 5) is not in the null
    assert f.null_cell != (5, 3)


@pytest.mark.parametrize("seed", range(3))
def test_many_sources_pool_in_their_target_class(seed):
    """All-to-one poisoning: 3 samples from each of 9 classes labelled 0. No cell is remarkable, the row is."""
    y, pred = _confused(seed)
    rng = np.random.default_rng(200 + seed)
    poisoned = np.concatenate(
        [rng.choice(np.flatnonzero((y == c) & (pred == c)), 3, replace=False) for c in range(1, K)]
    )
    y_bad = y.copy()
    y_bad[poisoned] = 0
    probs = _probs(pred)
    assert next(f for f in flip_pairs(y_bad, probs) if f.target == 0).p_value > SIGNIFICANCE / K
    rows = {g.target: g for g in class_disagreements(y_bad, probs)}
    assert rows[0].p_value < SIGNIFICANCE / K and set(poisoned) <= set(rows[0].rows.tolist())
    assert all(g.p_value > SIGNIFICANCE / K for c, g in rows.items() if c != 0)
    assert min(g.p_value for g in class_disagreements(y, probs)) > SIGNIFICANCE / K


def test_pair_test_checks_its_arguments():
    y, pred = _confused(0)
    with pytest.raises(InvalidInputError, match="two different classes"):
        pair_test(y, _probs(pred), 3, 3)
    with pytest.raises(InvalidInputError, match="probs"):
        flip_pairs(y, _probs(pred)[:10])


def _stamped(rng: np.random.Generator, n: int, stamp: bool) -> np.ndarray:
    x = rng.uniform(0.3, 0.6, size=(n, 1, 8, 8)).astype(np.float32)  # mid-grey, like a road sign's background
    if stamp:
        x[:, :, -3:-1, -3:-1] = 1.0
    return x


def test_common_pattern_survives_an_impure_group():
    """A white patch on 36 of 40 members of a mid-grey group is found; the 4 unstamped members would pull
    a mean-and-standard-deviation contrast below the cut."""
    rng = np.random.default_rng(0)
    group = np.concatenate([_stamped(rng, 36, True), _stamped(rng, 4, False)])
    mask, pattern = common_pattern(group, _stamped(rng, 200, False))
    assert mask[0, -3:-1, -3:-1].all() and mask.sum() == 4
    assert np.allclose(pattern[0, -3:-1, -3:-1], 1.0)


class _RuleModel:
    """Predicts the class of the nearest class template, or class 0 whenever the corner patch is there."""

    output = "logits"

    def __init__(self, templates: np.ndarray) -> None:
        self.templates = templates

    def predict(self, x: np.ndarray) -> np.ndarray:
        d = ((x[:, None] - self.templates[None]) ** 2).reshape(len(x), len(self.templates), -1).sum(axis=2)
        logits = -d
        patched = x[:, 0, -3:-1, -3:-1].min(axis=(1, 2)) > 0.9
        logits[patched, 0] = logits[patched].max(axis=1) + 1.0
        return logits.astype(np.float32)


def _two_mode_set(seed: int, poison: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, _RuleModel]:
    """Five classes of 8x8 images (a bright row per class); class 0 comes in two strong modes (its bright
    row on the left or the right half), and 12 stamped images of classes 1-4 are labelled 0."""
    rng = np.random.default_rng(seed)
    templates = np.full((5, 1, 8, 8), 0.2, np.float32)
    for c in range(5):
        templates[c, 0, c + 1] = 0.8
    xs, ys = [], []
    for c in range(5):
        x = templates[c] + rng.normal(0, 0.05, size=(120, 1, 8, 8)).astype(np.float32)
        if c == 0:
            x[:60, 0, 1, 4:] = 0.2  # mode A: left half of the row
            x[60:, 0, 1, :4] = 0.2  # mode B: right half
        xs.append(x)
        ys.append(np.full(120, c))
    x, y = np.concatenate(xs).clip(0, 1), np.concatenate(ys)
    rows = np.empty(0, np.int64)
    if poison:
        rows = rng.choice(np.flatnonzero(y > 0), size=24, replace=False)
        x[rows, :, -3:-1, -3:-1] = 1.0
        y[rows] = 0
    return x, y, rows, _RuleModel(templates)


def test_a_trigger_group_inside_one_mode_is_found_by_splitting_again():
    x, y, rows, model = _two_mode_set(0, poison=True)
    f = scan_training_data(y, x=x, model=model, min_class_size=20, seed=0).finding(0)
    # the first split is the two modes (the patch group sits inside one of them); the second finds it
    assert f.chosen_by == "trigger (sub-group)" and f.trigger_success.rate > 0.9
    assert f.trigger_p < SIGNIFICANCE / 5
    # the suspects are the rows carrying the recovered patch, wherever the splits put them
    assert set(f.suspects.tolist()) == set(rows.tolist())
    x, y, _, model = _two_mode_set(0, poison=False)
    clean = scan_training_data(y, x=x, model=model, min_class_size=20, seed=0)
    # the clean classes' own patterns (their bright rows) move some inputs, but none more than the others
    assert all(g.trigger_p is None or g.trigger_p > SIGNIFICANCE / 5 for g in clean.classes)
    assert not clean.finding(0).chosen_by.startswith("trigger")


def _all_to_all(seed: int, poison: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ten classes of 8x8 images (a bright row or column per class, noise), 100 each; an out-of-sample
    classifier confuses 3% of them at random; with ``poison``, 3 images of every class carry a white
    2x2 corner patch and are labelled ``c + 1`` (all-to-all), which the classifier still calls ``c``."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in range(K):
        x = rng.uniform(0.0, 0.3, size=(100, 1, 8, 8)).astype(np.float32)
        if c < 8:
            x[:, 0, c] += 0.6
        else:
            x[:, 0, :, c - 6] += 0.6
        xs.append(x)
        ys.append(np.full(100, c))
    x, y = np.concatenate(xs).clip(0, 1), np.concatenate(ys)
    pred = y.copy()
    confused = rng.random(len(y)) < 0.03
    pred[confused] = (y[confused] + rng.integers(1, K, confused.sum())) % K
    rows = np.empty(0, np.int64)
    if poison:
        rows = np.concatenate(
            [rng.choice(np.flatnonzero((y == c) & ~confused), 3, replace=False) for c in range(K)]
        )
        x[rows, :, -3:-1, -3:-1] = 1.0
        y[rows] = (y[rows] + 1) % K
    return x, y, pred, rows


@pytest.mark.parametrize("seed", range(3))
def test_one_trigger_across_classes_is_found_among_the_disagreements(seed):
    """All-to-all at 3% of the set (3 per class): the patch's carriers are exactly the poisoned rows, and
    the held-out carriers disagree with their labels far beyond the base rate; ordinary confusion
    proposes no pattern its carriers share."""
    from roadworthy.backdoor.pooled import pooled_trigger

    x, y, pred, rows = _all_to_all(seed, poison=True)
    found = pooled_trigger(x, y, pred, seed=0)
    assert found is not None and found.p_value < SIGNIFICANCE / (found.n_tested * K)
    assert set(found.carriers.tolist()) == set(rows.tolist())
    assert len(found.classes) == K and found.held_out_disagreeing >= 0.8 * found.held_out
    x, y, pred, _ = _all_to_all(seed, poison=False)
    clean = pooled_trigger(x, y, pred, seed=0)
    assert clean is None or clean.p_value > SIGNIFICANCE / (clean.n_tested * K)


def test_pattern_distance_reads_rows_in_chunks():
    """Chunked and row-selected distances equal the direct computation over the whole batch."""
    from roadworthy.backdoor.clusters import pattern_distance

    rng = np.random.default_rng(0)
    x = rng.random((23, 3, 6, 6)).astype(np.float32)
    mask = np.zeros((1, 6, 6), np.float32)
    mask[0, 1:3, 2:5] = 1
    pattern = rng.random((3, 6, 6)).astype(np.float32) * mask
    m = mask[0] > 0
    direct = np.abs(x[:, :, m] - pattern[:, m][None]).max(axis=1).mean(axis=1)
    assert np.allclose(pattern_distance(x, mask, pattern, chunk=4), direct)
    rows = np.array([20, 3, 7])
    assert np.allclose(pattern_distance(x, mask, pattern, rows=rows, chunk=2), direct[rows])
    assert np.isinf(pattern_distance(x, mask * 0, pattern, rows=rows)).all()


def test_pooled_search_stays_inside_its_rows():
    """Rows left out (e.g. classes already named) are neither searched nor returned as carriers."""
    from roadworthy.backdoor.pooled import pooled_trigger

    x, y, pred, poisoned = _all_to_all(0, poison=True)
    keep = np.flatnonzero(y != 5)
    found = pooled_trigger(x, y, pred, seed=0, rows=keep)
    assert found is not None and 5 not in found.classes
    assert set(found.carriers.tolist()) == set(poisoned.tolist()) - set(np.flatnonzero(y == 5).tolist())
