"""Files: atomic writes that leave no ``*.tmp`` behind, and content fingerprints."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so readers never see half a file.

    On failure (disk full, permission denied) the temporary file is removed and the ``OSError``
    propagates; an existing ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def array_fingerprint(*arrays: object) -> str:
    """sha256 over the dtype, shape and bytes of NumPy arrays (data given in memory, not as a file)."""
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        arr = np.ascontiguousarray(a)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr)
    return h.hexdigest()
