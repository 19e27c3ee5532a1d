"""Evasion attacks on tabular models that stay inside the table's feature schema.

Threat model (NIST AI 100-2, evasion at deployment): an attacker who may edit a row's *mutable* columns
before it reaches the model, by at most ``eps`` standard deviations per numeric feature (L-inf in
standardised units) and one categorical or binary column, and only to values a real row could hold:
integers stay whole, categories stay observed levels, values stay in the observed range, immutable columns
(age, country: the schema says which) are never touched. Every candidate row goes through
:meth:`roadworthy.schema.Schema.project` and :func:`project_ball`.

Two attacks for any model (no gradients needed), and one for differentiable models:

- :func:`score_attack` (score-based black-box): a random search on the true class's margin, in the spirit
  of SimBA (Guo et al., ICML 2019) and Square (Andriushchenko et al., ECCV 2020): propose a corner of the
  eps-box on a random subset of features, keep it when the true class's probability margin drops.
- :func:`boundary_attack` (decision-based black-box, labels only): the minimum-norm attack of HopSkipJump
  (Chen, Jordan, Wainwright, S&P 2020) and the Boundary Attack (Brendel et al., ICLR 2018) reduced to what
  a schema allows: start from the nearest row the model puts in another class, binary-search the segment
  towards the input (each point projected), then reset features to the input's values one at a time while
  the label stays wrong. It returns the smallest standardised L-inf distance that flips each row, so one
  run answers every budget.
- :func:`pgd_attack` (white-box, gradients): Projected Gradient Descent (Madry et al., ICLR 2018) in
  standardised L-inf units on the mutable numeric features. The iterate itself moves freely inside the
  eps-box and the observed range; the row the model is shown (and that is reported) is that iterate
  through :func:`project_ball`, so integers are whole and categories valid at every step, and the gradient
  is taken at that valid row. A gradient on a level's code means little (a model may one-hot encode it,
  where the gradient is zero), so categorical and binary columns move by a greedy discrete step instead:
  after every gradient step each row tries single-column level changes (all of them, or the
  ``category_candidates`` that the gradient's first-order estimate ranks highest) and keeps the one that
  raises the loss most (the "coordinate greedy" search of Kantchelian et al., ICML 2016, for discrete
  features), so the attack can move a row to another valid level, one column at most.

Use from Python::

    from roadworthy.attacks.tabular import score_attack, boundary_attack
    out = score_attack(model.predict_proba, x, y, schema, eps=0.5, rng=np.random.default_rng(0))
    out.adversarial, out.success, out.queries
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from roadworthy.schema import Schema

__all__ = [
    "TabularAttack",
    "boundary_attack",
    "linf_distance",
    "pgd_attack",
    "project_ball",
    "score_attack",
]

Scores = Callable[[np.ndarray], np.ndarray]  # rows -> class probabilities (N, K)


@dataclass(frozen=True)
class TabularAttack:
    """What an attack found.

    Attributes
    ----------
    adversarial
        The attacked rows (the input where nothing was found), on the schema's domain.
    success
        True where the model's label differs from the true label on the attacked row.
    distance
        Standardised L-inf distance of each attacked row to its input (``inf`` where nothing was found).
    queries
        Model queries spent on each row.
    """

    adversarial: np.ndarray
    success: np.ndarray
    distance: np.ndarray
    queries: np.ndarray


def linf_distance(a: np.ndarray, b: np.ndarray, schema: Schema) -> np.ndarray:
    """Largest change of a numeric feature, in standard deviations, per row (categories count 0)."""
    cols = schema.indices("continuous", "integer", mutable=False)
    if not len(cols):
        return np.zeros(len(a))
    return np.max(np.abs(a[:, cols] - b[:, cols]) / schema.std[cols], axis=1)


def category_units(schema: Schema) -> list[np.ndarray]:
    """The mutable categorical "columns" an attack may change, one at most per row: each one-hot group
    (its binary columns together) and every other mutable binary or categorical column alone."""
    grouped = {j for g in schema.groups for j in g}
    immutable = schema.immutable
    units = [np.asarray(g, np.int64) for g in schema.groups if not immutable[list(g)].any()]
    units += [np.array([j]) for j in schema.indices("binary", "categorical") if int(j) not in grouped]
    return units


def changed_units(a: np.ndarray, x: np.ndarray, units: list[np.ndarray]) -> np.ndarray:
    """``(N, U)``: whether row ``a`` differs from ``x`` in each categorical unit."""
    if not units:
        return np.zeros((len(a), 0), bool)
    return np.stack([np.any(a[:, u] != x[:, u], axis=1) for u in units], axis=1)


def project_ball(x_adv: np.ndarray, x: np.ndarray, eps: float | np.ndarray, schema: Schema) -> np.ndarray:
    """``x_adv`` onto the schema's domain and within ``eps`` standard deviations of ``x`` per numeric feature.

    Integer features are rounded towards ``x`` when rounding would leave the ball; immutable columns are
    those of ``x``; at most one categorical or binary column per row keeps its change (the first one).
    """
    eps = np.broadcast_to(np.asarray(eps, np.float64), (len(x),))[:, None]
    std = schema.std[None, :]
    # the eps-box holds numeric columns only: a categorical or binary column may take any valid level
    num = schema.indices("continuous", "integer", mutable=False)
    ball = np.array(x_adv, np.float64, copy=True)
    ball[:, num] = np.clip(ball[:, num], (x - eps * std)[:, num], (x + eps * std)[:, num])
    out = schema.project(ball, x, keep_range=False)
    # the observed range, widened to hold the input itself (an input may already lie outside it)
    out = np.clip(out, np.minimum(schema.low[None, :], x), np.maximum(schema.high[None, :], x))
    kept = ball == x  # a cell the attacker left alone stays as it was, even off the schema's levels
    out[kept] = x[kept]
    ints = schema.indices("integer")
    if len(ints):
        d = out[:, ints] - x[:, ints]
        limit = np.floor(eps * std[:, ints] + 1e-9)
        out[:, ints] = x[:, ints] + np.clip(d, -limit, limit)
    units = category_units(schema)
    for u in units:  # a one-hot group left half-changed (a cell reset to the input above) goes back
        if len(u) > 1:
            broken = np.flatnonzero(~_one_hot_rows(out[:, u]) & _one_hot_rows(x[:, u]))
            out[np.ix_(broken, u)] = x[np.ix_(broken, u)]
    if len(units) > 1:  # one categorical change per row: the first changed unit keeps it
        later = np.cumsum(changed_units(out, x, units), axis=1) > 1
        for k, u in enumerate(units):
            rows = np.flatnonzero(later[:, k])
            out[np.ix_(rows, u)] = x[np.ix_(rows, u)]
    return out.astype(np.float32)


def _one_hot_rows(block: np.ndarray) -> np.ndarray:
    return np.all((block == 0) | (block == 1), axis=1) & (block.sum(axis=1) == 1)


def _margin(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    true = probs[np.arange(len(y)), y]
    other = probs.copy()
    other[np.arange(len(y)), y] = -np.inf
    return true - other.max(axis=1)


def score_attack(
    scores: Scores,
    x: np.ndarray,
    y: np.ndarray,
    schema: Schema,
    eps: float,
    rng: np.random.Generator,
    steps: int = 100,
    p_features: float = 0.3,
) -> TabularAttack:
    """Random search on the true class's probability margin within ``eps`` standard deviations.

    Parameters
    ----------
    scores
        The model's class probabilities for a batch of rows.
    x, y
        Rows ``(N, D)`` and their true labels.
    schema
        The table's feature schema (the attack's domain).
    eps
        Budget: the largest change of a numeric feature, in its standard deviations.
    rng
        Every random choice comes from it.
    steps
        Proposals per row (one model query each, plus one for the start).
    p_features
        Share of the mutable numeric features a proposal changes (at least one).
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y)
    num = schema.indices("continuous", "integer")
    units = category_units(schema)
    std = schema.std
    best = x.copy()
    probs = scores(best)
    margin = _margin(probs, y)
    queries = np.ones(len(x), np.int64)
    for _ in range(steps):
        alive = np.flatnonzero(margin > 0)
        if not alive.size:
            break
        cand = best[alive].copy()
        if len(num):
            pick = rng.random((alive.size, len(num))) < p_features
            pick[np.arange(alive.size), rng.integers(0, len(num), alive.size)] = True
            corner = x[alive][:, num] + rng.choice([-1.0, 1.0], (alive.size, len(num))) * eps * std[num]
            block = cand[:, num]
            block[pick] = corner[pick]
            cand[:, num] = block
        if units and rng.random() < 0.3:
            for r, k in enumerate(rng.integers(0, len(units), alive.size)):
                u = units[k]
                if len(u) > 1:  # a one-hot group: another member becomes the 1
                    cand[r, u] = 0.0
                    cand[r, u[rng.integers(0, len(u))]] = 1.0
                else:
                    cand[r, u[0]] = rng.choice(np.asarray(schema.features[u[0]].levels, np.float32))
        cand = project_ball(cand, x[alive], eps, schema)
        m = _margin(scores(cand), y[alive])
        queries[alive] += 1
        better = m < margin[alive]
        best[alive[better]] = cand[better]
        margin[alive[better]] = m[better]
    success = margin < 0
    distance = np.where(success, linf_distance(best, x, schema), np.inf)
    return TabularAttack(best, success, distance, queries)


