"""Backdoor and poisoning detection, usable from Python without any check.

>>> from roadworthy.backdoor import neural_cleanse, scan_training_data, strip, attack_success
>>> nc = neural_cleanse(model, x_clean[:200], y_clean[:200], seed=0)      # model-level, white box
>>> nc.flagged(), nc.anomaly_index, nc.trigger(nc.suspect)
>>> scan = scan_training_data(y_train, features=model.features(x_train), x=x_train, model=model)
>>> scan.flagged(), scan.finding(0).suspects[:20]                         # data-level
>>> mask, pattern = nc.trigger(nc.suspect)
>>> attack_success(model, x_test, y_test, mask, pattern, nc.suspect).rate  # confirmation
>>> strip(model, x_clean, x_triggered).detector.detect(x_new)             # input-level, queries only

The pieces:

* :mod:`~roadworthy.backdoor.neural_cleanse` -- per-class trigger reverse-engineering and the MAD
  anomaly index (Wang et al. 2019); white-box models;
* :mod:`~roadworthy.backdoor.strip` -- the STRIP input detector (Gao et al. 2019); queries only;
* :mod:`~roadworthy.backdoor.spectral` -- SCAn's untangling statistic under the other classes'
  covariance (Tang et al. 2021), robust to a poisoned majority of a class;
* :mod:`~roadworthy.backdoor.clusters` -- the per-class training-data scan: scores, the method that
  raised them, suspects ranked, the suspect group's common pattern and its attack success;
* :mod:`~roadworthy.backdoor.confirm` -- attack success of a trigger pasted on clean inputs of other
  classes, and a group's common input pattern;
* :mod:`~roadworthy.backdoor.plant` -- BadNets and blended backdoors planted in a training set (tests,
  benchmarks).

Functions measure; none says pass or fail. The suggested cuts are the module constants
:data:`ANOMALY_THRESHOLD`, :data:`SCORE_THRESHOLD` and :data:`SUCCESS_THRESHOLD`; the data-level trigger
test's level is :data:`SIGNIFICANCE` (``ClassFinding.trigger_p`` against the other classes' patterns).
Importing this package does not import torch.
"""

from __future__ import annotations

from roadworthy.backdoor.clusters import SIGNIFICANCE, ClassFinding, PoisoningScan, scan_training_data
from roadworthy.backdoor.confirm import SUCCESS_THRESHOLD, AttackSuccess, attack_success, common_pattern
from roadworthy.backdoor.neural_cleanse import (
    ANOMALY_THRESHOLD,
    NeuralCleanseResult,
    anomaly_index,
    neural_cleanse,
)
from roadworthy.backdoor.plant import (
    PlantedBackdoor,
    Trigger,
    apply_trigger,
    badnets_trigger,
    blended_trigger,
    plant,
    plant_all_to_all,
    plant_badnets,
    plant_blended,
)
from roadworthy.backdoor.spectral import SCORE_THRESHOLD, Untangled, class_scores, untangle
from roadworthy.backdoor.strip import DEFAULT_FRR, StripDetector, StripResult, strip

__all__ = [
    "ANOMALY_THRESHOLD",
    "DEFAULT_FRR",
    "SCORE_THRESHOLD",
    "SIGNIFICANCE",
    "SUCCESS_THRESHOLD",
    "AttackSuccess",
    "ClassFinding",
    "NeuralCleanseResult",
    "PlantedBackdoor",
    "PoisoningScan",
    "StripDetector",
    "StripResult",
    "Trigger",
    "Untangled",
    "anomaly_index",
    "apply_trigger",
    "attack_success",
    "badnets_trigger",
    "blended_trigger",
    "class_scores",
    "common_pattern",
    "neural_cleanse",
    "plant",
    "plant_all_to_all",
    "plant_badnets",
    "plant_blended",
    "scan_training_data",
    "strip",
    "untangle",
]
