"""Data-level backdoor scan: per class, a score, the method that raised it, and the suspects ranked.

Activation clustering (Chen et al., "Detecting Backdoor Attacks on Deep Neural Networks by Activation
Clustering", 2018) splits every class in two and asks whether one part is poison. Its published cluster
analysis assumes the poison is the *smaller* cluster and, in the label-flip form, that it looks like
one other class; a source-agnostic trigger (BadNets: samples of every other class, relabelled) breaks
both, and at 8% poisoning of a 10-class set the poison is 45% of its class. Here:

* the split and its strength come from the untangling statistic (:mod:`~roadworthy.backdoor.spectral`,
  SCAn), computed under the *other* classes' covariance, in every view given: the model's penultimate
  features and the inputs themselves (a patch trigger is a strong, simple input pattern);
* which of the two groups is the poison is decided by evidence about the group, not its size:
  (1) when a model is given, each group's common input pattern
  (:func:`~roadworthy.backdoor.confirm.common_pattern`) is pasted on clean inputs of the other classes
  and the group whose pattern sends significantly more of them to the class than the other group's
  pattern is the poison; the same pattern is then tested against the null of every *other* class's
  group pattern (:attr:`ClassFinding.trigger_p`, a one-sided binomial test), which *confirms* the backdoor
  without a fixed success cut: at 2% poisoning a pasted group pattern may reach only 30-50% success,
  while clean classes' group patterns (shared shapes, not stamps) reach a few percent;
  (2) otherwise the group whose members look like other classes in the input view is the poison: a
  member is *foreign* when another class's mean input is nearer to it than its own group's mean (a
  clean group is nearer its own mean; poison drawn from many classes is a blur whose mean is nearer
  to none of them);
* for targeted label flips the group's resemblance to *one* other class is kept (the classic heuristic).

No verdict is given: every class gets a score (robust z across classes; suggested cut
:data:`~roadworthy.backdoor.spectral.SCORE_THRESHOLD`) and, where measured, its trigger's attack success
and the p-value of the trigger test (level :data:`SIGNIFICANCE`, Bonferroni over the classes); the
policy decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from roadworthy.backdoor.confirm import AttackSuccess, attack_success, common_pattern
from roadworthy.backdoor.spectral import SCORE_THRESHOLD, Untangled, class_scores, untangle
from roadworthy.errors import InvalidInputError

#: Least attack success (lower end of its 95% interval) of a group's pasted common pattern for the
#: group to count as trigger-carrying: clean classes' group patterns reached at most 0.07 on the
#: benchmark's clean twins, pasted BadNets groups at 2% poisoning 0.3 and more.
MIN_TRIGGER_SUCCESS = 0.2


@dataclass
class ClassFinding:
    """What the scan found in one class.

    Attributes
    ----------
    label, n
        The class and its number of training samples.
    score, method
        The class score (largest robust z of the untangling statistic over the views) and the method
        and view that raised it, e.g. ``"untangling (inputs)"``.
    scores, statistics
        Per view: the score and the raw untangling statistic ``J``.
    suspects
        Training rows of the suspect group, most suspicious first (by the signed discriminant score).
        When the group's common pattern works as a trigger: every member of the class that carries
        it (see :func:`pattern_distance` and :data:`CARRIER_DISTANCE`), wherever the split put it.
    suspect_scores
        Their discriminant scores (the group centres sit at +-0.5; larger is more poison-like); for
        trigger carriers, 0.5 minus the distance to the pattern.
    relative_size
        Suspect group size / class size.
    chosen_by
        How the suspect group was told from the rest of the class: ``"trigger"`` (its common pattern
        works as a trigger), ``"foreign"`` (its members look like other classes), or ``"smaller"``.
    foreign_share
        Share of the suspect group nearer (input view) to another class's mean than to the group's own mean.
    resembles, resemblance
        The other class the suspect group most resembles and the share of the group that does (a
        targeted label flip resembles one class; a source-agnostic trigger spreads over many).
    trigger
        ``(mask, pattern)`` common to the suspect group, when a model was given and a pattern exists.
    trigger_success
        Attack success of ``trigger`` on clean inputs of the other classes (None when not measured).
    trigger_null, trigger_p
        The null for ``trigger_success``: the highest attack success that another class's suspect group
        reached towards *its* class with *its* common pattern in the same model (most classes are clean,
        and their sub-groups' shared shapes are what a pattern achieves without a trigger), and the
        one-sided binomial p-value of this group's hits under that rate (None when not measured). The
        p-value is to be compared with ``SIGNIFICANCE / number of classes``.
    foreign_null, foreign_p
        The null for ``foreign_share``: the largest foreign share among the other classes' suspect groups
        (a clean class's sub-group can look like its neighbours too: road signs share shapes and
        colours), and the one-sided binomial p-value of this group's foreign count under that share
        (None without inputs).
    """

    label: int
    n: int
    score: float
    method: str
    scores: dict[str, float]
    statistics: dict[str, float]
    suspects: np.ndarray
    suspect_scores: np.ndarray
    relative_size: float
    chosen_by: str
    foreign_share: float
    resembles: int
    resemblance: float
    trigger: tuple[np.ndarray, np.ndarray] | None = None
    trigger_success: AttackSuccess | None = None
    trigger_null: float | None = None
    trigger_p: float | None = None
    foreign_null: float | None = None
    foreign_p: float | None = None


@dataclass
class PoisoningScan:
    """Per-class findings of :func:`scan_training_data`, in class order."""

    classes: list[ClassFinding]
    views: list[str]
    n_samples: int
    params: dict[str, Any] = field(default_factory=dict)

    def finding(self, label: int) -> ClassFinding:
        """The finding for class ``label``."""
        for f in self.classes:
            if f.label == label:
                return f
        raise KeyError(label)

    def flagged(self, threshold: float = SCORE_THRESHOLD, min_success: float | None = None) -> list[int]:
        """Classes whose score is at least ``threshold`` (and, with ``min_success``, whose trigger works),
        highest score first."""
        out = [
            f
            for f in self.classes
            if f.score >= threshold
            and (
                min_success is None
                or (f.trigger_success is not None and f.trigger_success.rate >= min_success)
            )
        ]
        return [f.label for f in sorted(out, key=lambda f: -f.score)]

    def suspects(self, threshold: float = SCORE_THRESHOLD, min_success: float | None = None) -> np.ndarray:
        """Training rows of the suspect groups of the flagged classes, most suspicious class first."""
        rows = [self.finding(c).suspects for c in self.flagged(threshold, min_success)]
        return np.concatenate(rows) if rows else np.empty(0, np.int64)

    def evidence(self, class_names: list[str] | None = None) -> list[dict[str, Any]]:
        """Report evidence: class scores per view, and the suspect class's common trigger (when found)."""
        from roadworthy import evidence

        names = [class_names[f.label] if class_names else str(f.label) for f in self.classes]
        items = [
            evidence.bars(
                "Untangling score per class (robust z of SCAn's statistic; above the line: suspect)",
                names,
                {v: [f.scores.get(v, float("nan")) for f in self.classes] for v in self.views},
                "robust z",
                hline=SCORE_THRESHOLD,
            )
        ]
        top = max(self.classes, key=lambda f: f.score)
        if top.trigger is not None and top.trigger_success is not None:
            mask, pattern = top.trigger
            name = class_names[top.label] if class_names else str(top.label)
            items.append(
                evidence.image(
                    f"Pattern shared by class {name}'s suspect group (attack success when pasted on other "
                    f"classes: {top.trigger_success.rate:.1%} of {top.trigger_success.n})",
                    mask * pattern,
                )
            )
        return items


def input_view(x: np.ndarray, max_side: int = 16) -> np.ndarray:
    """Inputs flattened; images area-averaged to at most ``max_side`` px per side (a pixel-unit view)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4:
        return x.reshape(len(x), -1)
    n, c, h, w = x.shape
    fh, fw = max(1, int(np.ceil(h / max_side))), max(1, int(np.ceil(w / max_side)))
    hh, ww = h // fh, w // fw
    if fh > 1 or fw > 1:
        x = x[:, :, : hh * fh, : ww * fw].reshape(n, c, hh, fh, ww, fw).mean(axis=(3, 5))
    return x.reshape(n, -1)


def reduce(z: np.ndarray, max_dims: int, seed: int, standardise: bool) -> np.ndarray:
    """Centred (and, with ``standardise``, unit-variance per column) ``z`` on at most ``max_dims`` principal axes."""
    z = np.asarray(z, dtype=np.float64)
    z = z - z.mean(axis=0)
    if standardise:
        sd = z.std(axis=0)
        sd[sd == 0] = 1.0
        z = z / sd
    if z.shape[1] > max_dims and len(z) > max_dims:
        from sklearn.decomposition import PCA

        z = PCA(n_components=max_dims, svd_solver="randomized", random_state=seed).fit_transform(z)
    return z


def scan_training_data(
    y: np.ndarray,
    features: np.ndarray | None = None,
    x: np.ndarray | None = None,
    model: Any = None,
    max_dims: int = 32,
    min_class_size: int = 20,
    max_confirm: int = 500,
    seed: int = 0,
    min_success: float = MIN_TRIGGER_SUCCESS,
) -> PoisoningScan:
    """Scan every class of a training set for a poisoned group; score classes, rank suspects.

    Parameters
    ----------
    y
        Training labels (N,).
    features
        The model's penultimate features of the training inputs (N, F), optional.
    x
        The training inputs (N, ...), optional; images give the input view and let suspect groups be
        told apart by their content.
    model
        The model, optional: when given with image inputs ``x``, each class's groups are confirmed by
        pasting their common pattern on up to ``max_confirm`` training inputs of the other classes.
    max_dims
        Principal axes kept per view.
    min_class_size
        Classes with fewer samples are not scanned.
    seed
        Seeds PCA and 2-means.
    min_success
        A group is told from the rest of its class by its common pattern only when that pattern, pasted
        on other classes' inputs, sends at least this share of them to the class (lower end of the 95%
        interval; default :data:`MIN_TRIGGER_SUCCESS`) -- a weak shared shape is not a trigger, and the
        group is then chosen by the other evidence.

    Returns
    -------
    PoisoningScan
        One :class:`ClassFinding` per scanned class.
    """
    y = np.asarray(y).astype(np.int64)
    if features is None and x is None:
        raise InvalidInputError(
            "scan_training_data: give `features` (the model's embeddings) and/or `x` (inputs)."
        )
    views: dict[str, np.ndarray] = {}
    if features is not None:
        f = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
        if len(f) != len(y):
            raise InvalidInputError(f"scan_training_data: `features` has {len(f)} rows, `y` {len(y)}.")
        views["features"] = reduce(f, max_dims, seed, standardise=True)
    xin = None
    if x is not None:
        if len(x) != len(y):
            raise InvalidInputError(f"scan_training_data: `x` has {len(x)} rows, `y` {len(y)}.")
        xin = input_view(x)
        views["inputs"] = reduce(xin, max_dims, seed, standardise=np.asarray(x).ndim != 4)
    counts = np.bincount(y)
    labels = [int(c) for c in np.flatnonzero(counts >= min_class_size)]
    if len(labels) < 3:
        raise InvalidInputError(
            f"scan_training_data: needs at least 3 classes with {min_class_size}+ samples. Got {len(labels)}."
        )
    splits: dict[str, list[Untangled]] = {
        v: [untangle(z, y, c, seed=seed) for c in labels] for v, z in views.items()
    }
    scores = {v: class_scores(np.array([u.statistic for u in s])) for v, s in splits.items()}
    images = x is not None and np.asarray(x).ndim == 4
    x_arr = np.asarray(x, dtype=np.float32) if images else None
    rng = np.random.default_rng(seed)
    findings = []
    for i in range(len(labels)):
        view = max(views, key=lambda v: scores[v][i])
        u = splits[view][i]
        z_view, c = views[view], labels[i]
        finding = _attribute(
            u,
            y,
            xin,
            x_arr,
            model,
            max_confirm,
            rng,
            n_tests=len(labels),
            min_success=min_success,
            resplit=lambda rows, z_view=z_view, c=c: untangle(z_view, y, c, seed=seed, rows=rows),
        )
        finding.score = float(scores[view][i])
        finding.method = f"untangling ({view})"
        finding.scores = {v: float(scores[v][i]) for v in views}
        finding.statistics = {v: float(splits[v][i].statistic) for v in views}
        findings.append(finding)
    _trigger_tests(findings)
    if xin is not None:
        _foreign_tests(findings)
    return PoisoningScan(
        classes=findings,
        views=list(views),
        n_samples=len(y),
        params={
            "max_dims": max_dims,
            "min_class_size": min_class_size,
            "max_confirm": max_confirm,
            "seed": seed,
        },
    )


#: Family-wise significance level of the null-distribution tests over the classes of one scan: a test's
#: p-value is compared with ``SIGNIFICANCE / number of classes`` (Bonferroni).
SIGNIFICANCE = 0.01


def _trigger_tests(findings: list[ClassFinding]) -> None:
    """Test every measured trigger against the other classes' (see :attr:`ClassFinding.trigger_p`).

    A class whose suspect group had no common pattern (an empty mask) counts as 0 hits: no pattern,
    no trigger.
    """
    tried = [f for f in findings if f.trigger_success is not None]
    if not tried:
        return
    n_pool = max(f.trigger_success.n for f in tried)  # type: ignore[union-attr]
    for f in tried:
        others = [
            (g.trigger_success.hits, g.trigger_success.n) if g.trigger_success is not None else (0, n_pool)
            for g in findings
            if g is not f
        ]
        if not others:
            continue
        hits, n = max(others, key=lambda hn: null_rate(*hn))
        f.trigger_null = hits / max(1, n)
        f.trigger_p = binomial_p(f.trigger_success.hits, f.trigger_success.n, null_rate(hits, n))  # type: ignore[union-attr]


def _foreign_tests(findings: list[ClassFinding]) -> None:
    """Test every group's foreign share against the other classes' groups' (see ``foreign_p``)."""
    counts = [(round(f.foreign_share * len(f.suspects)), len(f.suspects)) for f in findings]
    for i, f in enumerate(findings):
        others = [hn for j, hn in enumerate(counts) if j != i and hn[1] > 0]
        if not others:
            continue
        hits, n = max(others, key=lambda hn: null_rate(*hn))
        f.foreign_null = hits / n
        f.foreign_p = binomial_p(counts[i][0], counts[i][1], null_rate(hits, n))


