"""A folder with one sub-folder of images per class (``data/stop/001.png``, ``data/yield/...``).

Class names are the sub-folders' names, sorted; label ``k`` is the ``k``-th name. Every image is
resized to one common size (the first image's, or ``image_size``) and converted to grey when all images
are grey, else RGB (or to ``channels``). Files Pillow cannot identify are skipped with one warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from roadworthy.data._validate import apply_class_names
from roadworthy.data.base import Dataset
from roadworthy.errors import InvalidInputError, RoadworthyWarning
from roadworthy.models._common import first_line

_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def load_image_folder(
    path: Path,
    display: str,
    class_names: list[str] | None = None,
    image_size: int | Sequence[int] | None = None,
    channels: int | None = None,
) -> Dataset:
    """Read a class-per-folder image tree into float32 NCHW in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    if channels not in (None, 1, 3):
        raise InvalidInputError(f"`channels` must be 1 or 3 for an image folder. Got {channels} instead.")
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    skipped = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    if not folders:
        raise InvalidInputError(
            f"{display}: expected one sub-folder of images per class, found no sub-folders"
        )
    size = _size(image_size)
    images: list[np.ndarray] = []
    labels: list[int] = []
    grey: list[bool] = []
    empty: list[str] = []
    for label, folder in enumerate(folders):
        count = 0
        for file in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            try:
                with Image.open(file) as img:
                    img.load()
                    is_grey = img.mode in _GREY_MODES
                    img = img.convert("L" if is_grey else "RGB")
                    if size is None:
                        size = img.size
                    if img.size != size:
                        img = img.resize(size, Image.Resampling.BILINEAR)
                    array = np.asarray(img, dtype=np.uint8)
            except UnidentifiedImageError:
                skipped.append(file)
                continue
            except OSError as exc:
                raise InvalidInputError(f"{file}: cannot read the image ({first_line(exc)})") from exc
            images.append(array if array.ndim == 3 else array[:, :, None])
            grey.append(is_grey)
            labels.append(label)
            count += 1
        if count == 0:
            empty.append(folder.name)
    if skipped:
        shown = ", ".join(p.name for p in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        warnings.warn(
            f"{display}: skipped {len(skipped)} file{'s' if len(skipped) != 1 else ''} that "
            f"{'are' if len(skipped) != 1 else 'is'} not an image ({shown})",
            RoadworthyWarning,
            stacklevel=3,
        )
    if not images:
        raise InvalidInputError(f"{display}: no images found in {len(folders)} class folders (empty data)")
    if empty:
        warnings.warn(
            f"{display}: class folder{'s' if len(empty) > 1 else ''} {', '.join(empty)} hold no images",
            RoadworthyWarning,
            stacklevel=3,
        )
    want = channels or (1 if all(grey) else 3)
    x = np.stack([_channels(a, want) for a in images]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    y = np.asarray(labels, dtype=np.int64)
    found = [f.name for f in folders]
    return Dataset(
        x=x,
        y=y,
        modality="image",
        class_names=apply_class_names(found, class_names, y, display),
        path=display,
        meta={"format": "image-folder", "skipped_files": len(skipped), "label_values": found},
    )


def _size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """Pillow's ``(width, height)`` from ``image_size`` (an int, or ``(height, width)``)."""
    if image_size is None:
        return None
    if isinstance(image_size, int):
        h = w = image_size
    else:
        h, w = (int(s) for s in image_size)
    if h < 1 or w < 1:
        raise InvalidInputError(f"`image_size` must be positive. Got {image_size} instead.")
    return (w, h)


def _channels(a: np.ndarray, want: int) -> np.ndarray:
    """HWC uint8 with ``want`` channels: grey repeated to RGB, RGB to grey by luminance."""
    if a.shape[2] == want:
        return a
    if want == 3:
        return np.repeat(a, 3, axis=2)
    luminance = a.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(np.round(luminance), 0, 255).astype(np.uint8)[:, :, None]