def boundary_attack(
    scores: Scores,
    x: np.ndarray,
    y: np.ndarray,
    schema: Schema,
    pool: np.ndarray,
    rng: np.random.Generator,
    search_steps: int = 12,
    reset_rounds: int = 2,
) -> TabularAttack:
    """The smallest schema-respecting change found that flips each row's label (labels only).

    Parameters
    ----------
    scores
        The model's class probabilities; only their argmax (the label) is used.
    x, y
        Rows ``(N, D)`` and their true labels.
    schema
        The table's feature schema.
    pool
        Candidate starting rows (e.g. the evaluation data); for each input the nearest pool row (standardised
        L2 over the mutable columns) that the model labels otherwise, with the input's immutable columns, is
        the start. A row without such a start is reported as not attacked (distance ``inf``).
    rng
        Randomness (the order features are reset in).
    search_steps
        Binary-search steps along the segment from the start to the input.
    reset_rounds
        Passes that set features back to the input's values while the label stays wrong.
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y)
    n = len(x)
    labels = lambda rows: scores(rows).argmax(axis=1)  # noqa: E731
    queries = np.zeros(n, np.int64)
    pool = np.asarray(pool, np.float32)
    pool_labels = labels(pool)
    adv = x.copy()
    found = np.zeros(n, bool)
    mut = schema.indices()
    z = lambda a: (a[:, mut] - schema.mean[mut]) / schema.std[mut]  # noqa: E731
    zp = z(pool)
    for i in range(n):
        other = np.flatnonzero(pool_labels != y[i])
        if not other.size:
            continue
        d = np.linalg.norm(zp[other] - z(x[i : i + 1]), axis=1)
        for k in other[np.argsort(d)[:3]]:  # the nearest starts: projection may land some in y's class
            start = schema.project(pool[k : k + 1].copy(), x[i : i + 1])
            queries[i] += 1
            if labels(start)[0] != y[i]:
                adv[i], found[i] = start[0], True
                break
    rows = np.flatnonzero(found)
    if rows.size:
        lo = np.zeros(rows.size)  # fraction of the way from the input (0) to the start (1): adversarial at hi
        hi = np.ones(rows.size)
        start = adv[rows].copy()
        for _ in range(search_steps):
            mid = (lo + hi) / 2
            cand = schema.project(x[rows] + mid[:, None] * (start - x[rows]), x[rows])
            wrong = labels(cand) != y[rows]
            queries[rows] += 1
            hi = np.where(wrong, mid, hi)
            lo = np.where(wrong, lo, mid)
        adv[rows] = schema.project(x[rows] + hi[:, None] * (start - x[rows]), x[rows])
        for _ in range(reset_rounds):
            grouped = {j for g in schema.groups for j in g}
            resets = [np.array([j]) for j in mut if int(j) not in grouped]  # a one-hot group resets whole
            resets += [u for u in category_units(schema) if len(u) > 1]
            for k in rng.permutation(len(resets)):
                j = resets[k]
                cand = adv[rows].copy()
                moved = np.any(cand[:, j] != x[rows][:, j], axis=1)
                if not moved.any():
                    continue
                cand[:, j] = x[rows][:, j]
                keep = (labels(cand) != y[rows]) & moved
                queries[rows] += 1
                adv[rows[keep]] = cand[keep]
    success = labels(adv) != y
    distance = np.where(success, linf_distance(adv, x, schema), np.inf)
    return TabularAttack(adv.astype(np.float32), success, distance, queries)


def pgd_attack(
    forward: Callable[..., object],
    x: np.ndarray,
    y: np.ndarray,
    schema: Schema,
    eps: float,
    rng: np.random.Generator,
    steps: int = 20,
    step_size: float | None = None,
    device: str = "cpu",
    categories: bool = True,
    category_candidates: int = 8,
) -> TabularAttack:
    """PGD within ``eps`` standard deviations per mutable numeric feature, every shown row on the schema.

    Parameters
    ----------
    forward
        The model's differentiable ``forward(x: torch.Tensor) -> logits`` (a white-box model's
        ``forward_torch``), on float32 rows ``(N, D)``.
    x, y
        Rows ``(N, D)`` and their true labels.
    schema
        The table's feature schema (the attack's domain).
    eps
        Budget: the largest change of a numeric feature, in its standard deviations.
    rng
        Draws the random start (uniform in the eps-box).
    steps
        Gradient steps; each is one forward and backward pass on the rows not yet fooled.
    step_size
        In standard deviations; defaults to ``2.5 * eps / steps`` (Madry et al.).
    device
        Where ``forward`` runs.
    categories
        Also move categorical and binary columns by the greedy discrete step (one column per row at most,
        valid levels only); False leaves them as they are.
    category_candidates
        Level changes evaluated per row and step when there are more (ranked by the gradient's first-order
        estimate of the loss they add); the row's current choice is always among them.

    Returns
    -------
    TabularAttack
        ``adversarial`` holds, per row, the first projected iterate the model misclassified (the input
        where none was); ``queries`` counts forward passes per row (each evaluated level change counts
        one).
    """
    import torch

    from roadworthy.attacks._losses import input_gradient

    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int64)
    n, d = x.shape
    num = schema.indices("continuous", "integer")
    std = np.where(schema.std > 0, schema.std, 1.0)
    alpha = 2.5 * eps / max(1, steps) if step_size is None else float(step_size)
    lo = np.minimum(schema.low[None, :], x)  # the observed range, widened to hold the input
    hi = np.maximum(schema.high[None, :], x)
    move = np.zeros(d, bool)
    move[num] = True
    best = x.copy()
    success = np.zeros(n, bool)
    queries = np.zeros(n, np.int64)
    cands = _level_changes(schema)  # (columns, values): every single-unit level change
    cats = np.array(sorted({int(j) for cols, _ in cands for j in cols}), np.int64)
    z = x.astype(np.float64)
    if len(num):  # random start inside the box
        z[:, num] += rng.uniform(-eps, eps, (n, len(num))) * std[num]
    for t in range(steps + 1):
        alive = np.flatnonzero(~success)
        if not alive.size:
            break
        shown = project_ball(z[alive], x[alive], eps, schema)
        xt = torch.from_numpy(np.ascontiguousarray(shown)).to(device)
        yt = torch.from_numpy(y[alive]).to(device)
        grad, logits, _ = input_gradient(forward, xt, yt, "ce")  # type: ignore[arg-type]
        queries[alive] += 1
        fooled = logits.argmax(dim=1).cpu().numpy() != y[alive]
        best[alive[fooled]] = shown[fooled]
        success[alive[fooled]] = True
        if t == steps or not len(num):
            break
        keep = alive[~fooled]
        g = grad.double().cpu().numpy()[~fooled]
        step = np.where(move[None, :], np.sign(g) * alpha * std[None, :], 0.0)
        z[keep] = np.clip(z[keep] + step, x[keep] - eps * std, x[keep] + eps * std)
        z[keep] = np.clip(z[keep], lo[keep], hi[keep])
        if categories and len(cats) and keep.size:
            z[keep], spent = _category_step(
                forward,
                z[keep],
                x[keep],
                y[keep],
                g,
                shown[~fooled],
                eps,
                schema,
                cands,
                category_candidates,
                device,
            )
            queries[keep] += spent
    distance = np.where(success, linf_distance(best, x, schema), np.inf)
    return TabularAttack(best, success, distance, queries)


def _category_step(
    forward: Callable[..., object],
    z: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    grad: np.ndarray,
    shown: np.ndarray,
    eps: float,
    schema: Schema,
    cands: list[tuple[np.ndarray, np.ndarray]],
    k: int,
    device: str,
) -> tuple[np.ndarray, int]:
    """One greedy discrete step of :func:`pgd_attack`: per row, the single level change (or none) with the
    highest margin loss at the row's numeric iterate ``z``; returns the new iterate and queries per row.

    Candidates per row: its current categorical choice, every level change when there are at most ``k``,
    else the ``k`` whose first-order estimate ``grad[j] * (level - shown[j])`` is highest.
    """
    import torch

    cats = np.array(sorted({int(j) for cols, _ in cands for j in cols}), np.int64)
    n = len(z)
    if len(cands) > k:
        gain = np.stack(
            [(grad[:, cols] * (vals[None, :] - shown[:, cols])).sum(axis=1) for cols, vals in cands], axis=1
        )
        top = np.argsort(-gain, axis=1, kind="stable")[:, :k]
    else:
        top = np.broadcast_to(np.arange(len(cands)), (n, len(cands)))
    m = top.shape[1] + 1
    rows = np.repeat(z[:, None, :], m, axis=1)  # candidate 0: the row's current choice
    reset = rows[:, 1:, :]
    reset[:, :, cats] = x[:, None, cats]
    for pos in range(m - 1):
        for c in np.unique(top[:, pos]):
            cols, vals = cands[c]
            rr = np.flatnonzero(top[:, pos] == c)
            reset[np.ix_(rr, [pos], cols)] = vals[None, None, :]
    flat = project_ball(rows.reshape(n * m, -1), np.repeat(x, m, axis=0), eps, schema)
    with torch.no_grad():
        logits = forward(torch.from_numpy(np.ascontiguousarray(flat)).to(device))
        logits = logits.detach().double().cpu().numpy().reshape(n, m, -1)  # type: ignore[attr-defined]
    true = np.take_along_axis(logits, np.broadcast_to(y[:, None, None], (n, m, 1)), axis=2)[..., 0]
    other = logits.copy()
    np.put_along_axis(other, np.broadcast_to(y[:, None, None], (n, m, 1)), -np.inf, axis=2)
    loss = other.max(axis=2) - true  # > 0: misclassified
    pick = loss.argmax(axis=1)
    out = z.copy()
    out[:, cats] = rows[np.arange(n), pick][:, cats]
    return out, m


def _level_changes(schema: Schema) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every level a categorical unit may take, as (columns, values): a single column's levels, or a
    one-hot group with one member set."""
    out = []
    for u in category_units(schema):
        if len(u) > 1:
            out += [(u, np.eye(len(u))[i]) for i in range(len(u))]
        else:
            out += [(u, np.array([v])) for v in schema.features[int(u[0])].levels]
    return out
