"""What every attack check shares: the sample, budget verification, metrics, threat model, examples.

Attacks are pure functions in :mod:`roadworthy.attacks` that never see a :class:`Context`; the checks
(through :class:`~roadworthy.checks.attack.base.AttackCheck`) call them and turn their output into the
report's numbers with the helpers here, so every attack reports the same metrics the same way:

``attack.<a>.robust_accuracy``
    Share of the sampled inputs that the model classifies correctly *and* the attack could not flip within
    the budget's default strength (misclassified clean inputs count as not robust).
``attack.<a>.eps_<e>.robust_accuracy``
    The same at every strength ``e`` of the sweep. An adversarial input found at a smaller strength also
    lies inside every larger ball, so an input broken at ``e`` counts as broken at every ``e' > e``.
``attack.<a>.success_rate``
    Share of the initially correct inputs flipped at the default strength.
``attack.<a>.median_perturbation``
    Median over initially correct inputs of the smallest strength found to flip each one (infinite, so
    written as null, when the attack flipped fewer than half of them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from roadworthy.stats import proportion_metrics

if TYPE_CHECKING:
    from roadworthy.checks.base import Context
    from roadworthy.results import Example

#: Tolerance of the budget verification (float32 arithmetic on [0, 1] values).
_TOL = 1e-5


class AttackBudgetError(RuntimeError):
    """An attack produced an input outside its budget or the valid range: a bug in roadworthy, not user error."""


# ---------------------------------------------------------------------------------------------- budgets


def perturbation_norms(x: np.ndarray, x_adv: np.ndarray, norm: str) -> np.ndarray:
    """Per-sample size of ``x_adv - x``: ``linf``, ``l2`` or ``l0`` (pixel positions changed in any channel)."""
    d = (np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(x), *x.shape[1:])
    if norm == "linf":
        return np.abs(d).reshape(len(d), -1).max(axis=1) if d.size else np.zeros(len(d))
    if norm == "l2":  # an explicit width: reshape(0, -1) is ambiguous for an empty batch
        return np.sqrt((d.reshape(len(d), int(np.prod(d.shape[1:]))) ** 2).sum(axis=1))
    if norm == "l0":
        changed = np.abs(d) > _TOL
        if changed.ndim == 4:  # image: a pixel counts once whatever its channels
            changed = changed.any(axis=1)
        return changed.reshape(len(d), -1).sum(axis=1).astype(np.float64)
    raise ValueError(f"`norm` must be 'linf', 'l2' or 'l0'. Got {norm!r} instead.")


def verify_budget(
    x: np.ndarray, x_adv: np.ndarray, eps: float | np.ndarray | None, norm: str | None, attack: str
) -> None:
    """Raise :class:`AttackBudgetError` unless every ``x_adv`` is finite, in [0, 1] and within ``eps`` of ``x``.

    ``norm=None`` checks the range only (laser light, for example, has no norm budget).
    """
    if x_adv.shape != x.shape:
        raise AttackBudgetError(f"{attack}: adversarial batch has shape {x_adv.shape}, expected {x.shape}")
    if not np.isfinite(x_adv).all():
        raise AttackBudgetError(f"{attack}: adversarial inputs contain NaN or infinity")
    lo, hi = float(x_adv.min(initial=0.0)), float(x_adv.max(initial=0.0))
    if lo < -_TOL or hi > 1 + _TOL:
        raise AttackBudgetError(f"{attack}: adversarial inputs leave [0, 1] (min {lo:.6f}, max {hi:.6f})")
    if norm is None or eps is None:
        return
    size = perturbation_norms(x, x_adv, norm)
    limit = np.broadcast_to(np.asarray(eps, np.float64), size.shape)
    over = size > limit * (1 + _TOL) + _TOL
    if over.any():
        i = int(np.flatnonzero(over)[0])
        raise AttackBudgetError(
            f"{attack}: perturbation of sample {i} has {norm} size {size[i]:.6f}, over its budget {limit[i]:.6f}"
        )


# ---------------------------------------------------------------------------------------------- naming


def eps_key(eps: float) -> str:
    """Metric-name fragment for a strength: ``eps_0.03137`` for 8/255."""
    return f"eps_{float(eps):.5f}"


def describe_eps(eps: float, norm: str) -> str:
    """Human form of a strength: ``8/255`` for L-inf budgets on the grey-level grid, else a decimal."""
    if norm == "linf":
        k = eps * 255
        if abs(k - round(k)) < 0.01 and round(k) > 0:
            return f"{round(k)}/255"
    if norm == "l0":
        return f"{round(eps)} px"
    return f"{eps:.4g}"


NORM_LABEL = {"linf": "L-inf", "l2": "L2", "l0": "L0 (pixels)", "area": "patch area (fraction of image)"}


# ---------------------------------------------------------------------------------------------- samples


def attack_order(ctx: Context) -> np.ndarray:
    """A fixed, class-interleaved order of the evaluation rows shared by every attack.

    Each attack takes a prefix of it, so a small black-box sample is part of the larger white-box one (the
    summary compares them on the same inputs) and every prefix is close to stratified.
    """

    def compute() -> np.ndarray:
        y = ctx.data.y
        rng = ctx.rng("attack", "order")
        key = np.empty(len(y))
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            perm = rng.permutation(idx)
            key[perm] = (np.arange(len(idx)) + rng.uniform()) / len(idx)
        return np.argsort(key, kind="stable")

    return ctx.cached("attack.order", compute)


def attack_sample(ctx: Context, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(indices, x, y, clean_pred)`` for the first ``n`` rows of :func:`attack_order` (all rows if fewer)."""
    idx = np.sort(attack_order(ctx)[: max(1, int(n))])
    x = np.ascontiguousarray(ctx.data.x[idx], dtype=np.float32)
    y = np.asarray(ctx.data.y[idx], dtype=np.int64)
    pred = ctx.clean_pred[idx]
    return idx, x, y, pred


