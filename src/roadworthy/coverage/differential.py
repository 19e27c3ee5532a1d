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
from typing import Literal

import numpy as np

from roadworthy.errors import InvalidInputError
from roadworthy.models.base import to_probs

__all__ = ["Comparison", "compare_outputs"]

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
