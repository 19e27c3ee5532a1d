"""scikit-learn adapter (black box) and the skops loader with an explicit list of trusted types.

Scores come from ``predict_proba`` (probabilities) or, failing that, ``decision_function`` (logits; a
binary 1-D margin becomes two columns). Column ``k`` belongs to ``classes_[k]``: when the classes are
not ``0..K-1`` the adapter exposes them as ``classes_`` and :func:`roadworthy.data.validate_compat`
maps the data's labels onto them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from roadworthy.errors import InvalidInputError, UnsafeFileError, UnsupportedModelError, first_line, plural
from roadworthy.models._common import check_std, normalise, prefix, stat_array
from roadworthy.models.base import InputSpec, OutputKind

# Types skops does not trust by default but that are plain data inside scikit-learn, NumPy or SciPy
# (fitted trees, histogram-boosting predictors, loss objects, random states, sparse matrices).
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.link.Interval",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.utils._bunch.Bunch",
    "numpy.dtype",
    "numpy.ndarray",
    "numpy.float32",
    "numpy.float64",
    "numpy.int32",
    "numpy.int64",
    "numpy.bool_",
    "numpy.random._generator.Generator",
    "numpy.random._pcg64.PCG64",
    "numpy.random._mt19937.MT19937",
    "numpy.random.mtrand.RandomState",
    "scipy.sparse._csr.csr_matrix",
    "scipy.sparse._csc.csc_matrix",
    "scipy.sparse._csr.csr_array",
    "scipy.sparse._csc.csc_array",
)


def _trusted(type_name: str) -> bool:
    """A type on :data:`TRUSTED_TYPES`, or an estimator class defined inside scikit-learn."""
    if type_name in TRUSTED_TYPES:
        return True
    if not type_name.startswith("sklearn."):
        return False
    import importlib

    from sklearn.base import BaseEstimator

    module_name, _, attr = type_name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        return False
    return isinstance(cls, type) and issubclass(cls, BaseEstimator)


def load_skops(path: Path, trust_pickle: bool = False) -> Any:
    """Load a ``.skops`` file, trusting only :data:`TRUSTED_TYPES` and scikit-learn estimators.

    Raises
    ------
    UnsafeFileError
        The file holds other types and ``trust_pickle`` is false.
    InvalidInputError
        The file is not a readable skops archive.
    """
    import skops.io as sio

    try:
        untrusted = list(sio.get_untrusted_types(file=path))
    except Exception as exc:  # zip / JSON errors, translated at the boundary
        raise InvalidInputError(
            f"{path}: not a valid skops file (truncated or corrupt: {first_line(exc)})"
        ) from exc
    refused = [t for t in untrusted if not _trusted(t)]
    if refused and not trust_pickle:
        raise UnsafeFileError(
            f"{path}: the skops file holds types roadworthy does not trust ({', '.join(refused[:8])}); "
            "loading them could run code; pass --trust-pickle if you trust the file"
        )
    try:
        return sio.load(path, trusted=untrusted)
    except Exception as exc:  # skops errors, translated at the boundary
        raise InvalidInputError(f"{path}: could not load the skops file ({first_line(exc)})") from exc


class SklearnModel:
    """Wrap a fitted scikit-learn classifier (anything with ``predict_proba`` or ``decision_function``).

    Parameters
    ----------
    estimator
        A fitted classifier or pipeline.
    input_shape
        ``(D,)`` when the estimator does not record ``n_features_in_``.
    n_classes, mean, std, output, name
        As for :class:`roadworthy.models.torch.TorchModel`.
    """

    format = "sklearn"
    white_box = False
    has_features = False

    def __init__(
        self,
        estimator: Any,
        input_shape: Sequence[int] | None = None,
        n_classes: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        output: OutputKind | None = None,
        name: str | None = None,
    ) -> None:
        self.estimator = estimator
        self.name = name
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise UnsupportedModelError(
                f"{prefix(name)}the scikit-learn model has no `classes_`: it is not a fitted classifier"
            )
        self.classes_ = np.asarray(classes)
        if hasattr(estimator, "predict_proba"):
            self._method, kind = "predict_proba", "probs"
        elif hasattr(estimator, "decision_function"):
            self._method, kind = "decision_function", "logits"
        else:
            raise UnsupportedModelError(
                f"{prefix(name)}the scikit-learn model has neither predict_proba nor decision_function"
            )
        self.output: OutputKind = output or kind  # type: ignore[assignment]
        width = getattr(estimator, "n_features_in_", None)
        if width is not None:
            # the estimator knows its width; a data set that does not fit is reported by validate_compat
            shape: tuple[int, ...] = (int(width),)
        elif input_shape is not None:
            shape = (int(np.prod(tuple(input_shape))),)
        else:
            raise InvalidInputError(
                f"{prefix(name)}the scikit-learn model does not record n_features_in_; pass input_shape=(D,)"
            )
        self.input_spec = InputSpec(modality="tabular", shape=shape)
        names = getattr(estimator, "feature_names_in_", None)
        self.feature_names: list[str] | None = [str(n) for n in names] if names is not None else None
        self._mean = stat_array(mean, shape, "mean")
        self._std = stat_array(std, shape, "std")
        check_std(self._std)
        self.n_classes = len(self.classes_)
        if n_classes is not None and int(n_classes) != self.n_classes:
            raise InvalidInputError(
                f"{prefix(name)}the model has {plural(self.n_classes, 'class', 'classes')} but {n_classes} were given"
            )

    @property
    def classes_are_indices(self) -> bool:
        """True when the classes are exactly ``0..K-1`` (labels need no mapping)."""
        c = self.classes_
        return np.issubdtype(c.dtype, np.integer) and np.array_equal(c, np.arange(len(c)))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Scores ``(N, n_classes)``: probabilities or decision values, one column per ``classes_``."""
        x = normalise(np.asarray(x, dtype=np.float32).reshape(len(x), -1), self._mean, self._std)
        data: Any = x
        if self.feature_names is not None:
            import pandas as pd

            data = pd.DataFrame(x, columns=self.feature_names)
        out = np.asarray(getattr(self.estimator, self._method)(data), dtype=np.float32)
        if out.ndim == 1:
            out = np.stack([-out / 2, out / 2], axis=1)
        return out
