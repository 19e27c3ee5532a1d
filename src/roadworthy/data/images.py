"""A folder with one sub-folder of images per class (``data/stop/001.png``, ``data/yield/...``).

Labels come from the sub-folders' *names*: matched against the class list when one is known (the
user's ``class_names``, or the training data's), read as indices when the names are whole numbers, and
otherwise numbered in sorted order (a guess checked against the model later). A test folder that lacks
a class therefore never shifts the labels of the others.

Memory is bounded by the result, not by the files: the images are first scanned by header only (size
and colour mode, no pixels), then decoded one at a time, shrunk while decoding where the format allows
it (JPEG draft mode), resized to one common size and written into a preallocated float32 array. The
size is ``image_size`` (the caller passes the model's input size when the model declares one), else the
most common size in the folder. Images are grey when all are grey, else RGB (or ``channels``).

Files Pillow cannot identify are skipped with one warning; image files that cannot be decoded (a
truncated or corrupt JPEG) are skipped with another, counted in ``meta``, unless ``strict`` is set,
when the first one is an error naming it.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from roadworthy.data._validate import labels_from_names
from roadworthy.data.base import Dataset
from roadworthy.errors import InvalidInputError, RoadworthyWarning, first_line, plural

_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def load_image_folder(
    path: Path,
    display: str,
    class_names: list[str] | None = None,
    image_size: int | str | Sequence[int] | None = None,
    channels: int | None = None,
    strict: bool = False,
) -> Dataset:
    """Read a class-per-folder image tree into float32 NCHW in [0, 1]; see the module docstring."""
    from PIL import Image

    if channels not in (None, 1, 3):
        raise InvalidInputError(f"`channels` must be 1 or 3 for an image folder. Got {channels} instead.")
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    not_images = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    if not folders:
        raise InvalidInputError(
            f"{display}: expected one sub-folder of images per class, found no sub-folders"
        )
    folder_labels, names, label_meta = labels_from_names(
        np.array([f.name for f in folders]), display, class_names, "class folder"
    )
    image_suffixes = set(Image.registered_extensions())
    entries: list[tuple[Path, int, tuple[int, int], bool]] = []  # file, label, (width, height), grey
    unreadable: list[tuple[Path, str]] = []
    empty: list[str] = []
    for folder, label in zip(folders, folder_labels.tolist(), strict=True):
        count = 0
        for file in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            header = _header(Image, file)
            if isinstance(header, str):
                if file.suffix.lower() in image_suffixes:
                    unreadable.append((file, header))
                    if strict:
                        raise InvalidInputError(f"{file}: cannot read the image ({header})")
                else:
                    not_images.append(file)
                continue
            entries.append((file, int(label), header[0], header[1]))
            count += 1
        if count == 0:
            empty.append(folder.name)
    if not_images:
        shown = ", ".join(p.name for p in not_images[:3]) + (", ..." if len(not_images) > 3 else "")
        warnings.warn(
            f"{display}: skipped {plural(len(not_images), 'file')} that "
            f"{'are' if len(not_images) != 1 else 'is'} not an image ({shown})",
            RoadworthyWarning,
            stacklevel=3,
        )
    if not entries:
        raise InvalidInputError(
            f"{display}: no images found in {plural(len(folders), 'class folder')} (empty data)"
        )
    if empty:
        warnings.warn(
            f"{display}: class folder{'s' if len(empty) > 1 else ''} {', '.join(empty)} "
            f"hold{'' if len(empty) > 1 else 's'} no images",
            RoadworthyWarning,
            stacklevel=3,
        )
    size = _size(image_size) or _common_size(display, [e[2] for e in entries])
    want = channels or (1 if all(e[3] for e in entries) else 3)
    x = np.empty((len(entries), want, size[1], size[0]), dtype=np.float32)
    labels = np.empty(len(entries), dtype=np.int64)
    n = 0
    for file, label, _, _ in entries:
        try:
            x[n] = _decode(Image, file, size, want)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            if strict:
                raise InvalidInputError(f"{file}: cannot read the image ({first_line(exc)})") from exc
            unreadable.append((file, first_line(exc)))
            continue
        labels[n] = label
        n += 1
    if unreadable:
        unreadable.sort()
        shown = ", ".join(f"{p.name} ({why})" for p, why in unreadable[:3])
        warnings.warn(
            f"{display}: skipped {plural(len(unreadable), 'unreadable image')} "
            f"({shown}{', ...' if len(unreadable) > 3 else ''}); pass --strict-data to stop on them instead",
            RoadworthyWarning,
            stacklevel=3,
        )
    if n == 0:
        raise InvalidInputError(f"{display}: none of the {plural(len(entries), 'image')} could be read")
    if n < len(entries):
        x.resize((n, *x.shape[1:]), refcheck=False)  # shrinks in place, no second copy
        labels = labels[:n].copy()
    return Dataset(
        x=x,
        y=labels,
        modality="image",
        class_names=names,
        path=display,
        meta={
            "format": "image-folder",
            "skipped_files": len(not_images),
            "unreadable_images": len(unreadable),
            "unreadable_files": [str(p) for p, _ in unreadable[:20]],
            "folders": [f.name for f in folders],
            "label_kind": "class folders",
            **label_meta,
        },
    )


def _header(image_module: Any, file: Path) -> tuple[tuple[int, int], bool] | str:
    """``((width, height), is_grey)`` from the file's header (no pixels decoded), or why it failed."""
    try:
        with image_module.open(file) as img:
            return img.size, img.mode in _GREY_MODES
    except image_module.UnidentifiedImageError:
        return "not a format Pillow recognises"
    except (OSError, SyntaxError, ValueError, image_module.DecompressionBombError) as exc:
        return first_line(exc)


