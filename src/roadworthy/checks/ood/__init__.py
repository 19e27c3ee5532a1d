"""The ``ood`` suite: does the model know what it does not know?

Post-hoc OOD detectors (``ood.msp``, ``ood.max_logit``, ``ood.energy``, ``ood.mahalanobis``, ``ood.knn``,
ranked by ``ood.summary``) against generated far- and near-OOD inputs, calibration (``ood.calibration``),
and the validity gate other suites use to tell real defects from inputs that left the data distribution.
"""

from roadworthy.checks.ood import calibration, detection, validity
from roadworthy.checks.ood.validity import ValidityGate, validity_gate

__all__ = ["ValidityGate", "calibration", "detection", "validity", "validity_gate"]
