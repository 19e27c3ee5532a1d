"""CSV and Parquet tables with a target column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from roadworthy.data import load_data
from roadworthy.errors import InvalidInputError


@pytest.fixture()
def frame():
    import pandas as pd

    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, 20),
            "income": rng.normal(5e4, 1e4, 20),
            "member": rng.integers(0, 2, 20).astype(bool),
            "risk": np.array(["low", "high", "mid", "low"] * 5),
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_with_string_target(suffix, frame, tmp_path):
    path = tmp_path / f"people{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    ds = load_data(path, target="risk")
    assert ds.modality == "tabular"
    assert ds.feature_names == ["age", "income", "member"]
    assert ds.input_shape == (3,) and ds.x.dtype == np.float32
    assert ds.class_names == ["high", "low", "mid"]  # sorted
    assert ds.y[:4].tolist() == [1, 0, 2, 1]
    np.testing.assert_allclose(ds.x[:, 1], frame["income"].to_numpy(), rtol=1e-6)
    assert ds.meta["label_values"] == ["high", "low", "mid"]
    assert len(ds.sha256) == 64


def test_integer_target_is_used_as_is(frame, tmp_path):
    frame["risk"] = np.arange(20) % 4
    frame.to_csv(tmp_path / "t.csv", index=False)
    ds = load_data(tmp_path / "t.csv", target="risk", class_names=["a", "b", "c", "d"])
    assert ds.y.tolist() == (np.arange(20) % 4).tolist()
    assert ds.class_names == ["a", "b", "c", "d"]


def test_table_faults(frame, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frame.to_csv("t.csv", index=False)
    with pytest.raises(
        InvalidInputError,
        match=r"^t.csv: name the label column with --target COLUMN \(columns: age, income, member, risk\)$",
    ):
        load_data("t.csv")
    with pytest.raises(
        InvalidInputError, match=r"^t.csv: no column 'label' \(columns: age, income, member, risk\)$"
    ):
        load_data("t.csv", target="label")
    frame.assign(city=["x"] * 20, road=["y"] * 20).to_csv("text.csv", index=False)
    with pytest.raises(
        InvalidInputError,
        match=r"^text.csv: feature columns must be numeric; found non-numeric columns: city, road",
    ):
        load_data("text.csv", target="risk")
    nan = frame.copy()
    nan.loc[[3, 9], "income"] = np.nan
    nan.to_csv("nan.csv", index=False)
    with pytest.raises(
        InvalidInputError, match=r"^nan.csv: features contain 2 NaN or infinite values \(first at index 3\)$"
    ):
        load_data("nan.csv", target="risk")
    frame.assign(risk=np.linspace(0, 1, 20)).to_csv("float.csv", index=False)
    with pytest.raises(
        InvalidInputError, match=r"^float.csv: target column 'risk' must hold integer class labels"
    ):
        load_data("float.csv", target="risk")
    frame.head(0).to_csv("header.csv", index=False)
    with pytest.raises(InvalidInputError, match=r"^header.csv: no rows \(empty data\)$"):
        load_data("header.csv", target="risk")
    Path("blank.csv").write_text("\n")
    with pytest.raises(InvalidInputError, match=r"^blank.csv: the file is empty \(no columns\)$"):
        load_data("blank.csv", target="risk")
    missing = frame.astype({"risk": object})
    missing.loc[5, "risk"] = None
    missing.to_parquet("missing.parquet")
    with pytest.raises(
        InvalidInputError,
        match=r"^missing.parquet: target column 'risk' has 1 missing values \(first at index 5\)$",
    ):
        load_data("missing.parquet", target="risk")
    frame.to_parquet("full.parquet")
    data = Path("full.parquet").read_bytes()
    Path("cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        InvalidInputError, match=r"^cut.parquet: not a valid Parquet file \(truncated or corrupt: "
    ):
        load_data("cut.parquet", target="risk")


def test_saved_row_index_is_ignored_with_a_warning(frame, tmp_path):
    from roadworthy.errors import RoadworthyWarning

    frame.to_csv(tmp_path / "indexed.csv")  # index=True writes an "Unnamed: 0" column
    with pytest.warns(
        RoadworthyWarning, match=r"ignored column Unnamed: 0 \(a saved row index, not a feature\)"
    ):
        ds = load_data(tmp_path / "indexed.csv", target="risk")
    assert ds.feature_names == ["age", "income", "member"]