def null_rate(hits: int, n: int) -> float:
    """A conservative null rate from ``hits`` of ``n``: the upper end of its 95% Wilson interval (the
    null is itself a measurement; a null that never fired in ``n`` trials is still about ``3.8 / n``)."""
    from roadworthy.stats import wilson_interval

    return float(wilson_interval(hits, max(1, n))[1])


def binomial_p(hits: int, n: int, p0: float) -> float:
    """One-sided p-value of at least ``hits`` successes of ``n`` under the rate ``p0``."""
    from scipy.stats import binom

    if n <= 0 or hits <= 0:
        return 1.0
    return float(binom.sf(hits - 1, n, min(max(p0, 0.0), 1.0)))


def _attribute(
    u: Untangled,
    y: np.ndarray,
    xin: np.ndarray | None,
    x: np.ndarray | None,
    model: Any,
    max_confirm: int,
    rng: np.random.Generator,
    n_tests: int = 1,
    resplit: Callable[[np.ndarray], Untangled] | None = None,
    min_success: float = 0.0,
) -> ClassFinding:
    """Decide which group of ``u`` is the suspect, and describe it.

    Order of evidence: (1) a group whose common pattern works as a trigger significantly more often than
    the best candidate group disjoint from it (binomial test at ``SIGNIFICANCE / n_tests``), with the
    lower end of its success's 95% interval at least ``min_success``; the
    candidates are the two groups of ``u`` and, when neither of them carries a working trigger and
    ``resplit`` is given, the two halves of each group split again (a class with a strong natural
    two-mode structure, such as a road sign drawn in two styles, splits along that first and hides a
    trigger group inside one of its modes); (2) the group of ``u`` whose members look more like other
    classes' means; (3) the smaller group of ``u``.
    """
    c = u.label
    alpha = SIGNIFICANCE / max(1, n_tests)
    groups = [u.rows[u.group == g] for g in (0, 1)]
    foreign = [0.0, 0.0]
    near: list[np.ndarray] = [np.empty(0, np.int64)] * 2
    if xin is not None:
        labels = np.unique(y)
        others = [k for k in labels if k != c]
        other_means = np.stack([xin[y == k].mean(axis=0) for k in others])
        for g in (0, 1):
            if not len(groups[g]) or not len(groups[1 - g]):
                continue
            means = np.vstack([xin[groups[g]].mean(axis=0)[None], other_means])
            d = ((xin[groups[g]][:, None, :] - means[None]) ** 2).sum(axis=2)
            nearest = d.argmin(axis=1)
            foreign[g] = float((nearest > 0).mean())
            near[g] = np.array(others)[d[:, 1:].argmin(axis=1)]
    # candidate groups: rows and their signed discriminant scores (larger = more like the group)
    cands: list[tuple[np.ndarray, np.ndarray]] = [
        (groups[g], (1.0 if g == 1 else -1.0) * u.projection[u.group == g]) for g in (0, 1)
    ]
    success: list[AttackSuccess | None] = []
    triggers: list[tuple[np.ndarray, np.ndarray] | None] = []
    pick = -1
    if model is not None and x is not None:
        pool = np.flatnonzero(y != c)
        pool = rng.choice(pool, size=min(max_confirm, len(pool)), replace=False)
        x_pool, y_pool = x[pool], y[pool]  # one copy for every candidate (images can be large)

        def measure(rows: np.ndarray) -> None:
            trig, succ = None, None
            if len(rows) >= 2:
                mask, pattern = common_pattern(x[rows], x_pool)
                if mask.sum() > 0:
                    trig = (mask, pattern)
                    try:
                        succ = attack_success(model, x_pool, y_pool, mask, pattern, c)
                    except InvalidInputError:
                        succ = None
            triggers.append(trig)
            success.append(succ)

        for rows, _ in cands:
            measure(rows)
        pick = _significant_trigger(cands, success, alpha, min_success)
        if pick < 0 and resplit is not None:
            least = max(5, int(np.ceil(0.02 * len(u.rows))))
            for g in (0, 1):
                if len(groups[g]) < 2 * least + 4:
                    continue
                v = resplit(groups[g])
                for h in (0, 1):
                    cands.append(
                        (v.rows[v.group == h], (1.0 if h == 1 else -1.0) * v.projection[v.group == h])
                    )
                    measure(cands[-1][0])
            pick = _significant_trigger(cands, success, alpha, min_success)
    if pick >= 0:
        how = "trigger"
    elif xin is not None and foreign[0] != foreign[1]:
        pick, how = int(np.argmax(foreign)), "foreign"
    else:
        pick, how = int(len(groups[1]) < len(groups[0])), "smaller"
    members, proj = cands[pick]
    trig = triggers[pick] if how == "trigger" and pick < len(triggers) else None
    if trig is not None and x is not None:
        # the suspects of a working trigger are the members that carry it, wherever the split put them
        d = pattern_distance(x, *trig, rows=u.rows)
        carriers = d < CARRIER_DISTANCE
        if carriers.sum() >= 2:
            members, proj = u.rows[carriers], 0.5 - d[carriers]
    order = np.argsort(-proj, kind="stable")
    near_pick = near[pick] if pick < 2 else np.empty(0, np.int64)
    votes = np.bincount(near_pick, minlength=int(y.max()) + 1) if len(near_pick) else np.zeros(1, int)
    resembles = int(votes.argmax()) if votes.sum() else -1
    return ClassFinding(
        label=c,
        n=len(u.rows),
        score=0.0,
        method="",
        scores={},
        statistics={},
        suspects=members[order],
        suspect_scores=proj[order],
        relative_size=len(members) / max(1, len(u.rows)),
        chosen_by=how if pick < 2 else f"{how} (sub-group)",
        foreign_share=foreign[pick] if pick < 2 else 0.0,
        resembles=resembles,
        resemblance=float(votes.max() / votes.sum()) if votes.sum() else 0.0,
        trigger=triggers[pick] if pick < len(triggers) else None,
        trigger_success=success[pick] if pick < len(success) else None,
    )


