"""Fixtures of the attack checks' tests: the same as the attack algorithms' (tests/attacks/conftest.py)."""

from tests.attacks.conftest import (  # noqa: F401 - fixtures and helpers
    ROUGH,
    _one_torch_thread,
    digits_onnx_model,
    headline,
    low_digits,
    masked_ctx,
    masked_model,
    noise_is_zero_model,
    onnx_ctx,
    roughness,
)
