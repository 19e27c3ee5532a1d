"""The ``ood`` suite: does the model know what it does not know?

Post-hoc OOD detectors (``ood.msp``, ``ood.max_logit``, ``ood.energy``, ``ood.mahalanobis``, ``ood.knn``,
ranked by ``ood.summary``) against generated far- and near-OOD inputs, and calibration
(``ood.calibration``). The algorithms (detectors, calibration maths, OOD inputs, the validity gate) are
the library :mod:`roadworthy.uncertainty`; the session's validity gate, which other suites use too, is
:func:`roadworthy.checks.reference.validity_gate`.
"""

from roadworthy.checks.ood import calibration, detection

__all__ = ["calibration", "detection"]