def _decode(image_module: Any, file: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image as float32 ``(channels, height, width)`` in [0, 1], at ``size`` (width, height).

    JPEGs are decoded at the smallest power-of-two reduction still at least ``size`` (draft mode), so
    a 12-megapixel photo for a 224-px model never exists in memory at full size.
    """
    mode = "L" if channels == 1 else "RGB"
    with image_module.open(file) as img:
        if img.format == "JPEG":
            img.draft(mode, size)
        img.load()
        if img.mode != mode:
            img = img.convert(mode)
        if img.size != size:
            img = img.resize(size, image_module.Resampling.BILINEAR, reducing_gap=3.0)
        array = np.asarray(img, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return array.astype(np.float32) * np.float32(1 / 255)


def _common_size(display: str, sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The most common ``(width, height)``; a warning says so when the images differ in size."""
    counts = Counter(sizes)
    (w, h), k = counts.most_common(1)[0]
    if len(counts) > 1:
        warnings.warn(
            f"{display}: the images come in {len(counts)} sizes; all were resized to the most common, "
            f"{h}x{w} ({k} of {len(sizes)}); pass --image-size HxW (or a model that declares its input "
            "size) to choose",
            RoadworthyWarning,
            stacklevel=4,
        )
    return (w, h)


def _size(image_size: int | str | Sequence[int] | None) -> tuple[int, int] | None:
    """Pillow's ``(width, height)`` from ``image_size``: an int, ``"H"``, ``"HxW"`` or ``(height, width)``."""
    if image_size is None:
        return None
    try:
        if isinstance(image_size, str):
            parts = [int(s) for s in image_size.lower().replace(",", "x").split("x")]
        elif isinstance(image_size, int | np.integer):
            parts = [int(image_size)]
        else:
            parts = [int(s) for s in image_size]
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"`image_size` must be a size like 224 or 224x160 (height x width). Got {image_size!r}."
        ) from exc
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise InvalidInputError(
            f"`image_size` must be one or two positive sizes (height x width). Got {image_size!r}."
        )
    h, w = parts
    return (w, h)
