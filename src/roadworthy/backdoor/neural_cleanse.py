"""Neural Cleanse: reverse-engineer, per class, the smallest trigger that sends clean inputs to it.

Wang, Yao, Shan, Li, Viswanath, Zheng & Zhao, "Neural Cleanse: Identifying and Mitigating Backdoor
Attacks in Neural Networks", IEEE S&P 2019.

Threat model: the model (white box) may hide an all-to-one backdoor: a small trigger that sends any
input to one target class. No training data is needed, only a few hundred clean inputs. For every
class ``k`` we solve

    min_{m, p}  CE(f((1 - m) * x + m * p), k) + lambda_k * |m|_1

over a mask ``m`` (1, H, W) in [0, 1] and a pattern ``p`` (C, H, W) in [0, 1] (both through a tanh
parametrisation). The backdoor's target needs a far smaller mask than any other class (the planted
trigger is a shortcut), so the mask norms of a backdoored model have one low outlier. The *anomaly
index* of class ``k`` is ``(median - |m_k|_1) / (1.4826 * MAD)`` over the classes: a class whose index
exceeds :data:`ANOMALY_THRESHOLD` (2, the paper's choice: a ~95% one-sided outlier under normality) is a
suspect target. The paper reports the absolute deviation but flags only the small side; we keep the sign.

``lambda_k`` follows the paper's schedule: 0 until the attack succeeds on ``attack_threshold`` of the
batch for ``patience`` checks, then ``init_cost``, raised by ``cost_multiplier`` after ``patience`` checks
of success and lowered by ``cost_multiplier ** 1.5`` after ``patience`` checks of failure; the smallest
mask that reached the threshold is kept. All classes are optimised together in one batched forward pass
(``n_classes x batch_size`` images per step), which is what makes a 10-class scan fit in a CPU budget.

Work is spent only where it still buys something (the paper's early stop, per class): a class whose
smallest successful mask has not shrunk by more than ``early_stop_tol`` (relative) for ``early_stop``
consecutive checks is *converged* and leaves the batch, so the later steps cost only the classes still
shrinking; the scan ends when every class has converged, after ``steps``, or when ``max_seconds`` of
wall time are spent (the result says which, in ``stopped``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from roadworthy.errors import InvalidInputError, UnsupportedModelError
from roadworthy.models.base import capabilities

#: input bytes of one gradient batch (as the attacks' ``grad_batch``): a 224 px model keeps ~27 images'
#: activations for its backward pass at a time; small images put every class in one batch
GRAD_BATCH_INPUT_BYTES = 16 * 2**20

#: Anomaly index above which a class is a suspect backdoor target (Wang et al. 2019).
ANOMALY_THRESHOLD = 2.0
#: Consistency constant that turns a median absolute deviation into a normal standard deviation.
MAD_SCALE = 1.4826


@dataclass
class NeuralCleanseResult:
    """Per-class reverse-engineered triggers and their anomaly indices.

    Attributes
    ----------
    classes
        The classes scanned (row ``i`` of every array is class ``classes[i]``).
    masks, patterns
        The smallest triggers found: ``masks`` (K, 1, H, W), ``patterns`` (K, C, H, W), in [0, 1].
    l1
        Mask L1 norms (pixels replaced).
    reached
        Whether the optimisation reached ``attack_threshold`` for the class (when not, the mask is the
        last iterate and its norm is a lower bound of nothing: treat the class as not reverse-engineered).
    attack_success
        Share of the clean inputs (of other classes) that the class's trigger sends to it, measured
        after the optimisation on all the inputs given.
    anomaly_index
        ``(median(l1) - l1) / (1.4826 * MAD(l1))``: large positive values are suspiciously small masks.
    steps, seconds
        Optimisation steps run and wall time.
    class_steps
        Steps each class was optimised for before it converged (or the scan stopped).
    stopped
        Why the optimisation ended: ``"converged"`` (every class), ``"steps"`` or ``"time"``.
    """

    classes: list[int]
    masks: np.ndarray
    patterns: np.ndarray
    l1: np.ndarray
    reached: np.ndarray
    attack_success: np.ndarray
    anomaly_index: np.ndarray
    steps: int
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)
    class_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    stopped: str = "steps"

    @property
    def suspect(self) -> int:
        """The class with the largest anomaly index (the candidate target, flagged or not)."""
        return int(self.classes[int(np.argmax(self.anomaly_index))])

    def flagged(self, threshold: float = ANOMALY_THRESHOLD) -> list[int]:
        """Classes whose anomaly index exceeds ``threshold``, most anomalous first."""
        order = np.argsort(-self.anomaly_index)
        return [int(self.classes[i]) for i in order if self.anomaly_index[i] > threshold]

    def trigger(self, label: int) -> tuple[np.ndarray, np.ndarray]:
        """``(mask, pattern)`` recovered for class ``label``."""
        i = self.classes.index(int(label))
        return self.masks[i], self.patterns[i]

    def evidence(self, class_names: list[str] | None = None) -> list[dict[str, Any]]:
        """Report evidence: mask norms and anomaly indices per class, and the suspect's trigger image."""
        from roadworthy import evidence

        names = [class_names[c] if class_names else str(c) for c in self.classes]
        mask, pattern = self.trigger(self.suspect)
        i = self.classes.index(self.suspect)
        return [
            evidence.bars(
                "Neural Cleanse: anomaly index of each class's smallest trigger (above the line: suspect)",
                names,
                {"anomaly index": self.anomaly_index.tolist()},
                "anomaly index",
                hline=ANOMALY_THRESHOLD,
            ),
            evidence.bars(
                "Neural Cleanse: L1 norm of each class's smallest trigger mask (pixels)",
                names,
                {"mask L1": self.l1.tolist()},
                "pixels",
            ),
            evidence.image(
                f"Recovered trigger for class {names[i]} (mask x pattern; mask L1 {self.l1[i]:.1f} px, "
                f"attack success {self.attack_success[i]:.1%})",
                mask * pattern,
            ),
            evidence.image(f"Recovered mask for class {names[i]}", mask),
        ]


