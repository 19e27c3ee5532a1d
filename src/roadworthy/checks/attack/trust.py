"""Self-checks that tell whether an attack's numbers can be trusted.

A weak attack reports high robust accuracy and so gives false comfort; gradient masking (quantised or
randomised models, saturated softmax, non-differentiable preprocessing) makes white-box attacks fail
silently (Athalye, Carlini, Wagner, ICML 2018; Carlini et al., "On Evaluating Adversarial Robustness",
2019). Each function here looks for one such sign and returns a :class:`Finding`; a check turns its
findings into ``attack.<a>.trustworthy``, one plain sentence, warnings, and one metric per finding
(``attack.<a>.trust.<finding>``, its value) that a policy gate can read.

The constants below are the defaults of the checks' parameters (``max_dead_gradients`` ...), which a
run may change and which the report lists with every other parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Share of inputs with zero or non-finite gradients above which the white-box numbers are not trusted.
MAX_DEAD_GRADIENTS = 0.10
#: Robust accuracy at a huge strength above which the attack is considered too weak (or masked).
MAX_ACCURACY_AT_HUGE_EPS = 0.10
#: A decision-based attack must shrink the median distance from its first boundary point by at least this.
MIN_PROGRESS = 0.02
#: Share of found adversarial inputs that may read as correct when asked again (labels that change).
MAX_UNSTABLE = 0.10
#: Rise of robust accuracy with strength tolerated as noise (at least two samples' worth).
MONOTONE_TOLERANCE = 0.02
#: largest share of inputs a fixed-budget attack broke that the minimum-norm attack says are not breakable there
MAX_DISAGREEMENT = 0.03
#: How much better than random noise of its size an optimised sticker may keep accuracy (at least two
#: samples' worth) before the optimisation counts as failed.
NOISE_TOLERANCE = 0.03


@dataclass(frozen=True)
class Finding:
    """One self-check: its name, whether it holds, and a plain reason when it does not."""

    name: str
    ok: bool
    message: str
    value: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def gradient_health(
    forward: Callable[[Any], Any],
    x: np.ndarray,
    y: np.ndarray,
    loss: str = "ce",
    batch_size: int = 256,
    device: Any = "cpu",
) -> dict[str, float]:
    """Share of inputs whose loss gradient w.r.t. the input is all zero, or contains NaN/infinity.

    The loss is the one the attack ascends (``ce`` or ``dlr``), computed in float64 so that a confident
    but healthy model does not read as masked through float32 softmax saturation.
    """
    import torch

    from roadworthy.attacks._losses import grad_batch, input_gradient

    zero = nonfinite = 0
    batch_size = grad_batch(x, batch_size)
    for i in range(0, len(x), batch_size):
        xb = torch.from_numpy(x[i : i + batch_size]).to(device)
        yb = torch.from_numpy(y[i : i + batch_size]).to(device)
        g, _, _ = input_gradient(forward, xb, yb, loss)
        flat = g.flatten(1)
        bad = ~torch.isfinite(flat).all(dim=1)
        nonfinite += int(bad.sum())
        zero += int(((flat == 0).all(dim=1) & ~bad).sum())
    n = max(1, len(x))
    return {"zero": zero / n, "nonfinite": nonfinite / n, "n": float(len(x))}


def gradient_finding(health: dict[str, float], limit: float = MAX_DEAD_GRADIENTS) -> Finding:
    dead = health["zero"] + health["nonfinite"]
    if dead > limit:
        kind = "zero" if health["zero"] >= health["nonfinite"] else "NaN or infinite"
        return Finding(
            "gradients",
            False,
            f"gradients were {kind} for {dead:.0%} of samples (gradient masking?)",
            dead,
        )
    return Finding("gradients", True, f"input gradients are usable on {1 - dead:.0%} of samples", dead)


def huge_eps_finding(accuracy: float, eps_text: str, limit: float = MAX_ACCURACY_AT_HUGE_EPS) -> Finding:
    """At an absurd strength an attack that works drives accuracy to about zero (Carlini et al. 2019)."""
    if accuracy > limit:
        return Finding(
            "huge_eps",
            False,
            f"robust accuracy stays at {accuracy:.0%} at a huge strength ({eps_text}); a working attack reaches ~0%",
            accuracy,
        )
    return Finding(
        "huge_eps", True, f"robust accuracy falls to {accuracy:.0%} at a huge strength ({eps_text})", accuracy
    )


def monotone_finding(
    eps: Sequence[float],
    accuracy: Sequence[float],
    n: int,
    labels: Sequence[str],
    tolerance: float = MONOTONE_TOLERANCE,
) -> Finding:
    """Robust accuracy measured independently per strength must not rise with strength (beyond noise).

    Noise allowance: two samples' worth or ``tolerance``, whichever is larger.
    """
    tol = max(tolerance, 2.0 / max(1, n))
    worst, where = 0.0, None
    for i in range(1, len(eps)):
        rise = accuracy[i] - min(accuracy[:i])
        if rise > worst:
            worst, where = rise, i
    if where is not None and worst > tol:
        j = int(np.argmin(accuracy[:where]))
        return Finding(
            "monotone",
            False,
            f"robust accuracy rose with strength ({accuracy[j]:.0%} at {labels[j]}, {accuracy[where]:.0%} at "
            f"{labels[where]})",
            worst,
        )
    return Finding("monotone", True, "robust accuracy falls as strength grows", worst)


def agreement_finding(
    missed: int, n: int, eps_text: str, label: str, limit: float = MAX_DISAGREEMENT
) -> Finding:
    """The minimum-norm curve must not miss what the fixed-budget attack finds at the same strength.

    ``missed`` of ``n`` inputs were flipped by the fixed-budget attack at ``eps_text`` while the
    minimum-norm attack found no perturbation that small: its curve below that strength is then too
    optimistic by about that much. Noise allowance: two samples' worth or ``limit``, whichever is larger.
    """
    share = missed / max(1, n)
    if share > max(limit, 2.0 / max(1, n)):
        return Finding(
            "agreement",
            False,
            f"{label} broke {share:.0%} of inputs at {eps_text} that the minimum-norm search could not "
            "break there (its curve is too optimistic)",
            share,
        )
    return Finding(
        "agreement",
        True,
        f"the minimum-norm search misses {share:.0%} of what {label} breaks at {eps_text}",
        share,
    )


def progress_finding(start: np.ndarray, final: np.ndarray, limit: float = MIN_PROGRESS) -> Finding:
    """A decision-based attack that works moves each input's adversarial point closer than its start.

    ``start`` and ``final`` are per-input distances of the first boundary point and of the final
    adversarial input; the finding's value is the median ratio ``final / start``. When it stays above
    ``1 - limit`` the iterations found nothing better than the start: the query budget left no room to
    iterate, or the labels are too noisy (a randomised model) to estimate the boundary, and every distance
    (so every robust accuracy) is the start's, not the attack's. Slow progress (a ratio of 0.9 on large
    images with a small budget) is a loose bound, not a broken evaluation; the check warns about it.
    """
    ok = np.isfinite(start) & np.isfinite(final) & (start > 0)
    if not ok.any():
        return Finding("progress", True, "no input to judge the iterations' progress on", None)
    ratio = float(np.median(final[ok] / start[ok]))
    if ratio > 1 - limit:
        return Finding(
            "progress",
            False,
            f"the iterations did not move the median input closer than its start ({ratio:.0%} of the start's "
            "distance): the query budget is too small to iterate, or the labels too noisy to follow the "
            "decision boundary",
            ratio,
        )
    return Finding(
        "progress", True, f"the iterations shrank the median distance to {ratio:.0%} of the start's", ratio
    )


def stability_finding(still_adversarial: np.ndarray, limit: float = MAX_UNSTABLE) -> Finding:
    """The adversarial inputs an attack found must still be misclassified when the model is asked again.

    ``still_adversarial`` holds one entry per input the attack reported as fooled. A share above ``limit``
    that reads as correct the second time means the model's labels change between calls (a randomised
    defence, dropout left on), which misleads a label-only attack.
    """
    n = len(still_adversarial)
    if n == 0:
        return Finding("stability", True, "no adversarial input to re-check", None)
    unstable = 1.0 - float(np.mean(still_adversarial))
    if unstable > limit:
        return Finding(
            "stability",
            False,
            f"{unstable:.0%} of the adversarial inputs found were classified correctly when asked again "
            "(the model's labels change between calls)",
            unstable,
        )
    return Finding(
        "stability",
        True,
        f"{1 - unstable:.0%} of the adversarial inputs stay misclassified when asked again",
        unstable,
    )


def coverage_finding(attacked: int, measured: int, reason: str) -> Finding:
    """An attack that could not attack any of its inputs measured nothing: ``reason`` says why."""
    if attacked > 0 and measured == 0:
        return Finding("coverage", False, f"no input could be attacked: {reason}", 0.0)
    if attacked == 0:
        return Finding("coverage", True, "no input was classified correctly, so none needed attacking", 1.0)
    share = measured / attacked
    return Finding("coverage", True, f"{share:.0%} of the correctly classified inputs were attacked", share)


def comparison_finding(
    name: str,
    weak: str,
    weak_value: float,
    weak_ci_high: float,
    strong: str,
    strong_value: float,
    eps_text: str,
) -> Finding:
    """A weaker attack (black-box, one-step) must not beat a stronger one (white-box, iterative) at one budget."""
    if weak_ci_high < strong_value:
        return Finding(
            name,
            False,
            f"{weak} beats {strong} at {eps_text} ({weak_value:.0%} vs {strong_value:.0%} robust accuracy): "
            f"{strong} is too weak or the gradients are masked",
            strong_value - weak_value,
        )
    return Finding(name, True, f"{weak} does not beat {strong} at {eps_text}", strong_value - weak_value)


def sticker_finding(
    accuracy: float, noise_accuracy: float, n: int, tolerance: float = NOISE_TOLERANCE
) -> Finding:
    """An optimised sticker must not keep accuracy higher than random noise of its size at its places.

    Noise allowance: two samples' worth or ``tolerance``, whichever is larger. The value is the
    difference ``accuracy - noise_accuracy`` (negative: the sticker is stronger than noise).
    """
    diff = accuracy - noise_accuracy
    if accuracy > noise_accuracy + max(tolerance, 2.0 / max(1, n)):
        return Finding(
            "beats_noise",
            False,
            f"the optimised sticker ({accuracy:.0%}) does worse than random noise ({noise_accuracy:.0%}): "
            "optimisation failed",
            diff,
        )
    return Finding("beats_noise", True, "the optimised sticker is at least as strong as noise", diff)


def metrics(prefix: str, findings: Sequence[Finding]) -> dict[str, float]:
    """``{prefix.trust.<finding>: value}`` for every finding with a finite value (what a gate reads)."""
    return {
        f"{prefix}.trust.{f.name}": float(f.value)
        for f in findings
        if f.value is not None and np.isfinite(f.value)
    }


def verdict(findings: Sequence[Finding]) -> tuple[bool, str, list[str]]:
    """``(trustworthy, statement, warnings)`` from a check's findings."""
    bad = [f for f in findings if not f.ok]
    if bad:
        text = "; ".join(f.message for f in bad)
        return False, f"not trustworthy: {text}", [f"not trustworthy: {f.message}" for f in bad]
    if not findings:
        return True, "trustworthy as far as can be checked (no self-check applies to this attack)", []
    checked = ", ".join(f.name.replace("_", " ") for f in findings)
    return True, f"trustworthy ({checked} checked)", []
