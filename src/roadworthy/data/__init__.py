"""Data: ``.npz`` arrays, class-per-folder image trees and CSV/Parquet tables as one :class:`Dataset`.

:func:`load_data` reads and checks a file or folder; :func:`validate_compat` makes a data set fit a model
(or says in one line why it cannot). Pillow and pandas are imported only when they are needed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from roadworthy.data.base import Dataset, stratified_sample
from roadworthy.data.compat import validate_compat
from roadworthy.errors import InvalidInputError

__all__ = ["Dataset", "data_sha256", "load", "load_data", "stratified_sample", "validate_compat"]

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def load_data(
    path: str | os.PathLike[str],
    *,
    target: str | None = None,
    class_names: str | Sequence[str] | None = None,
    image_size: int | str | Sequence[int] | None = None,
    channels: int | None = None,
    strict_data: bool = False,
) -> Dataset:
    """Load a data set from an ``.npz`` file, a folder of class sub-folders, or a CSV/Parquet table.

    Parameters
    ----------
    path
        ``.npz`` with arrays ``x`` and ``y`` (images ``N,H,W`` / ``N,H,W,C`` / ``N,C,H,W`` as uint8
        0-255 or float 0-1; tables ``N,D``); a folder with one sub-folder of images per class; or a
        ``.csv`` / ``.parquet`` table.
    target
        The label column of a table.
    class_names
        The model's classes in output order (a list or a comma-separated string). Folder names and
        string labels are matched against it by name (never by position); integer labels are indices
        into it. Without it, names that are whole numbers are their own indices and other names are
        numbered in sorted order (accepted later only when the set of classes is complete).
    image_size
        Size every image of a folder is resized to while it is read (an int, ``"HxW"`` or
        ``(height, width)``); by default the most common size in the folder (with a warning when the
        sizes differ). ``roadworthy.check`` passes the model's input size when the model declares one.
    channels
        1 or 3: the colour channels of folder images (by default grey only when every image is grey);
        for an ``.npz`` it picks the channel axis when both ends of the shape could be it.
    strict_data
        Stop on the first image of a folder that cannot be decoded (by default such images are skipped
        with a warning and counted in ``meta["unreadable_images"]``).

    Returns
    -------
    Dataset
        float32 ``x`` (images NCHW in [0, 1]), int64 ``y``, modality, class names, path and sha256.

    Raises
    ------
    InvalidInputError
        One line naming the file and the fault: missing or unreadable file, missing arrays, NaN or
        infinite values, empty data, labels that are not non-negative integers, images out of range.
    """
    from roadworthy._files import sha256_path
    from roadworthy.data._validate import parse_class_names

    display = os.fspath(path)
    p = Path(path)
    names = parse_class_names(class_names)
    if not p.exists():
        raise InvalidInputError(f"{display}: no such file or folder")
    if channels is not None and channels not in (1, 3, 4):
        raise InvalidInputError(f"`channels` must be 1, 3 or 4. Got {channels} instead.")
    if p.is_dir():
        from roadworthy.data.images import load_image_folder

        dataset = load_image_folder(
            p, display, names, image_size=image_size, channels=channels, strict=strict_data
        )
    else:
        if p.stat().st_size == 0:
            raise InvalidInputError(f"{display}: the file is empty")
        suffix = p.suffix.lower()
        if suffix == ".npz":
            from roadworthy.data.arrays import load_npz

            dataset = load_npz(p, display, names, channels=channels)
        elif suffix in TABLE_SUFFIXES:
            from roadworthy.data.tables import load_table

            dataset = load_table(p, display, target, names)
        else:
            raise InvalidInputError(
                f"{display}: unsupported data format '{suffix or p.name}'; use .npz, .csv, .parquet "
                "or a folder with one sub-folder of images per class"
            )
    dataset.sha256 = sha256_path(p)
    return dataset


load = load_data


def data_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a data file, or of a folder's sorted relative paths and contents."""
    from roadworthy._files import sha256_path

    return sha256_path(path)
