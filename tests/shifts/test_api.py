"""The shift library's public use from Python: by name with a seed, without any check machinery."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from roadworthy import shifts
from roadworthy.errors import InvalidInputError


def _images() -> np.ndarray:
    return np.random.default_rng(7).random((3, 3, 24, 24), dtype=np.float32)


def test_apply_by_name_with_a_seed_is_the_shift_with_that_generator() -> None:
    x = _images()
    out = shifts.apply("gaussian_noise", x, severity=3, seed=0)
    expect = shifts.SHIFTS["gaussian_noise"].apply(x, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(out, expect)
    np.testing.assert_array_equal(shifts.apply("gaussian_noise", x, severity=3, seed=0), out)
    assert not np.array_equal(shifts.apply("gaussian_noise", x, severity=3, seed=1), out)
    assert out.shape == x.shape and out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1


def test_apply_takes_a_generator_and_advances_it() -> None:
    x = _images()
    rng = np.random.default_rng(0)
    first = shifts.apply("fog", x, 2, seed=rng)
    second = shifts.apply("fog", x, 2, seed=rng)
    np.testing.assert_array_equal(first, shifts.apply("fog", x, 2, seed=0))
    assert not np.array_equal(first, second)


def test_apply_names_the_known_shifts_when_the_name_is_wrong() -> None:
    with pytest.raises(InvalidInputError, match="gaussian_noise"):
        shifts.apply("gausian_noise", _images(), 1)


def test_the_libraries_import_without_checks_or_report() -> None:
    code = (
        "import sys, roadworthy.shifts, roadworthy.uncertainty, roadworthy.uncertainty.sources, "
        "roadworthy.uncertainty.calibration; "
        "bad = sorted(m for m in sys.modules if m.startswith(('roadworthy.checks', 'roadworthy.report'))); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
