"""File sniffing, the pickle guard (nothing in an untrusted pickle runs) and one-line errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from roadworthy.errors import InvalidInputError, UnsafeFileError, UnsupportedModelError
from roadworthy.models import Model, load_model


class Touch:
    """Unpickling this creates ``marker``: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _write(kind: str, path: Path, obj: object) -> None:
    if kind == "pickle":
        with path.open("wb") as f:
            pickle.dump(obj, f)
    elif kind == "joblib":
        import joblib

        joblib.dump(obj, path)
    else:
        import torch

        torch.save(obj, str(path))


@pytest.mark.parametrize(
    ("kind", "name"),
    [("pickle", "model.pkl"), ("joblib", "model.joblib"), ("torch", "model.pt"), ("pickle", "model.pt")],
)
def test_untrusted_pickle_is_refused_and_nothing_runs(kind, name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    _write(kind, tmp_path / name, Touch(marker))
    assert not marker.exists()
    with pytest.raises(UnsafeFileError) as info:
        load_model(name, input_shape=(4,))
    assert (
        str(info.value)
        == f"{name}: loading a pickle runs code from the file; pass --trust-pickle if you trust it"
    )
    assert isinstance(info.value, InvalidInputError)  # the CLI maps it to exit code 2
    assert not marker.exists()


def test_the_marker_pickle_really_runs_code_when_trusted(tmp_path):
    """The guard test above can fail: with trust the same file does execute (then fails as a model)."""
    marker = tmp_path / "pwned"
    _write("pickle", tmp_path / "model.pkl", Touch(marker))
    with pytest.raises(UnsupportedModelError):
        load_model(tmp_path / "model.pkl", trust_pickle=True)
    assert marker.exists()


def test_trusted_pickle_of_an_estimator_loads(tmp_path, digits_tabular):
    from sklearn.linear_model import LogisticRegression

    x, y = digits_tabular
    est = LogisticRegression(max_iter=300).fit(x, y)
    for name, kind in [("m.pkl", "pickle"), ("m.joblib", "joblib")]:
        _write(kind, tmp_path / name, est)
        model = load_model(tmp_path / name, trust_pickle=True)
        assert model.format == kind
        np.testing.assert_allclose(model.predict(x[:50]), est.predict_proba(x[:50]), atol=1e-6)


def test_trusted_whole_module_torch_save_loads(model_files, digits_x, reference):
    model = load_model(model_files["whole"], input_shape=(1, 16, 16), trust_pickle=True)
    assert model.format == "torch.save"
    np.testing.assert_allclose(model.predict(digits_x), reference[0], atol=1e-5)
    np.testing.assert_allclose(model.features(digits_x), reference[1], atol=1e-5)


def test_whole_module_torch_save_needs_trust(model_files):
    with pytest.raises(
        UnsafeFileError, match="loading a pickle runs code from the file; pass --trust-pickle"
    ):
        load_model(model_files["whole"], input_shape=(1, 16, 16))


@pytest.mark.parametrize("trust", [False, True])
def test_state_dict_has_no_architecture(model_files, trust):
    with pytest.raises(
        InvalidInputError, match=r"a state dict has no architecture\. Export the model as TorchScript"
    ):
        load_model(model_files["state"], input_shape=(1, 16, 16), trust_pickle=trust)


def test_export_archive_with_a_pickled_object_is_refused(model_files, tmp_path):
    """A .pt2 whose sample inputs are a pickle of arbitrary objects: refused before torch.export.load."""
    import zipfile

    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(model_files["export"]) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("data/sample_inputs/model.pt"):
                data = pickle.dumps(Touch(marker))
            dst.writestr(item, data)
    with pytest.raises(UnsafeFileError, match=r"bad.pt2: the torch.export archive holds a pickled object"):
        load_model(bad)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("key", "kind"),
    [("onnx", "ONNX model"), ("script", "PyTorch file"), ("export", "PyTorch file")],
)
def test_truncated_model_file(key, kind, model_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = Path(model_files[key]).read_bytes()
    name = "cut" + Path(model_files[key]).suffix
    Path(name).write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError) as info:
        load_model(name, input_shape=(1, 16, 16))
    message = str(info.value)
    assert message.startswith(f"{name}: not a valid {kind} (truncated or corrupt: ")
    assert "\n" not in message