def _significant_trigger(
    cands: list[tuple[np.ndarray, np.ndarray]],
    success: list[AttackSuccess | None],
    alpha: float,
    min_success: float = 0.0,
) -> int:
    """Index of the candidate group whose pattern's hits are significantly above those of the best
    candidate disjoint from it (no pattern counts as 0 hits) and whose success's lower 95% bound is at
    least ``min_success``, or -1."""
    hits = [s.hits if s is not None else 0 for s in success]
    if not any(hits):
        return -1
    best = int(np.argmax(hits))
    if success[best].ci_low < min_success:  # type: ignore[union-attr]
        return -1
    n_best = success[best].n  # type: ignore[union-attr]
    rivals = [
        (hits[j], success[j].n if success[j] is not None else n_best)  # type: ignore[union-attr]
        for j in range(len(cands))
        if j != best and not np.intersect1d(cands[j][0], cands[best][0]).size
    ]
    h0, n0 = max(rivals, key=lambda hn: null_rate(*hn)) if rivals else (0, n_best)
    return best if binomial_p(hits[best], n_best, null_rate(h0, max(n0, n_best))) < alpha else -1


#: A training input *carries* a recovered trigger when its pixels inside the mask are on average closer
#: than this to the pattern (grey levels; half of ``common_pattern``'s least contrast of 0.5, so the
#: midpoint between the stamp and the background it stands out from).
CARRIER_DISTANCE = 0.25


def pattern_distance(
    x: np.ndarray, mask: np.ndarray, pattern: np.ndarray, rows: np.ndarray | None = None, chunk: int = 256
) -> np.ndarray:
    """Mean absolute difference (largest over channels) between each input and ``pattern`` inside ``mask``.

    ``rows`` (default: all) selects the inputs; they are read ``chunk`` at a time and only inside the
    mask, so a large training set of large images is never copied whole.
    """
    m = mask[0] > 0
    idx = np.arange(len(x)) if rows is None else np.asarray(rows, dtype=np.int64)
    if not m.any():
        return np.full(len(idx), np.inf)
    p = pattern[:, m][None]
    out = np.empty(len(idx))
    for i in range(0, len(idx), chunk):
        block = np.asarray(x[idx[i : i + chunk]], dtype=np.float32)[:, :, m]
        out[i : i + chunk] = np.abs(block - p).max(axis=1).mean(axis=1)
    return out