# ---------------------------------------------------------------------------------------------- metrics


def sweep_metrics(
    name: str,
    y: np.ndarray,
    correct0: np.ndarray,
    broken: dict[float, np.ndarray],
    default: float,
    min_strength: np.ndarray | None,
    class_name: Callable[[int], str],
    queries: np.ndarray | None = None,
    norm: str = "linf",
    per_strength: bool = True,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Public metrics and detail blocks from per-sample results of one attack.

    Parameters
    ----------
    name
        Metric prefix, e.g. ``attack.pgd_linf``.
    y, correct0
        Labels and whether the clean input was classified correctly, one entry per sampled input.
    broken
        ``{strength: bool array}``: the attack found an adversarial input within that strength (cumulative,
        see the module docstring). ``default`` must be one of its keys.
    min_strength
        Smallest strength found to flip each input (``inf`` where none), or ``None`` when not measured.
    queries
        Model queries spent per input (black-box attacks), counted over the attacked inputs.
    per_strength
        Whether to write ``eps_<e>`` metrics (not for attacks without a strength scale, like the laser).
    """
    metrics: dict[str, float] = {}
    curve_eps, curve_acc, raw_counts = [], [], {}
    for e in sorted(broken):
        robust = correct0 & ~broken[e]
        if per_strength:
            metrics.update(proportion_metrics(f"{name}.{eps_key(e)}.robust_accuracy", robust))
        curve_eps.append(float(e))
        curve_acc.append(float(robust.mean()))
        raw_counts[eps_key(e)] = int(robust.sum())
    robust_default = correct0 & ~broken[default]
    metrics.update(proportion_metrics(f"{name}.robust_accuracy", robust_default))
    if correct0.any():
        metrics.update(proportion_metrics(f"{name}.success_rate", broken[default][correct0]))
    if min_strength is not None and correct0.any():
        metrics[f"{name}.median_perturbation"] = float(np.median(min_strength[correct0]))
    if queries is not None and correct0.any():
        metrics[f"{name}.queries"] = float(np.mean(queries[correct0]))
    per_class = {}
    for c in np.unique(y):
        m = y == c
        per_class[class_name(int(c))] = {
            "robust_accuracy": float(robust_default[m].mean()),
            "n": int(m.sum()),
        }
    details: dict[str, Any] = {
        "curve": {"norm": norm, "eps": curve_eps, "robust_accuracy": curve_acc},
        "per_class": per_class,
        "n_samples": len(y),
        "n_clean_correct": int(correct0.sum()),
    }
    if min_strength is not None and correct0.any():
        ms = min_strength[correct0]
        finite = ms[np.isfinite(ms)]
        details["min_perturbation"] = {
            "median": float(np.median(ms)),
            "flipped": int(finite.size),
            "quantiles": {
                q: float(np.quantile(finite, float(q))) for q in ("0.1", "0.25", "0.5", "0.75", "0.9")
            }
            if finite.size
            else {},
        }
    if queries is not None and correct0.any():
        q = queries[correct0]
        details["queries"] = {"mean": float(q.mean()), "median": float(np.median(q)), "max": float(q.max())}
    return metrics, details


def cumulative(raw: dict[float, np.ndarray]) -> dict[float, np.ndarray]:
    """Make per-strength success cumulative: what broke an input at ``e`` also breaks it at every larger ``e``."""
    out, acc = {}, None
    for e in sorted(raw):
        acc = raw[e].copy() if acc is None else acc | raw[e]
        out[e] = acc
    return out


def first_flip(broken: dict[float, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per input, the largest sweep strength that did not flip it (``lo``, 0 if none) and the first that did (``hi``)."""
    lo, hi = np.zeros(n), np.full(n, np.inf)
    for e in sorted(broken):
        newly = broken[e] & ~np.isfinite(hi)
        hi[newly] = e
        lo[~broken[e]] = e
    lo = np.where(np.isfinite(hi), np.minimum(lo, hi), lo)
    return lo, hi


def threat_model(
    knowledge: str,
    norm: str | None,
    eps: float | None,
    sweep: Sequence[float] = (),
    queries: int | None = None,
    physical: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """``details.threat_model``: the attacker each number assumes, in NIST AI 100-2 terms (evasion at deployment)."""
    knowledge_text = {
        "white-box": "white-box: the attacker knows the model and its gradients",
        "score-based black-box": "black-box: the attacker only queries the model and sees its scores",
        "decision-based black-box": "black-box: the attacker only queries the model and sees its top label",
    }[knowledge]
    out: dict[str, Any] = {
        "nist_class": f"evasion, {'white-box' if knowledge == 'white-box' else 'black-box'}",
        "stage": "deployment",
        "goal": "untargeted misclassification (integrity violation)",
        "knowledge": knowledge_text,
        "norm": NORM_LABEL.get(norm, norm) if norm else None,
        "eps": eps,
        "eps_text": describe_eps(eps, norm) if (eps is not None and norm) else None,
        "sweep": [float(e) for e in sweep],
        "query_budget": queries,
        "physically_realisable": physical,
        "scope": "an empirical upper bound on robustness at this budget, not a certificate",
    }
    out.update(extra)
    return out


# ---------------------------------------------------------------------------------------------- examples


def pick_examples(flipped: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``k`` indices of flipped inputs, seeded."""
    idx = np.flatnonzero(flipped)
    if len(idx) > k:
        idx = np.sort(rng.choice(idx, size=k, replace=False))
    return idx


def adversarial_examples(
    ctx: Context,
    x: np.ndarray,
    x_adv: np.ndarray,
    y: np.ndarray,
    pred_adv: np.ndarray,
    chosen: np.ndarray,
    title: str,
    show_difference: bool = True,
) -> list[Example]:
    """Report examples: original, adversarial, (optionally) the amplified perturbation, and predictions."""
    from roadworthy.evidence import amplified_difference, png_data_uri
    from roadworthy.results import Example, ExampleImage

    out = []
    for i in chosen:
        extra = []
        if show_difference:
            extra.append(
                ExampleImage(
                    caption="perturbation (amplified)", uri=png_data_uri(amplified_difference(x[i], x_adv[i]))
                )
            )
        out.append(
            Example(
                title=title,
                label=ctx.class_name(int(y[i])),
                original=png_data_uri(x[i]),
                original_prediction=ctx.class_name(int(y[i])),
                changed=png_data_uri(x_adv[i]),
                changed_prediction=ctx.class_name(int(pred_adv[i])),
                extra=extra,
            )
        )
    return out


def finite_or_nan(v: float) -> float:
    return v if math.isfinite(v) else math.nan


def curve_evidence(
    caption: str, curves: dict[str, dict[str, Any]], xlabel: str | None = None
) -> dict[str, Any]:
    """A ``lines`` evidence item: robust accuracy against strength, one line per ``{name: details.curve}``.

    The curves share one norm; L-inf strengths are drawn in grey levels (x/255).
    """
    from roadworthy import evidence

    norm = next(iter(curves.values())).get("norm", "linf")
    series = {
        name: ([e * 255 for e in c["eps"]] if norm == "linf" else c["eps"], c["robust_accuracy"])
        for name, c in curves.items()
    }
    if xlabel is None:
        xlabel = "eps (x/255, L-inf)" if norm == "linf" else f"strength ({NORM_LABEL.get(norm, norm)})"
    return evidence.lines(caption, series, xlabel, "robust accuracy")


def fill_in(attacked: np.ndarray, values: np.ndarray, fill: object) -> np.ndarray:
    """Per-sample ``values`` computed on the attacked rows (``attacked`` is a boolean mask over every
    sample) spread back to all samples; rows not attacked (already misclassified) get ``fill``."""
    full = np.full(len(attacked), fill, dtype=values.dtype)
    full[attacked] = values
    return full
