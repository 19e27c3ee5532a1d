"""The Python API: ``roadworthy.check(model, data, ...)`` does what ``roadworthy check`` does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from roadworthy.config import LoadOptions, ModelRecipe, RunConfig
from roadworthy.data.base import Dataset
from roadworthy.errors import InvalidInputError, RunInterrupted, plural
from roadworthy.policy import Policy
from roadworthy.results import Report, load_report

__all__ = [
    "LoadOptions",
    "RunConfig",
    "as_dataset",
    "check",
    "check_output_dir",
    "load_data",
    "load_model",
    "run",
]


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


def _model_declaring_its_shape(recipe: ModelRecipe) -> Any:
    """The model loaded without an input shape, or ``None`` when it needs one (it does not declare it)."""
    from roadworthy.errors import RoadworthyError

    try:
        return recipe()
    except RoadworthyError:
        return None  # loaded again with the data's shape, which reports any real fault


def _settings(cls: type[Any], given: Any, keywords: dict[str, Any], name: str) -> Any:
    """``given`` as it is, or ``cls`` built from the keyword arguments; both at once is ambiguous."""
    if given is None:
        return cls(**keywords)
    if not isinstance(given, cls):
        raise InvalidInputError(f"`{name}` must be a {cls.__name__}. Got {type(given).__name__} instead.")
    defaults = cls()
    clash = sorted(k for k, v in keywords.items() if v != getattr(defaults, k))
    if clash:
        raise InvalidInputError(
            f"pass {', '.join(clash)} inside `{name}` or as keywords, not both (`{name}` was given)"
        )
    return given


def check(
    model: Any,
    data: Any,
    train_data: Any = None,
    *,
    ood_data: Any = None,
    reference_model: Any = None,
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
    load: LoadOptions | None = None,
    config: RunConfig | None = None,
    time_limit: str | float | None = None,
    device: str = "cpu",
    mlflow: Any = None,
    http: Any = None,
    ray_address: str | None = None,
    ray_timeout: float = 30.0,
    workers: int | None = None,
    cpus_per_task: float = 1.0,
) -> Report:
    """Run the selected suites on ``model`` and return the judged :class:`Report`.

    The settings come as keyword arguments or as two objects: ``load``, a
    :class:`~roadworthy.config.LoadOptions` (``trust_pickle``, ``mean``, ``std``, ``target``,
    ``class_names``, ``feature_layer``, ``input_shape``, ``image_size``, ``strict_data``), and ``config``,
    a :class:`~roadworthy.config.RunConfig` (``suites``, ``budget``, ``seed``, ``policy``, ``baseline``,
    ``out``, ``resume``, ``batch_size``, ``backend``, ``force_baseline``, ``ray_address``,
    ``ray_timeout``, ``workers``, ``cpus_per_task``). Giving an object and one of
    its fields as a keyword is refused as ambiguous.

    Parameters
    ----------
    model
        A path (TorchScript, ``torch.export`` ``.pt2``, ``.onnx``, ``.skops``; pickles only with
        ``trust_pickle``), an ``nn.Module``, a scikit-learn estimator, any callable ``f(x) -> scores``,
        or an object following :class:`roadworthy.models.base.Model`.
    data, train_data, ood_data
        Evaluation data, optional training data (enables the integrity suite) and optional OOD data:
        paths, :class:`Dataset` objects or ``(x, y)`` tuples.
    reference_model
        The artifact ``model`` must agree with (e.g. the trained PyTorch file an ONNX export or an int8
        copy was made from): any form ``model`` accepts, loaded with the same options and trust rules
        (a pickle only with ``trust_pickle``). Enables the ``parity`` suite, whose checks are skipped
        without it, and the policy's ``reference_gates``.
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
    ray_address, ray_timeout
        The Ray cluster (``host:port``, ``ray://host:port``; ``None``: ``RAY_ADDRESS``, else a Ray
        instance started here) and the seconds to wait for it before stopping (``InvalidInputError``).
    workers, cpus_per_task
        Ray tasks in flight at once (``None``: all independent checks) and the CPUs each one reserves.
    class_names
        The model's classes in output order; folder names and string labels are matched against it by
        name. Without it the training data's classes are used for the evaluation data.
    image_size
        Size image folders are resized to while they are read (``224``, ``"224x160"``); by default the
        model's input size when it declares one (or ``input_shape``), else the folder's most common size.
    strict_data
        Stop on an image that cannot be decoded instead of skipping it with a warning.
    time_limit
        Plan the run to fit this time (``"15m"``, ``"1h"``, seconds): sample counts shrink, intervals
        widen, instead of the budget's own target (see :mod:`roadworthy.plan`).
    device
        ``"cpu"`` or ``"cuda"`` (PyTorch models; refused when no GPU is available).
    force_baseline
        Compare with a ``baseline`` that measured other data (refused otherwise: a ``max_drop`` gate
        across different data mixes the model's change with the data's).
    progress, say
        Terminal output: a progress reporter and a function that prints one line (``None``: silent).
    load, config
        The settings as objects (see above).
    mlflow
        Log the report to MLflow: ``True`` (current experiment or active run), a dict such as
        ``{"experiment": "gate", "run_name": "candidate"}`` or a :class:`roadworthy.trackers.MlflowTracker`
        (whose ``logged_run_id`` then holds the run). The tracking store is checked before the model
        is loaded. ``model`` and ``baseline`` may also be MLflow URIs (``models:/name/1``,
        ``models:/name@champion``, ``runs:/<id>/model``).
    http
        For a served ``model`` (``http://host:port/invocations``, ``.../v2/models/<name>/infer``): how
        it is called, a :class:`~roadworthy.config.HttpSettings` or a dict of its fields, e.g.
        ``{"timeout": 10, "retries": 5, "max_rps": 20, "max_batch": 64, "headers": {"X-Team": "cv"}}``
        (the CLI's ``--http-*`` options). Unset fields come from ``ROADWORTHY_HTTP_*``.

    Raises
    ------
    InvalidInputError
        Bad input, found before the model is loaded where possible: the policy (strictly validated,
        gates on unknown metrics), ``out`` (a file, or not writable), ``mean``/``std`` outside [0, 1],
        a baseline of other data, a setting given both in an object and as a keyword.
    RunInterrupted
        On Ctrl-C: the report files hold the finished checks, marked incomplete; with ``mlflow`` the
        incomplete report is logged too (verdict tag ``incomplete``, see :mod:`roadworthy.trackers`).
    """
    # everything that can be checked without the model comes first: a typo costs seconds, not a load
    opts: LoadOptions = _settings(
        LoadOptions,
        load,
        {
            "trust_pickle": trust_pickle,
            "mean": mean,
            "std": std,
            "input_shape": input_shape,
            "feature_layer": feature_layer,
            "class_names": class_names,
            "target": target,
            "image_size": image_size,
            "strict_data": strict_data,
            "http": http,
        },
        "load",
    )
    cfg: RunConfig = _settings(
        RunConfig,
        config,
        {
            "suites": suites,
            "budget": budget,
            "seed": seed,
            "backend": backend,
            "batch_size": batch_size,
            "out": out,
            "resume": resume,
            "policy": policy,
            "baseline": baseline,
            "force_baseline": force_baseline,
            "time_limit": time_limit,
            "device": device,
            "ray_address": ray_address,
            "ray_timeout": ray_timeout,
            "workers": workers,
            "cpus_per_task": cpus_per_task,
        },
        "config",
    )
    return run(
        model,
        data,
        train_data,
        ood_data=ood_data,
        reference_model=reference_model,
        load=opts,
        config=cfg,
        progress=progress,
        say=say,
        mlflow=mlflow,
    )


def run(
    model: Any,
    data: Any,
    train_data: Any = None,
    *,
    ood_data: Any = None,
    reference_model: Any = None,
    load: LoadOptions,
    config: RunConfig,
    progress: Any = None,
    say: Any = None,
    mlflow: Any = None,
) -> Report:
    """:func:`check` with its settings already built as objects (what the CLI calls)."""
    from roadworthy.compare import data_differences
    from roadworthy.data import validate_compat
    from roadworthy.report import write_reports
    from roadworthy.session import Session, describe_data, select_checks

    opts, cfg = load, config
    if opts.http is not None and not (isinstance(model, str) and model.startswith(("http://", "https://"))):
        shown = model if isinstance(model, str | Path) else f"a {type(model).__name__} object"
        raise InvalidInputError(
            f"the --http-* settings apply to a served model (--model http://...); the model is {shown}"
        )
    if cfg.device == "cuda":
        require_cuda()
    if cfg.out is not None:
        check_output_dir(cfg.out)
    pol = cfg.policy if isinstance(cfg.policy, Policy) else Policy.load(cfg.policy)
    pol.check_metric_names(select_checks(cfg.suites, cfg.budget))
    baseline = cfg.baseline
    from roadworthy.trackers import MlflowTracker, baseline_file

    tracker = MlflowTracker.coerce(mlflow)
    if tracker is not None:
        tracker.preflight()  # a dead or refused store fails now, not after the run
    base = (
        baseline if isinstance(baseline, Report) or baseline is None else load_report(baseline_file(baseline))
    )

    input_shape = opts.input_shape
    size: Any = opts.image_size
    if size is None and input_shape is not None and len(input_shape) == 3:
        size = tuple(input_shape[1:])
    m = None
    if size is None and any(_is_folder(d) for d in (data, train_data, ood_data)):
        # read the folders at the model's own input size, so they are never held at their files' size
        m = _model_declaring_its_shape(ModelRecipe(model, opts))
        if m is not None and m.input_spec.modality == "image" and None not in m.input_spec.shape[1:]:
            size = tuple(int(s) for s in m.input_spec.shape[1:])

    def read(source: Any, name: str, names: Sequence[str] | None) -> Dataset:
        nonlocal size
        kw = opts.data_kwargs()
        if _is_folder(source) and size is not None:
            kw["image_size"] = size
        out = as_dataset(source, name=name, class_names=names, **kw)
        if size is None and _is_folder(source):
            size = out.input_shape[1:]  # the other folders follow the first one's size
        return out

    # the training data first: its classes name the evaluation data's, so a test folder that lacks a
    # class is still matched by name
    class_names = opts.class_names
    train = read(train_data, "train_data", class_names) if train_data is not None else None
    ds = read(data, "data", class_names or (train.class_names if train is not None else None))
    ood = read(ood_data, "ood_data", None) if ood_data is not None else None
    run_warnings: list[str] = []
    for d in (ds, train, ood):
        if d is not None and d.meta.get("unreadable_images"):
            n = int(d.meta["unreadable_images"])
            run_warnings.append(
                f"{d.path}: {plural(n, 'unreadable image')} left out (report data.unreadable_files); "
                "--strict-data stops on them"
            )
    if base is not None:
        differences = data_differences(base.data, describe_data(ds))
        where = str(baseline) if isinstance(baseline, str | Path) else "the baseline report"
        if differences and not cfg.force_baseline:
            raise InvalidInputError(
                f"{where}: the baseline measured other data ({'; '.join(differences)}), so its max_drop "
                "gates would compare different data; pass --force-baseline to compare anyway"
            )
        if differences:
            run_warnings.append(
                f"the baseline measured other data ({'; '.join(differences)}): its max_drop gates compare "
                "different data (--force-baseline)"
            )

    recipe = ModelRecipe(model, opts, input_shape or tuple(ds.input_shape))
    try:
        if m is None:
            m = recipe()
    except InvalidInputError as exc:
        if input_shape or "probe batch" not in str(exc):
            raise
        # the model gave no input shape, so it was probed with the data's: say which file does not fit
        raise InvalidInputError(
            f"{ds.path or 'data'}: samples of shape {ds.input_shape} do not fit the model ({exc}); "
            "pass --input-shape if the model expects another shape"
        ) from exc
    if cfg.device != "cpu":
        if not hasattr(m, "to_device"):
            raise InvalidInputError(
                f"--device {cfg.device}: only PyTorch models can run there; this is a {m.format} model"
            )
        m.to_device(cfg.device)
    ref_model = _load_reference(reference_model, m, opts, recipe.input_shape, cfg.device)
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
    if pol.schema and ds.modality == "tabular":  # the feature schema's overrides, checked here (exit 2)
        from roadworthy.schema import infer_schema

        ref = train if train is not None else ds
        infer_schema(
            ref.x.reshape(len(ref.x), -1), ds.feature_names or ref.feature_names, overrides=pol.schema
        )
        ds.meta["schema"] = pol.schema

    session = Session(
        model=m,
        data=ds,
        train_data=train,
        ood_data=ood,
        suites=cfg.suites,
        budget=cfg.budget,
        seed=cfg.seed,
        policy=pol,
        baseline=base,
        out=cfg.out,
        resume=cfg.resume,
        batch_size=cfg.batch_size,
        progress=progress,
        say=say,
        backend=cfg.backend,
        model_recipe=recipe,
        reference_model=ref_model,
        backend_options=cfg.backend_options() if cfg.backend == "ray" else {},
        options=opts.run_key_fields(),
        warnings=run_warnings,
        time_limit_s=cfg.time_limit,
        device=cfg.device,
    )
    try:
        report = session.run()
    except RunInterrupted as exc:
        if cfg.out is not None:  # what finished is written, marked incomplete, before the interrupt goes on
            write_reports(exc.report, cfg.out)
        if tracker is not None:  # and logged, as incomplete: the pipeline sees the run that stopped
            from roadworthy.trackers import TrackingError

            try:
                tracker.log(exc.report, cfg.out, policy=pol, model=m)
            except TrackingError as err:  # the interrupt stays the outcome (exit 1); the failure is said
                exc.report.warnings.append(f"the incomplete report was not logged to MLflow: {err}")
        raise
    if cfg.out is not None:
        write_reports(report, cfg.out)
    if tracker is not None:
        tracker.log(report, cfg.out, policy=pol, model=m)
    return report


def _load_reference(source: Any, model: Any, opts: LoadOptions, input_shape: Any, device: str) -> Any:
    """The ``--reference-model``, loaded like the model (same options, same trust rules), or ``None``.

    Raises :class:`InvalidInputError` when it scores another number of classes than the model: the two
    cannot be compared output by output.
    """
    if source is None:
        return None
    # a served reference is called with the same --http-* settings; a file takes none
    ref = ModelRecipe(source, replace(opts, http=opts.http if _served(source) else None), input_shape)()
    if device != "cpu" and hasattr(ref, "to_device"):
        ref.to_device(device)
    if int(ref.n_classes) != int(model.n_classes):
        shown = source if isinstance(source, str | Path) else f"a {type(source).__name__} object"
        raise InvalidInputError(
            f"--reference-model {shown}: it scores {ref.n_classes} classes, the model {model.n_classes}; "
            "the two artifacts must score the same classes in the same order to be compared"
        )
    return ref


def _served(source: Any) -> bool:
    return isinstance(source, str) and source.startswith(("http://", "https://"))


def require_cuda() -> None:
    """Refuse ``--device cuda`` on a machine where PyTorch sees no GPU (one line, exit code 2)."""
    try:
        import torch

        available = bool(torch.cuda.is_available())
    except ImportError:
        available = False
    if not available:
        raise InvalidInputError(
            "--device cuda: PyTorch sees no CUDA GPU on this machine (torch.cuda.is_available() is False); "
            "run without --device, or on a machine with a GPU and a CUDA build of PyTorch"
        )


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