def anomaly_index(values: np.ndarray) -> np.ndarray:
    """``(median - v) / (1.4826 * MAD)``: how many robust standard deviations each value lies *below* the median.

    The MAD is floored at 1e-9 times the median (or 1e-12) so identical values give 0, not NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    med = float(np.median(v))
    mad = MAD_SCALE * float(np.median(np.abs(v - med)))
    return (med - v) / max(mad, 1e-9 * abs(med), 1e-12)


def neural_cleanse(
    model: Any,
    x: np.ndarray,
    y: np.ndarray | None = None,
    classes: list[int] | None = None,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 0.1,
    init_cost: float = 1e-3,
    attack_threshold: float = 0.99,
    patience: int = 3,
    check_every: int = 10,
    cost_multiplier: float = 1.5,
    seed: int = 0,
    eval_batch_size: int = 256,
    early_stop: int = 4,
    early_stop_tol: float = 0.01,
    max_seconds: float | None = None,
) -> NeuralCleanseResult:
    """Reverse-engineer the smallest trigger for every class of a white-box image model.

    Parameters
    ----------
    model
        A roadworthy model with the ``white_box`` capability (``forward_torch``).
    x
        Clean inputs (N, C, H, W) in [0, 1]; a few hundred suffice.
    y
        Their labels, optional: inputs already of class ``k`` are left out of class ``k``'s loss and its
        attack success.
    classes
        Classes to scan (default: all). The anomaly index needs at least 3.
    steps
        Optimisation steps (each one forward/backward pass over ``len(classes) x batch_size`` images).
    batch_size
        Clean inputs per step and class.
    lr
        Adam step size on the tanh-space mask and pattern (betas 0.5, 0.9 as in the paper's code).
    init_cost, attack_threshold, patience, check_every, cost_multiplier
        The adaptive ``lambda`` schedule (see the module docstring); ``patience`` counts checks, one every
        ``check_every`` steps.
    seed
        Seeds the initial masks and the mini-batch draws (the result is deterministic for a seed, unless
        ``max_seconds`` cuts the run short).
    early_stop, early_stop_tol
        A class whose best mask norm has not improved by more than ``early_stop_tol`` (relative) for
        ``early_stop`` consecutive checks, once its ``lambda`` is set, stops being optimised (0: never).
    max_seconds
        Wall-time cap for the optimisation (None: no cap). Classes that never reached the threshold are
        marked in ``reached``.

    Raises
    ------
    UnsupportedModelError
        The model offers no gradients (black box) or is not an image model.
    """
    import torch
    import torch.nn.functional as F

    if "white_box" not in capabilities(model):
        raise UnsupportedModelError(
            "neural_cleanse: needs a white-box model (gradients through `forward_torch`); this model answers "
            "queries only. Use STRIP (roadworthy.backdoor.strip) or confirm a candidate trigger instead."
        )
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or len(x) == 0:
        raise UnsupportedModelError(f"neural_cleanse: needs image inputs (N, C, H, W). Got shape {x.shape}.")
    k_all = int(model.n_classes)
    classes = list(range(k_all)) if classes is None else [int(c) for c in classes]
    if len(classes) < 3 or any(not 0 <= c < k_all for c in classes):
        raise InvalidInputError(
            f"neural_cleanse: `classes` must be at least 3 distinct labels in [0, {k_all}). Got {classes}."
        )
    if steps < 1 or batch_size < 1 or patience < 1 or check_every < 1 or early_stop < 0:
        raise InvalidInputError(
            "neural_cleanse: `steps`, `batch_size`, `patience` and `check_every` must be positive and "
            f"`early_stop` >= 0. Got {steps}, {batch_size}, {patience}, {check_every}, {early_stop}."
        )
    y_arr = None if y is None else np.asarray(y).astype(np.int64)
    if y_arr is not None and len(y_arr) != len(x):
        raise InvalidInputError(f"neural_cleanse: `x` and `y` lengths differ ({len(x)} vs {len(y_arr)}).")

    start = time.perf_counter()
    g = torch.Generator().manual_seed(int(seed))
    kc = len(classes)
    _, c, h, w = x.shape
    eps = 1e-6
    mask0 = torch.rand((kc, 1, h, w), generator=g) * 0.5 + 0.25
    pat0 = torch.rand((kc, c, h, w), generator=g)
    m_raw = torch.atanh((mask0 - 0.5) * 2 * (1 - eps)).requires_grad_(True)
    p_raw = torch.atanh((pat0 - 0.5) * 2 * (1 - eps)).requires_grad_(True)
    opt = torch.optim.Adam([m_raw, p_raw], lr=lr, betas=(0.5, 0.9))
    xt = torch.from_numpy(x)
    targets = torch.tensor(classes, dtype=torch.long)
    yt = None if y_arr is None else torch.from_numpy(y_arr)

    cost = np.zeros(kc)
    set_counter = np.zeros(kc, int)
    up = np.zeros(kc, int)
    down = np.zeros(kc, int)
    best_l1 = np.full(kc, np.inf)
    best_mask = np.zeros((kc, 1, h, w), np.float32)
    best_pat = np.zeros((kc, c, h, w), np.float32)
    hits_acc = np.zeros(kc)
    seen_acc = np.zeros(kc)
    n = len(x)
    b = min(batch_size, n)
    live = np.ones(kc, bool)  # classes still being optimised
    stale = np.zeros(kc, int)  # consecutive checks without a better mask, once lambda is set
    class_steps = np.zeros(kc, int)
    stopped = "steps"
    step = 0
    while step < steps:
        step += 1
        act = np.flatnonzero(live)
        ka = len(act)
        act_t = torch.from_numpy(act)
        idx = torch.randint(0, n, (b,), generator=g)
        xb = xt[idx]
        tgt = targets[act_t][:, None].expand(ka, b)
        weight = torch.ones((ka, b)) if yt is None else (yt[idx][None] != tgt).float()
        # the classes' terms of the loss are independent: their gradients are summed over groups of
        # classes whose images fit one gradient batch (a 224 px model keeps ~27 images' activations)
        images = min(256, max(8, GRAD_BATCH_INPUT_BYTES // (4 * xb[0].numel())))
        per_group = max(1, images // b)
        m_grad, p_grad = torch.zeros_like(m_raw), torch.zeros_like(p_raw)
        l1_parts, hit_parts, mask_parts, pattern_parts = [], [], [], []
        for g0 in range(0, ka, per_group):
            sel = act_t[g0 : g0 + per_group]
            kg = len(sel)
            mask = (torch.tanh(m_raw[sel]) + 1) / 2
            pattern = (torch.tanh(p_raw[sel]) + 1) / 2
            adv = (1 - mask[:, None]) * xb[None] + (mask * pattern)[:, None]
            logits = model.forward_torch(adv.reshape(kg * b, c, h, w)).reshape(kg, b, -1)
            tg, wg = tgt[g0 : g0 + kg], weight[g0 : g0 + kg]
            ce = F.cross_entropy(logits.reshape(kg * b, -1), tg.reshape(-1), reduction="none").reshape(kg, b)
            ce_k = (ce * wg).sum(dim=1) / wg.sum(dim=1).clamp_min(1.0)
            l1_g = mask.reshape(kg, -1).sum(dim=1)
            loss = (ce_k + torch.from_numpy(cost[act[g0 : g0 + kg]]).float() * l1_g).sum()
            # gradients of the mask and pattern only: loss.backward() would also compute the model's
            # weight gradients (a third of the backward pass) and leave them in the user's parameters
            gm, gp = torch.autograd.grad(loss, [m_raw, p_raw])
            m_grad += gm
            p_grad += gp
            l1_parts.append(l1_g.detach())
            mask_parts.append(mask.detach())
            pattern_parts.append(pattern.detach())
            with torch.no_grad():
                hit_parts.append(((logits.argmax(dim=2) == tg).float() * wg).sum(dim=1))
        m_raw.grad, p_raw.grad = m_grad, p_grad
        opt.step()
        class_steps[act] += 1
        l1 = torch.cat(l1_parts)
        hit = torch.cat(hit_parts)
        mask, pattern = torch.cat(mask_parts), torch.cat(pattern_parts)
        hits_acc[act] += hit.numpy()
        seen_acc[act] += weight.sum(dim=1).numpy()
        out_of_time = max_seconds is not None and time.perf_counter() - start > max_seconds
        if step % check_every and step != steps and not out_of_time:
            continue
        asr = hits_acc / np.maximum(seen_acc, 1.0)
        hits_acc[:] = 0.0
        seen_acc[:] = 0.0
        l1_now = np.full(kc, np.inf)
        l1_now[act] = l1.detach().numpy().astype(np.float64)
        ok = live & (asr >= attack_threshold)
        better = ok & (l1_now < best_l1 * (1 - early_stop_tol))
        improved = ok & (l1_now < best_l1)
        if improved.any():
            pos = {int(k): i for i, k in enumerate(act)}
            rows = [pos[int(k)] for k in np.flatnonzero(improved)]
            best_l1[improved] = l1_now[improved]
            best_mask[improved] = mask.detach().numpy()[rows]
            best_pat[improved] = pattern.detach().numpy()[rows]
        stale = np.where(better | (cost == 0), 0, stale + 1)
        if early_stop:
            live &= ~(np.isfinite(best_l1) & (stale >= early_stop))
        if out_of_time:
            stopped = "time"
            break
        if not live.any():
            stopped = "converged"
            break
        unset = live & (cost == 0)
        set_counter = np.where(unset & ok, set_counter + 1, 0)
        start_cost = unset & (set_counter >= patience)
        cost[start_cost] = init_cost
        active = live & (cost > 0) & ~start_cost
        up = np.where(active & ok, up + 1, 0)
        down = np.where(active & ~ok, down + 1, 0)
        raise_ = active & (up >= patience)
        lower = active & (down >= patience)
        cost[raise_] *= cost_multiplier
        cost[lower] /= cost_multiplier**1.5
        up[raise_] = 0
        down[lower] = 0

    reached = np.isfinite(best_l1)
    final_mask = ((torch.tanh(m_raw) + 1) / 2).detach().numpy()
    final_pat = ((torch.tanh(p_raw) + 1) / 2).detach().numpy()
    best_mask[~reached] = final_mask[~reached]
    best_pat[~reached] = final_pat[~reached]
    l1_final = best_mask.reshape(kc, -1).sum(axis=1).astype(np.float64)
    success = _success(model, x, y_arr, classes, best_mask, best_pat, eval_batch_size)
    return NeuralCleanseResult(
        classes=classes,
        masks=best_mask,
        patterns=best_pat,
        l1=l1_final,
        reached=reached,
        attack_success=success,
        anomaly_index=anomaly_index(l1_final),
        steps=step,
        seconds=time.perf_counter() - start,
        class_steps=class_steps,
        stopped=stopped,
        params={
            "steps": steps,
            "batch_size": b,
            "lr": lr,
            "init_cost": init_cost,
            "attack_threshold": attack_threshold,
            "patience": patience,
            "check_every": check_every,
            "cost_multiplier": cost_multiplier,
            "seed": seed,
            "n_inputs": n,
            "early_stop": early_stop,
            "early_stop_tol": early_stop_tol,
            "max_seconds": max_seconds,
        },
    )


def _success(
    model: Any,
    x: np.ndarray,
    y: np.ndarray | None,
    classes: list[int],
    masks: np.ndarray,
    patterns: np.ndarray,
    batch_size: int,
) -> np.ndarray:
    from roadworthy.backdoor.plant import apply_trigger
    from roadworthy.models.base import predict_logits

    out = np.zeros(len(classes))
    for i, k in enumerate(classes):
        xs = x if y is None else x[y != k]
        if not len(xs):
            out[i] = math.nan
            continue
        pred = predict_logits(model, apply_trigger(xs, masks[i], patterns[i]), batch_size).argmax(axis=1)
        out[i] = float((pred == k).mean())
    return out
