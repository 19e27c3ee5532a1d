"""The generic-kernel environment: NumPy, OpenCV and torch on the code paths of an old x86-64 CPU.

Another CPU takes other SIMD paths (AVX-512, AVX2 + FMA, SSE) that round differently in the last bit.
Running with these variables takes the generic paths on this machine, so a result that must not depend
on the CPU can be checked on one machine. ``make test-generic`` sets the same variables (the Makefile
spells them out; ``test_makefile_sets_the_same_generic_kernels`` keeps the two equal). NumPy names its
AVX-512 groups ``AVX512_SKX`` ... before 2.4 and ``X86_V4`` / ``X86_V3`` from 2.4 on: both spellings are
listed, and names a NumPy does not dispatch only raise an ImportWarning, which is ignored by default.
"""

from __future__ import annotations

import os

GENERIC_KERNELS: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "default",
    "OPENCV_CPU_DISABLE": "AVX512-SKX,AVX512-CLX,AVX_VNNI,AVX2,FP16,AVX,SSE4.2,SSE4.1",
    "NPY_DISABLE_CPU_FEATURES": (
        "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR X86_V4 X86_V3"
    ),
}


def native_env() -> dict[str, str]:
    """This process's environment without the generic-kernel variables."""
    return {k: v for k, v in os.environ.items() if k not in GENERIC_KERNELS}


def generic_env() -> dict[str, str]:
    """This process's environment with the generic-kernel variables set."""
    return {**native_env(), **GENERIC_KERNELS}


def running_generic() -> bool:
    """Whether this process was started with the generic-kernel variables (``make test-generic``)."""
    return all(os.environ.get(k) == v for k, v in GENERIC_KERNELS.items())
