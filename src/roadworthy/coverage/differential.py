"""Differential testing of two artifacts of one model: how often and how far their outputs part.

A model is trained in one framework and shipped as another file: an ONNX or TorchScript export, an int8
copy for an edge device. The shipped artifact should answer like the *reference* it was made from. This
module measures that on any inputs, without any check::

    >>> from roadworthy.coverage.differential import compare_outputs
    >>> c = compare_outputs(shipped.predict(x), shipped.output, trained.predict(x), trained.output)
    >>> c.disagreement, c.max_abs_diff, c.p99_abs_diff

* **Top-1 disagreement**: the share of inputs on which the two predict different classes. An exact export
  disagrees nowhere; a quantized copy on a few inputs near the decision boundary.
* **Output difference**: per input, the largest absolute difference between the two output vectors
  (over the classes); reported as its maximum and 99th percentile over the inputs. Logits are compared
  when both models give logits (a float-exact export differs by ~1e-6); probabilities otherwise, because
  logits cannot be recovered from probabilities up to the same constant (``space`` says which).

The parity suite (``roadworthy.checks.parity``) runs this on the evaluation data, its shifts, the
reference's adversarial inputs and random mutants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from roadworthy.errors import InvalidInputError
from roadworthy.models.base import to_probs

__all__ = ["Comparison", "DiffFuzzResult", "compare_outputs", "differential_fuzz", "gap"]

Space = Literal["logits", "probabilities"]


@dataclass
class Comparison:
    """Two models' outputs on the same ``n`` inputs, compared input by input.

    Attributes
    ----------
    pred, reference_pred
        Top-1 classes of the model under test and of the reference, ``(n,)``.
    confidence, reference_confidence
        Their top-1 probabilities, ``(n,)``.
    abs_diff
        Per input, the largest absolute difference between the two output vectors in ``space``, ``(n,)``.
    space
        ``"logits"`` when both models give logits, else ``"probabilities"``.
    """

    pred: np.ndarray
    reference_pred: np.ndarray
    confidence: np.ndarray
    reference_confidence: np.ndarray
    abs_diff: np.ndarray
    space: Space

    @property
    def n(self) -> int:
        return int(self.pred.size)

    @property
    def disagree(self) -> np.ndarray:
        """``(n,)`` bool: the two top-1 classes differ."""
        return self.pred != self.reference_pred

    @property
    def disagreements(self) -> int:
        return int(np.count_nonzero(self.disagree))

    @property
    def disagreement(self) -> float:
        """Top-1 disagreement rate (NaN for no inputs)."""
        return self.disagreements / self.n if self.n else float("nan")

    @property
    def max_abs_diff(self) -> float:
        return float(self.abs_diff.max()) if self.n else float("nan")

    @property
    def p99_abs_diff(self) -> float:
        return float(np.percentile(self.abs_diff, 99)) if self.n else float("nan")

    @classmethod
    def concat(cls, parts: list[Comparison]) -> Comparison:
        """One comparison of the inputs of ``parts`` together (all in the same ``space``)."""
        if not parts:
            raise InvalidInputError("differential: nothing to concatenate (no comparisons given)")
        spaces = {p.space for p in parts}
        if len(spaces) != 1:
            raise InvalidInputError(f"differential: comparisons in different spaces {sorted(spaces)}")
        return cls(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in _ARRAYS),
            space=parts[0].space,
        )


_ARRAYS = ("pred", "reference_pred", "confidence", "reference_confidence", "abs_diff")


def compare_outputs(
    raw: np.ndarray, output: str, reference_raw: np.ndarray, reference_output: str
) -> Comparison:
    """Compare raw outputs of a model and of its reference on the same inputs.

    Parameters
    ----------
    raw, reference_raw
        ``(n, k)`` outputs as the models return them (``predict``).
    output, reference_output
        What each returns: ``"logits"`` or ``"probs"`` (the models' ``output`` attribute).

    Returns
    -------
    Comparison
        In logits when both give logits, else in probabilities.

    Raises
    ------
    InvalidInputError
        When the two output arrays do not have the same shape (other class counts, other inputs).
    """
    a, b = np.asarray(raw, np.float32), np.asarray(reference_raw, np.float32)
    if a.shape != b.shape or a.ndim != 2:
        raise InvalidInputError(
            f"differential: the model's outputs {a.shape} and the reference's {b.shape} must be the same "
            "(n, classes) shape: both models must score the same classes"
        )
    pa, pb = to_probs(a, output), to_probs(b, reference_output)  # type: ignore[arg-type]
    space: Space = "logits" if output == "logits" and reference_output == "logits" else "probabilities"
    if space == "logits":
        da, db = a, b
    else:
        da, db = pa, pb
    diff = np.abs(da.astype(np.float64) - db.astype(np.float64))
    diff = np.where(np.isfinite(diff), diff, np.inf)  # a NaN output is as far apart as it gets
    n = len(a)
    pred, ref_pred = pa.argmax(axis=1), pb.argmax(axis=1)
    return Comparison(
        pred=pred,
        reference_pred=ref_pred,
        confidence=pa[np.arange(n), pred].astype(np.float64),
        reference_confidence=pb[np.arange(n), ref_pred].astype(np.float64),
        abs_diff=diff.max(axis=1) if diff.shape[1] else np.zeros(n),
        space=space,
    )


# ------------------------------------------------------------------------------- differential fuzzing


@dataclass
class DiffFuzzResult:
    """What :func:`differential_fuzz` found.

    Attributes
    ----------
    queries
        Mutants sent to both models.
    disagreements
        ``(mutant, root seed index, model class, reference class, gap)`` for every mutant on which the two
        top-1 classes differ and the validity gate (if any) accepts it.
    invalid_disagreements
        Disagreeing mutants the validity gate rejected (not counted as findings).
    history
        ``{"queries", "disagreements"}`` after each iteration.
    guided
        Whether mutants were kept by the gap they widen (DiffChaser) or every mutant was kept (random).
    """

    queries: int
    disagreements: list[tuple[np.ndarray, int, int, int, float]]
    invalid_disagreements: int
    history: list[dict[str, int]]
    guided: bool

    @property
    def per_10k_queries(self) -> float:
        """Valid disagreements found per 10,000 queries."""
        return 1e4 * len(self.disagreements) / self.queries if self.queries else float("nan")

    @property
    def seeds_with_disagreement(self) -> int:
        return len({d[1] for d in self.disagreements})


def gap(raw: np.ndarray, output: str, reference_raw: np.ndarray, reference_output: str) -> np.ndarray:
    """How far two models are from agreeing on each input, higher is closer to a disagreement.

    ``p_model(c) - p_reference(c)`` where ``c`` is the reference's top class, flipped in sign: the
    probability the model under test takes away from the reference's answer (DiffChaser's fitness for
    a disagreement on the reference's label). Inputs on which they already disagree score above any that
    agree.
    """
    pa, pb = (
        to_probs(np.asarray(raw, np.float32), output),
        to_probs(np.asarray(reference_raw, np.float32), reference_output),
    )  # type: ignore[arg-type]
    c = pb.argmax(axis=1)
    rows = np.arange(len(c))
    score = pb[rows, c] - pa[rows, c]
    return np.where(pa.argmax(axis=1) != c, 1.0 + score, score)


def differential_fuzz(
    predict: Any,
    output: str,
    reference_predict: Any,
    reference_output: str,
    x: np.ndarray,
    *,
    max_queries: int = 2000,
    mutants_per_seed: int = 8,
    seeds_per_iteration: int = 8,
    guided: bool = True,
    is_valid: Any = None,
    seed: int = 0,
    operators: Any = None,
) -> DiffFuzzResult:
    """Search for inputs on which two models disagree, steered by the gap between their outputs.

    DiffChaser (Xie et al., ASE 2019) in the fuzz suite's terms: seeds are images both models agree on;
    each iteration picks the queue entries with the widest gap (:func:`gap`, ties and the rest by
    chance), mutates each ``mutants_per_seed`` times with DeepHunter's metamorphic operators under its
    L0/Linf constraint (the same validity rules as the fuzz suite), and sends the mutants to both models.
    A mutant on which the top-1 classes differ is a *disagreement* (counted when ``is_valid`` accepts it,
    else as invalid); a mutant that widens its parent's gap joins the queue. With ``guided=False``
    every mutant joins and parents are drawn uniformly: random mutation, the baseline with the same
    budget.

    Parameters
    ----------
    predict, reference_predict
        ``f(x) -> raw outputs`` of the model under test and of the reference (batches).
    output, reference_output
        ``"logits"`` or ``"probs"``.
    x
        Seed images ``(n, C, H, W)`` float32 in [0, 1].
    max_queries
        Mutants sent to both models in all.
    is_valid
        ``f(x) -> bool array``: the validity gate (``None``: every mutant is valid).
    seed
        Seeds every random choice.
    """
    from roadworthy.coverage.mutations import mutate

    if x.ndim != 4 or len(x) == 0:
        raise InvalidInputError(
            f"differential_fuzz: `x` must be a non-empty (N, C, H, W) batch. Got {x.shape}."
        )
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float32)
    g0 = gap(predict(x), output, reference_predict(x), reference_output)
    keep = np.flatnonzero(g0 < 1.0)  # seeds they already disagree on say nothing new
    # the queue: current image, its root seed, root image, lineage state, gap
    q_x = list(x[keep])
    q_root = [int(i) for i in keep]
    q_ref = list(x[keep])
    q_aff = [False] * len(keep)
    q_l0 = [0] * len(keep)
    q_linf = [0.0] * len(keep)
    q_gap = [float(g0[i]) for i in keep]
    found: list[tuple[np.ndarray, int, int, int, float]] = []
    invalid = 0
    queries = 0
    history: list[dict[str, int]] = []
    while queries < max_queries and q_x:
        k = min(seeds_per_iteration, len(q_x))
        if guided:  # the widest gaps first; a little chance so that one lineage does not take over
            noisy = np.asarray(q_gap) + 1e-3 * rng.random(len(q_gap))
            picks = np.argsort(-noisy)[:k]
        else:
            picks = rng.choice(len(q_x), size=k, replace=False)
        m = min(mutants_per_seed, max(1, (max_queries - queries) // k))
        rep = np.repeat(picks, m)
        batch = mutate(
            np.stack([q_x[i] for i in rep]),
            np.stack([q_ref[i] for i in rep]),
            np.array([q_aff[i] for i in rep]),
            np.array([q_l0[i] for i in rep], np.int64),
            np.array([q_linf[i] for i in rep], np.float32),
            rng,
            operators,
        )
        ok = np.flatnonzero(batch.ok)[: max_queries - queries]
        if ok.size == 0:
            if guided:  # these parents cannot be mutated further: let the others come up
                for i in picks:
                    q_gap[int(i)] = -np.inf
                if all(not np.isfinite(v) for v in q_gap):
                    break
            continue
        xm = batch.x[ok]
        raw_a, raw_b = predict(xm), reference_predict(xm)
        g = gap(raw_a, output, raw_b, reference_output)
        queries += int(ok.size)
        pa = to_probs(np.asarray(raw_a, np.float32), output).argmax(axis=1)  # type: ignore[arg-type]
        pb = to_probs(np.asarray(raw_b, np.float32), reference_output).argmax(axis=1)  # type: ignore[arg-type]
        differ = pa != pb
        valid = (
            np.asarray(is_valid(xm), bool)
            if (is_valid is not None and differ.any())
            else np.ones(len(ok), bool)
        )
        for j, row in enumerate(ok):
            parent = int(rep[row])
            if differ[j]:
                if valid[j]:
                    found.append((xm[j], q_root[parent], int(pa[j]), int(pb[j]), float(g[j])))
                else:
                    invalid += 1
                continue
            if not guided or g[j] > q_gap[parent]:
                q_x.append(xm[j])
                q_root.append(q_root[parent])
                q_ref.append(batch.ref[row])
                q_aff.append(bool(batch.affine_used[row]))
                q_l0.append(int(batch.l0_ref[row]))
                q_linf.append(float(batch.linf_ref[row]))
                q_gap.append(float(g[j]))
        history.append({"queries": queries, "disagreements": len(found)})
    return DiffFuzzResult(queries, found, invalid, history, guided)
