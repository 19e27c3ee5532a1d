"""Coverage-guided fuzz testing (DeepHunter), usable from Python without any check.

>>> from roadworthy.coverage import fuzz, random_testing
>>> result = fuzz(model, x_test[:100], y_test[:100], train=x_train, max_queries=20_000, seed=0)
>>> result.coverage_after["kmnc"].metric, len(result.valid_failures)

The pieces:

* :mod:`~roadworthy.coverage.criteria` -- NC, KMNC, NBC, SNAC, TKNC over chosen layers, their profiling
  on training data, and prediction-based feedback for black-box models;
* :mod:`~roadworthy.coverage.mutations` -- metamorphic operators under DeepHunter's semantic constraint;
* :mod:`~roadworthy.coverage.fuzzer` -- the fuzz loop (seed queue, selection strategies, power
  schedule, batch pools, validity gate) and the random-testing baseline.

Importing this package does not import torch; probes import it when they are built.
"""

from __future__ import annotations

from roadworthy.coverage._layers import Layout, Observation, make_probe
from roadworthy.coverage.criteria import (
    CRITERIA,
    Coverage,
    CoverageBook,
    CoverageSummary,
    Profile,
    make_criterion,
    measure,
    profile,
)
from roadworthy.coverage.fuzzer import (
    STRATEGIES,
    Failure,
    Fuzzer,
    FuzzResult,
    NoSeedsError,
    fuzz,
    merge_results,
    random_testing,
)
from roadworthy.coverage.mutations import Operator, default_operators, make_operators, mutate

__all__ = [
    "CRITERIA",
    "STRATEGIES",
    "Coverage",
    "CoverageBook",
    "CoverageSummary",
    "Failure",
    "FuzzResult",
    "Fuzzer",
    "Layout",
    "NoSeedsError",
    "Observation",
    "Operator",
    "Profile",
    "default_operators",
    "fuzz",
    "make_criterion",
    "make_operators",
    "make_probe",
    "measure",
    "merge_results",
    "mutate",
    "profile",
    "random_testing",
]
