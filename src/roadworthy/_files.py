"""Files: atomic writes that leave no ``*.tmp`` behind, and content fingerprints.

On the ground floor: it imports nothing of roadworthy. Models and data sets are hashed here, once per
load (:func:`sha256_path`), and the hash travels with the loaded object.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any


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


def sha256_path(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, or of a folder's sorted relative paths and file contents."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(item.relative_to(path).as_posix().encode())
            digest.update(b"\0")
            _update_file(digest, item)
    else:
        _update_file(digest, path)
    return digest.hexdigest()


def _update_file(digest: Any, path: Path) -> None:
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