def test_missing_empty_and_unknown_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInputError, match=r"^nothing.onnx: no such file$"):
        load_model("nothing.onnx")
    Path("empty.onnx").write_bytes(b"")
    with pytest.raises(InvalidInputError, match=r"^empty.onnx: the file is empty$"):
        load_model("empty.onnx")
    Path("model.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(
        UnsupportedModelError, match=r"^model.h5: unknown model format; roadworthy reads TorchScript"
    ):
        load_model("model.h5")
    np.savez("data.npz", x=np.zeros((2, 3)), y=np.zeros(2))
    with pytest.raises(UnsupportedModelError, match=r"data.npz: this is a NumPy .npz data file, not a model"):
        load_model("data.npz")


def test_python_objects_dispatch(digits_module, digits_tabular):
    from sklearn.linear_model import LogisticRegression

    from roadworthy.models.function import FunctionModel
    from roadworthy.models.sklearn import SklearnModel
    from roadworthy.models.torch import TorchModel

    torch_model = load_model(digits_module, input_shape=(1, 16, 16))
    assert isinstance(torch_model, TorchModel) and torch_model.format == "torch"
    x, y = digits_tabular
    sk = load_model(LogisticRegression(max_iter=200).fit(x, y))
    assert isinstance(sk, SklearnModel) and sk.input_spec.shape == (64,)
    fn = load_model(lambda a: a.reshape(len(a), -1)[:, :3], input_shape=(5,))
    assert isinstance(fn, FunctionModel) and fn.n_classes == 3 and fn.output == "logits"
    assert isinstance(fn, Model)
    assert load_model(fn) is fn  # a Model is returned as it is
    with pytest.raises(UnsupportedModelError, match=r"cannot use a builtins\.int as a model"):
        load_model(3)
    with pytest.raises(InvalidInputError, match="a Python function model needs its per-sample input shape"):
        load_model(lambda a: a)


def test_function_model_probs_and_normalisation():
    def softmax_of_mean(a):
        s = np.stack([a.mean(axis=1), -a.mean(axis=1)], axis=1)
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    model = load_model(softmax_of_mean, input_shape=(4,), mean=[1.0], std=[2.0])
    assert model.output == "probs" and model.n_classes == 2
    x = np.ones((3, 4), dtype=np.float32) * 3
    np.testing.assert_allclose(model.predict(x), softmax_of_mean((x - 1) / 2), atol=1e-6)
    with pytest.raises(InvalidInputError, match=r"`std` must not contain zeros"):
        load_model(softmax_of_mean, input_shape=(4,), std=[0.0])


@pytest.mark.parametrize(
    ("key", "fmt"), [("script", "torchscript"), ("export", "torch.export"), ("onnx", "onnx")]
)
def test_format_is_sniffed_from_content_not_extension(key, fmt, model_files, tmp_path):
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(Path(model_files[key]).read_bytes())
    assert load_model(renamed, input_shape=(1, 16, 16)).format == fmt


def test_bad_arguments_are_named(digits_module):
    with pytest.raises(
        InvalidInputError, match=r"^`output` must be 'logits' or 'probs'. Got 'softmax' instead.$"
    ):
        load_model(digits_module, input_shape=(1, 16, 16), output="softmax")
    with pytest.raises(
        InvalidInputError, match=r"^`mean` needs 1 or 1 values \(one per channel\). Got 3 instead.$"
    ):
        load_model(digits_module, input_shape=(1, 16, 16), mean=[0.1, 0.2, 0.3])
    with pytest.raises(
        InvalidInputError, match=r"the model returns 10 scores per sample but 7 classes were given"
    ):
        load_model(digits_module, input_shape=(1, 16, 16), n_classes=7)
