"""The Python API: ``roadworthy.check(model, data, ...)`` does what ``roadworthy check`` does."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from roadworthy.data.base import Dataset
from roadworthy.errors import InvalidInputError, RunInterrupted
from roadworthy.policy import Policy
from roadworthy.results import Report, load_report

__all__ = ["as_dataset", "check", "check_output_dir", "load_data", "load_model"]

# Parameters of :func:`check` that do not change a measured number (or that the session records in
# other words). Every other parameter is a load option and goes into the report's ``run_key`` as given,
# so a new option is part of the resume key without anyone remembering to add it.
_NOT_LOAD_OPTIONS = frozenset(
    {
        "model",
        "data",
        "train_data",
        "ood_data",
        "suites",
        "budget",
        "seed",
        "policy",
        "baseline",
        "out",
        "resume",
        "trust_pickle",
        "batch_size",
        "progress",
        "say",
        "backend",
        "force_baseline",
        "mlflow",
    }
)


def load_model(source: Any, **kwargs: Any) -> Any:
    """Load a model from a file or wrap a Python object; see :func:`roadworthy.models.load_model`."""
    from roadworthy.models import load_model as _load

    return _load(source, **kwargs)


def load_data(path: str | Path, **kwargs: Any) -> Dataset:
    """Read ``.npz``, an image-folder tree, ``.csv`` or ``.parquet``; see :func:`roadworthy.data.load_data`."""
    from roadworthy.data import load_data as _load

    return _load(path, **kwargs)


def as_dataset(
    data: Any, *, name: str, class_names: Sequence[str] | None = None, **load_kwargs: Any
) -> Dataset:
    """A :class:`Dataset` from a Dataset, a path, or an ``(x, y)`` pair of arrays (images NCHW in [0, 1])."""
    import numpy as np

    if isinstance(data, Dataset):
        return data
    if isinstance(data, str | Path):
        return load_data(data, class_names=class_names, **load_kwargs)
    if isinstance(data, tuple) and len(data) == 2:
        from roadworthy.data._validate import check_finite, labels_and_names, parse_class_names

        x = np.asarray(data[0], dtype=np.float32)
        if len(x) == 0 or len(x) != len(data[1]):
            raise InvalidInputError(
                f"{name}: x and y must be non-empty and of equal length, got {len(x)} and {len(data[1])}"
            )
        check_finite(x, name)
        y, names, label_meta = labels_and_names(np.asarray(data[1]), name, parse_class_names(class_names))
        return Dataset(
            x=x,
            y=y,
            modality="image" if x.ndim == 4 else "tabular",
            class_names=names,
            path=None,
            meta=label_meta,
        )
    raise InvalidInputError(
        f"{name}: expected a path, a roadworthy Dataset or an (x, y) tuple, got {type(data).__name__}"
    )


def _is_folder(source: Any) -> bool:
    return isinstance(source, str | Path) and Path(source).is_dir()


def _model_declaring_its_shape(model: Any, model_kw: dict[str, Any]) -> Any:
    """The model loaded without an input shape, or ``None`` when it needs one (it does not declare it)."""
    from roadworthy.errors import RoadworthyError

    try:
        return load_model(model, **model_kw)
    except RoadworthyError:
        return None  # loaded again with the data's shape, which reports any real fault


def check(
    model: Any,
    data: Any,
    train_data: Any = None,
    *,
    ood_data: Any = None,
    suites: Sequence[str] | None = None,
    budget: str = "standard",
    seed: int = 0,
    policy: Policy | str | Path | None = None,
    baseline: Report | str | Path | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    trust_pickle: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    target: str | None = None,
    class_names: Sequence[str] | None = None,
    feature_layer: str | None = None,
    input_shape: Sequence[int] | None = None,
    batch_size: int = 256,
    progress: Any = None,
    say: Any = None,
    backend: str = "local",
    force_baseline: bool = False,
    image_size: int | str | Sequence[int] | None = None,
    strict_data: bool = False,
    mlflow: Any = None,
) -> Report:
    """Run the selected suites on ``model`` and return the judged :class:`Report`.

    Parameters
    ----------
    model
        A path (TorchScript, ``torch.export`` ``.pt2``, ``.onnx``, ``.skops``; pickles only with
        ``trust_pickle``), an ``nn.Module``, a scikit-learn estimator, any callable ``f(x) -> scores``,
        or an object following :class:`roadworthy.models.base.Model`.
    data, train_data, ood_data
        Evaluation data, optional training data (enables the integrity suite) and optional OOD data:
        paths, :class:`Dataset` objects or ``(x, y)`` tuples.
    suites
        Suite names, check ids or patterns (``None``: all). ``sanity`` and ``clean`` always run.
    budget
        ``quick`` (every CI run), ``standard`` or ``thorough`` (release).
    policy, baseline
        A :class:`Policy` or a YAML path (default policy when ``None``); a baseline report (object or
        path) for the ``max_drop`` comparison and mCE.
    out
        When given, ``report.json``, ``report.html``, ``report.md`` and ``junit.xml`` are written there.
    backend
        ``local`` (this process) or ``ray`` (independent checks in parallel; ``roadworthy[ray]``).
    class_names
        The model's classes in output order; folder names and string labels are matched against it by
        name. Without it the training data's classes are used for the evaluation data.
    image_size
        Size image folders are resized to while they are read (``224``, ``"224x160"``); by default the
        model's input size when it declares one (or ``input_shape``), else the folder's most common size.
    strict_data
        Stop on an image that cannot be decoded instead of skipping it with a warning.
    force_baseline
        Compare with a ``baseline`` that measured other data (refused otherwise: a ``max_drop`` gate
        across different data mixes the model's change with the data's).
    mlflow
        Log the report to MLflow: ``True`` (current experiment or active run), a dict such as
        ``{"experiment": "gate", "run_name": "candidate"}`` or a :class:`roadworthy.trackers.MlflowTracker`
        (whose ``logged_run_id`` then holds the run). The tracking store is checked before the model
        is loaded. ``model`` and ``baseline`` may also be MLflow URIs (``models:/name/1``,
        ``models:/name@champion``, ``runs:/<id>/model``).

    Raises
    ------
    InvalidInputError
        Bad input, found before the model is loaded where possible: the policy (strictly validated,
        gates on unknown metrics), ``out`` (a file, or not writable), ``mean``/``std`` outside [0, 1],
        a baseline of other data.
    RunInterrupted
        On Ctrl-C: the report files hold the finished checks, marked incomplete.
    """
    options = {k: v for k, v in locals().items() if k not in _NOT_LOAD_OPTIONS}
    from roadworthy.compare import data_differences
    from roadworthy.data import validate_compat
    from roadworthy.models import model_sha256
    from roadworthy.report import write_reports
    from roadworthy.session import Session, describe_data, select_checks

    # everything that can be checked without the model comes first: a typo costs seconds, not a load
    _check_normalisation(mean, std)
    if out is not None:
        check_output_dir(Path(out))
    pol = policy if isinstance(policy, Policy) else Policy.load(policy)
    pol.check_metric_names(select_checks(suites, budget))
    from roadworthy.trackers import MlflowTracker, baseline_file

    tracker = MlflowTracker.coerce(mlflow)
    if tracker is not None:
        tracker.preflight()  # a dead or refused store fails now, not after the run
    base = (
        baseline if isinstance(baseline, Report) or baseline is None else load_report(baseline_file(baseline))
    )

    load_kw: dict[str, Any] = {}
    if target is not None:
        load_kw["target"] = target
    if strict_data:
        load_kw["strict_data"] = True
    model_kw: dict[str, Any] = {
        "trust_pickle": trust_pickle,
        "mean": mean,
        "std": std,
        "feature_layer": feature_layer,
    }
    size: Any = image_size
    if size is None and input_shape is not None and len(input_shape) == 3:
        size = tuple(input_shape[1:])
    m = None
    if size is None and any(_is_folder(d) for d in (data, train_data, ood_data)):
        # read the folders at the model's own input size, so they are never held at their files' size
        m = _model_declaring_its_shape(model, model_kw)
        if m is not None and m.input_spec.modality == "image" and None not in m.input_spec.shape[1:]:
            size = tuple(int(s) for s in m.input_spec.shape[1:])

    def read(source: Any, name: str, names: Sequence[str] | None, **extra: Any) -> Dataset:
        nonlocal size
        kw = {**load_kw, **extra}
        if _is_folder(source) and size is not None:
            kw["image_size"] = size
        out = as_dataset(source, name=name, class_names=names, **kw)
        if size is None and _is_folder(source):
            size = out.input_shape[1:]  # the other folders follow the first one's size
        return out

    # the training data first: its classes name the evaluation data's, so a test folder that lacks a
    # class is still matched by name
    train = read(train_data, "train_data", class_names) if train_data is not None else None
    ds = read(data, "data", class_names or (train.class_names if train is not None else None))
    ood = read(ood_data, "ood_data", None) if ood_data is not None else None
    run_warnings: list[str] = []
    if base is not None:
        differences = data_differences(base.data, describe_data(ds))
        where = str(baseline) if isinstance(baseline, str | Path) else "the baseline report"
        if differences and not force_baseline:
            raise InvalidInputError(
                f"{where}: the baseline measured other data ({'; '.join(differences)}), so its max_drop "
                "gates would compare different data; pass --force-baseline to compare anyway"
            )
        if differences:
            run_warnings.append(
                f"the baseline measured other data ({'; '.join(differences)}): its max_drop gates compare "
                "different data (--force-baseline)"
            )

    shape = tuple(input_shape) if input_shape else ds.input_shape
    try:
        if m is None:
            m = load_model(model, input_shape=shape, **model_kw)
    except InvalidInputError as exc:
        if input_shape or "probe batch" not in str(exc):
            raise
        # the model gave no input shape, so it was probed with the data's: say which file does not fit
        raise InvalidInputError(
            f"{ds.path or 'data'}: samples of shape {ds.input_shape} do not fit the model ({exc}); "
            "pass --input-shape if the model expects another shape"
        ) from exc
    ds = validate_compat(m, ds, ds.path or "data")
    if train is not None:
        train = validate_compat(m, train, train.path or "train_data")
    if ood is not None:
        ood = validate_compat(m, ood, ood.path or "ood_data", check_labels=False)
    if ds.class_names is None:
        ds.class_names = [str(getattr(m, "classes_", range(m.n_classes))[i]) for i in range(m.n_classes)]
        ds.meta["class_names_source"] = "model"
    if train is not None and train.class_names is None:
        train.class_names = ds.class_names

    model_path = str(model) if isinstance(model, str | Path) else None
    session = Session(
        model=m,
        data=ds,
        train_data=train,
        ood_data=ood,
        suites=suites,
        budget=budget,
        seed=seed,
        policy=pol,
        baseline=base,
        out=Path(out) if out is not None else None,
        resume=resume,
        batch_size=batch_size,
        model_path=model_path,
        model_sha256=getattr(m, "sha256", None) or (model_sha256(model) if model_path else None),
        progress=progress,
        say=say,
        backend=backend,
        model_recipe=functools.partial(load_model, model, input_shape=shape, **model_kw),
        options=options,
        warnings=run_warnings,
    )
    try:
        report = session.run()
    except RunInterrupted as exc:
        if out is not None:  # what finished is written, marked incomplete, before the interrupt goes on
            write_reports(exc.report, out)
        raise
    if out is not None:
        write_reports(report, out)
    if tracker is not None:
        tracker.log(report, out, policy=pol, model=m)
    return report


def check_output_dir(out: Path) -> None:
    """Make sure report files can be written in ``out`` before any work; nothing is created yet.

    Raises :class:`InvalidInputError` (one line) when ``out`` is a file, lies under a file, or is (or
    would be created in) a folder that is not writable.
    """
    import os
    import tempfile

    if out.exists() and not out.is_dir():
        raise InvalidInputError(
            f"{out}: the output folder is a file; pass --out a folder for the report files"
        )
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InvalidInputError(f"{out}: cannot create the output folder: {existing} is a file")
    try:  # a real write, because permission bits do not tell (read-only mounts, root, ACLs)
        fd, probe = tempfile.mkstemp(prefix=".roadworthy-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        what = "write report files in" if existing == out else "create the output folder in"
        raise InvalidInputError(f"{out}: cannot {what} {existing} ({exc.strerror or exc})") from exc


def _check_normalisation(mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
    """``mean`` and ``std`` are in the units of inputs in [0, 1]; 0-255 values are a mistake to refuse."""
    import math

    for option, values in (("--mean", mean), ("--std", std)):
        for v in values or ():
            v = float(v)
            ok = math.isfinite(v) and (0 <= v <= 1 if option == "--mean" else 0 < v <= 1)
            if ok:
                continue
            hint = (
                f"; it looks like 0-255 units: pass {v / 255:.4g} ({v:g}/255)"
                if math.isfinite(v) and 1 < v <= 255
                else ""
            )
            expected = "in [0, 1]" if option == "--mean" else "in (0, 1]"
            raise InvalidInputError(
                f"{option} values must be {expected} (images are scaled to [0, 1] before normalisation). "
                f"Got {v:g}{hint}."
            )
