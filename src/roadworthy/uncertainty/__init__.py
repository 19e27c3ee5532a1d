"""Does a model know what it does not know? OOD scores, calibration, OOD inputs and the validity gate.

The library behind the ``ood`` suite (and the validity gate the shift suite uses), usable without any
check: every function works on arrays (logits, features, images) and generators passed in.

:mod:`~roadworthy.uncertainty.detectors`
    Post-hoc OOD scores on logits or features (``MaxSoftmax``, ``MaxLogit``, ``Energy``,
    ``Mahalanobis``, ``KNN``; for tables ``InputMahalanobis``, ``InputKNN`` and ``IsolationForest`` on
    standardised input columns; higher = more out-of-distribution) and the metrics that rank them
    (``auroc``, ``fpr_at_tpr``, ``aupr``, ``roc_points``).
:mod:`~roadworthy.uncertainty.calibration`
    Negative log-likelihood, Brier score, temperature scaling (``fit_temperature``).
:mod:`~roadworthy.uncertainty.sources`
    Generated OOD inputs: far-OOD noise, flat colours and photo crops; near-OOD heavily shifted inputs;
    tabular noise and shuffled columns.
:mod:`~roadworthy.uncertainty.validity`
    The validity gate (Berend et al., ASE 2020): the detector that best rejects far-OOD inputs, with a
    conformal threshold that keeps about 95% of valid inputs.

Use from Python::

    from roadworthy.uncertainty import KNN, auroc, fpr_at_tpr

    knn = KNN(k=50).fit(train_features)
    print(auroc(knn.score(test_features), knn.score(ood_features)))
"""

from __future__ import annotations

from roadworthy.uncertainty.detectors import (
    DETECTORS,
    KNN,
    Detector,
    Energy,
    InputKNN,
    InputMahalanobis,
    IsolationForest,
    Mahalanobis,
    MaxLogit,
    MaxSoftmax,
    aupr,
    auroc,
    fpr_at_tpr,
    make_detector,
    roc_points,
)
from roadworthy.uncertainty.validity import ValidityGate, conformal_threshold

__all__ = [
    "DETECTORS",
    "KNN",
    "Detector",
    "Energy",
    "InputKNN",
    "InputMahalanobis",
    "IsolationForest",
    "Mahalanobis",
    "MaxLogit",
    "MaxSoftmax",
    "ValidityGate",
    "aupr",
    "auroc",
    "conformal_threshold",
    "fpr_at_tpr",
    "make_detector",
    "roc_points",
]
