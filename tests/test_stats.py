"""Wilson intervals and calibration error against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from roadworthy.stats import expected_calibration_error, proportion_metrics, wilson_interval


def test_wilson_known_values():
    # 95% Wilson interval for 8/10 successes: (0.4902, 0.9433)
    lo, hi = wilson_interval(8, 10)
    assert math.isclose(lo, 0.4902, abs_tol=1e-4) and math.isclose(hi, 0.9433, abs_tol=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0


def test_interval_shrinks_with_more_samples():
    small = wilson_interval(190, 200)
    large = wilson_interval(19000, 20000)
    assert (small[1] - small[0]) > 5 * (large[1] - large[0])


@given(k=st.integers(0, 500), extra=st.integers(0, 500))
def test_wilson_contains_estimate(k, extra):
    n = k + extra
    if n == 0:
        return
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_proportion_metrics_names():
    m = proportion_metrics("clean.accuracy", np.array([True, True, False, True]))
    assert m["clean.accuracy"] == 0.75 and m["clean.accuracy_n"] == 4
    assert m["clean.accuracy_ci_low"] < 0.75 < m["clean.accuracy_ci_high"]


def test_ece_perfect_and_overconfident():
    y = np.array([0, 1, 0, 1])
    perfect = np.eye(2)[y]
    assert expected_calibration_error(perfect, y) == 0.0
    # always 99% sure, right half the time: ECE = 0.49
    probs = np.array([[0.99, 0.01]] * 4)
    assert math.isclose(expected_calibration_error(probs, y), 0.49, abs_tol=1e-9)


def test_mean_of_proportions_interval_contains_the_mean_and_ignores_empty_groups():
    import numpy as np

    from roadworthy.stats import mean_of_proportions_metrics, wilson_interval

    m = mean_of_proportions_metrics("b", np.array([9, 1, 0]), np.array([10, 4, 0]))
    assert m["b"] == (0.9 + 0.25) / 2
    assert m["b_n"] == 14
    assert 0.0 <= m["b_ci_low"] <= m["b"] <= m["b_ci_high"] <= 1.0
    lo1, hi1 = wilson_interval(9, 10)
    lo2, hi2 = wilson_interval(1, 4)
    assert m["b_ci_low"] == (lo1 + lo2) / 2 and m["b_ci_high"] == (hi1 + hi2) / 2
