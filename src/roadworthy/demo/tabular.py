"""``roadworthy demo --tabular``: a tumour classifier on a feature table, with a planted unit-drift weakness.

The data is scikit-learn's bundled Wisconsin breast-cancer table (569 rows, 30 numeric measurements of
cell nuclei, malignant or benign; nothing is downloaded). The planted weakness is the one a tabular team
meets in production: the model leans on one measurement, ``worst radius`` (a length), and another site
records lengths in other units. The model is a scikit-learn pipeline that keeps three columns
(``worst radius``, ``mean concave points``, ``area error``), standardises them and fits a logistic
regression; it accepts every column of the table, so every other column's drift costs nothing. The report
should rank ``worst radius`` first in ``shift.tab_feature_sensitivity``.

Use from Python::

    from roadworthy.demo.tabular import load_tabular_demo
    demo = load_tabular_demo()
    demo.model.predict(demo.test.x), demo.planted_feature
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from roadworthy.data.base import Dataset
from roadworthy.models.sklearn import SklearnModel
from roadworthy.results import Report

#: the column the demo model leans on, and the two weak ones it also reads
PLANTED_FEATURE = "worst radius"
USED_FEATURES = (PLANTED_FEATURE, "mean concave points", "area error")
#: share of the rows held out as evaluation data
TEST_FRACTION = 1 / 3


@dataclass
class TabularDemo:
    """The tabular demo's training and evaluation tables, its model and the planted feature's name."""

    train: Dataset
    test: Dataset
    model: SklearnModel
    planted_feature: str


def load_tabular_demo(seed: int = 0) -> TabularDemo:
    """The breast-cancer table split in two (stratified by ``seed``) and the planted model trained on it."""
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    bunch = load_breast_cancer()
    x = np.asarray(bunch.data, np.float32)
    y = np.asarray(bunch.target, np.int64)
    names = [str(n) for n in bunch.feature_names]
    classes = [str(c) for c in bunch.target_names]
    tr, te = train_test_split(np.arange(len(x)), test_size=TEST_FRACTION, stratify=y, random_state=seed)
    keep = [names.index(f) for f in USED_FEATURES]
    pipe = make_pipeline(
        ColumnTransformer([("planted", "passthrough", keep)]),
        StandardScaler(),
        LogisticRegression(max_iter=1000),
    ).fit(x[tr], y[tr])

    def table(rows: np.ndarray, path: str) -> Dataset:
        return Dataset(
            x=x[rows],
            y=y[rows],
            modality="tabular",
            class_names=classes,
            feature_names=names,
            path=path,
        )

    return TabularDemo(
        train=table(tr, "roadworthy.demo:breast_cancer/train"),
        test=table(te, "roadworthy.demo:breast_cancer/test"),
        model=SklearnModel(pipe),
        planted_feature=PLANTED_FEATURE,
    )


def run_tabular_demo(
    out: str | Path = "roadworthy-report",
    budget: str = "quick",
    seed: int = 0,
    progress: Any = None,
    say: Callable[[str], None] | None = None,
) -> Report:
    """Run every suite on the tabular demo model, write the four report files into ``out``, return the report."""
    from roadworthy.demo.command import run_and_write

    if say:
        say(
            "roadworthy demo --tabular: training the tumour classifier on scikit-learn's breast-cancer table ..."
        )
    demo = load_tabular_demo(seed=0)
    return run_and_write(
        Path(out),
        model=demo.model,
        data=demo.test,
        train_data=demo.train,
        budget=budget,
        seed=seed,
        progress=progress,
        say=say,
    )
