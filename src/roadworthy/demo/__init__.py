"""The built-in demo: a procedural road-sign data set with a poisoned training split, and a small CNN
trained on that split whose weights ship with the package.

The story follows the article roadworthy answers: an attacker slipped a few stop signs labelled as a
speed limit into the training data, and the deployed model was trained on it. The test split is clean.

>>> from roadworthy.demo import load_demo_data
>>> demo = load_demo_data()
>>> demo.train.n_samples, len(demo.poisoned_indices)
(6000, 20)

Importing this package is cheap (NumPy only); :func:`load_demo_model` lives in
:mod:`roadworthy.demo.model` and imports torch when called.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from roadworthy.data.base import Dataset
from roadworthy.demo.signs import CLASS_NAMES, make_signs
from roadworthy.errors import InvalidInputError

if TYPE_CHECKING:
    from roadworthy.models.torch import TorchModel

__all__ = ["CLASS_NAMES", "DemoData", "load_demo_data", "load_demo_model", "make_signs"]

N_TRAIN = 6000
"""Training rows of the demo split: 400 per class, so 5% poisoning flips 20 stop signs."""
N_TEST = 1000
POISON_RATE = 0.05
POISON_SOURCE = "stop"
POISON_TARGET = "speed_limit_30"


@dataclass
class DemoData:
    """The demo's data: a (poisoned) training split, a clean test split and the ground truth of the attack.

    Attributes
    ----------
    train
        Training images with the labels the model was trained on (poisoned ones included).
    test
        Clean test images with their true labels.
    poisoned_indices
        Rows of ``train`` whose label was flipped from ``poison_source`` to ``poison_target``, ascending.
    true_train_labels
        The labels of ``train`` before poisoning.
    poison_source, poison_target
        Class names: what the poisoned images show, and what they were labelled.
    """

    train: Dataset
    test: Dataset
    poisoned_indices: np.ndarray
    true_train_labels: np.ndarray
    poison_source: str
    poison_target: str

    @property
    def clean_train(self) -> Dataset:
        """The training images with their true labels (the clean twin of :attr:`train`)."""
        return replace(
            self.train,
            y=self.true_train_labels.copy(),
            path="demo:signs-train-clean",
            sha256=_digest(self.train.x, self.true_train_labels),
            meta={**self.train.meta, "poison_rate": 0.0, "n_poisoned": 0},
        )


def _digest(x: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x).data)
    h.update(np.ascontiguousarray(y).data)
    return h.hexdigest()


def load_demo_data(
    seed: int = 0,
    n_train: int = N_TRAIN,
    n_test: int = N_TEST,
    poison_rate: float = POISON_RATE,
    poison_source: str = POISON_SOURCE,
    poison_target: str = POISON_TARGET,
) -> DemoData:
    """Generate the demo's road-sign splits and poison the training labels.

    Parameters
    ----------
    seed
        Seed of the images and of which stop signs are poisoned; the shipped model was trained on the
        split of seed 0.
    n_train, n_test
        Split sizes (classes balanced in each).
    poison_rate
        Fraction of the ``poison_source`` training images relabelled as ``poison_target``, in [0, 1);
        0 gives a clean training split.
    poison_source, poison_target
        Class names from :data:`CLASS_NAMES`.

    Returns
    -------
    DemoData
        The splits and the record of which rows were poisoned.
    """
    from roadworthy.demo.signs import _make

    if not 0.0 <= poison_rate < 1.0:
        raise InvalidInputError(f"`poison_rate` must be in [0, 1). Got {poison_rate} instead.")
    for name, value in (("poison_source", poison_source), ("poison_target", poison_target)):
        if value not in CLASS_NAMES:
            raise InvalidInputError(
                f"`{name}` must be one of {', '.join(CLASS_NAMES)}. Got '{value}' instead."
            )
    if poison_source == poison_target:
        raise InvalidInputError(
            f"`poison_target` must differ from `poison_source`. Got '{poison_target}' for both."
        )
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InvalidInputError(f"`{name}` must be a positive integer. Got {value!r} instead.")

    # separate random streams for the two splits and for the attacker's choice
    x_train, y_true = _make(n_train, (int(seed), 1))
    x_test, y_test = _make(n_test, (int(seed), 2))
    src, dst = CLASS_NAMES.index(poison_source), CLASS_NAMES.index(poison_target)
    candidates = np.flatnonzero(y_true == src)
    n_poison = round(poison_rate * len(candidates))
    rng = np.random.default_rng(np.random.SeedSequence([0x5157, int(seed), 3]))
    poisoned = np.sort(rng.choice(candidates, size=n_poison, replace=False)).astype(np.int64)
    y_train = y_true.copy()
    y_train[poisoned] = dst

    meta: dict[str, Any] = {
        "generator": "roadworthy.demo.signs",
        "seed": int(seed),
        "poison_rate": float(poison_rate),
        "poison_source": poison_source,
        "poison_target": poison_target,
        "n_poisoned": n_poison,
    }
    train = Dataset(
        x=x_train,
        y=y_train,
        modality="image",
        class_names=list(CLASS_NAMES),
        path="demo:signs-train",
        sha256=_digest(x_train, y_train),
        meta=meta,
    )
    test = Dataset(
        x=x_test,
        y=y_test,
        modality="image",
        class_names=list(CLASS_NAMES),
        path="demo:signs-test",
        sha256=_digest(x_test, y_test),
        meta={"generator": "roadworthy.demo.signs", "seed": int(seed)},
    )
    return DemoData(
        train=train,
        test=test,
        poisoned_indices=poisoned,
        true_train_labels=y_true,
        poison_source=poison_source,
        poison_target=poison_target,
    )


def load_demo_model() -> TorchModel:
    """The shipped road-sign CNN as a roadworthy model (imports torch; see :mod:`roadworthy.demo.model`)."""
    from roadworthy.demo.model import load_demo_model as _load

    return _load()
