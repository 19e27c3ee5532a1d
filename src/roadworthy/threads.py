"""Thread limits for memory-bound array work.

Many small matrix products (integrity checks per class and fold, the shifts' batched resampling and JPEG
emulation) gain nothing from a second thread, and on a busy machine the thread pools' spin-waiting made the
same work tens of times slower. These context managers hold the pools to one thread for a block.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any


@functools.lru_cache(maxsize=1)
def _controller() -> Any:
    from threadpoolctl import ThreadpoolController  # ships with scikit-learn

    return ThreadpoolController()  # inspects the loaded libraries once (milliseconds); limiting is then cheap


def single_threaded_blas() -> Any:
    """A context manager limiting BLAS/OpenMP (NumPy's, SciPy's, scikit-learn's) to one thread."""
    return _controller().limit(limits=1)


@contextlib.contextmanager
def single_threaded(blas: bool = False) -> Iterator[None]:
    """torch, and with ``blas`` also BLAS/OpenMP, on one thread for the block; restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with single_threaded_blas() if blas else contextlib.nullcontext():
            yield
    finally:
        torch.set_num_threads(threads)
