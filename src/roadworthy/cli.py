"""The ``roadworthy`` command line.

Exit codes: 0 ready (every gate holds), 1 not ready (a gate failed, or the run was interrupted: the
report files then hold the finished checks, marked INCOMPLETE), 2 bad usage or bad input (one line on
stderr, no traceback), 3 a report file could not be written, or an internal error (set
``ROADWORTHY_DEBUG=1`` for the traceback; the exit code stays the same).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from roadworthy import __version__
from roadworthy.config import BACKEND_NAMES, BUDGETS
from roadworthy.errors import InvalidInputError, OutputError, RoadworthyError, RunInterrupted

EXIT_READY, EXIT_NOT_READY, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="roadworthy", message="%(prog)s %(version)s")
def app() -> None:
    """Crash-test a trained model before deployment and write a readiness report."""


def _numbers(text: str | None, option: str, kind: type, example: str) -> list | None:
    """Comma-separated numbers of one ``kind`` (float or int) from an option, or a one-line error."""
    if text is None:
        return None
    try:
        return [kind(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError as exc:
        raise InvalidInputError(
            f"{option} must be comma-separated numbers like {example}. Got {text!r}."
        ) from exc


def _echo(text: str) -> None:
    click.echo(text)


def _warn(text: str) -> None:
    click.echo(f"roadworthy: warning: {text}", err=True)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (a cancelled CI job, ``kill``) into the same path as Ctrl-C: finished checks are kept.

    A second SIGTERM while the incomplete report is being written is ignored, so the files come out whole.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from roadworthy.errors import Interrupt

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupt("interrupted (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _progress_and_say() -> tuple[object, object]:
    from roadworthy.progress import PlainProgress, RichProgress, use_rich

    if use_rich():
        rp = RichProgress()
        return rp, rp.line
    pp = PlainProgress()
    return pp, pp.line


def _finish(report: object, out: Path, strict: bool = True) -> int:
    from roadworthy.report.text import verdict_label, verdict_sentence

    for w in report.warnings:  # type: ignore[attr-defined]
        _warn(w)
    _echo(f"roadworthy: {verdict_label(report)} — {verdict_sentence(report)}")  # type: ignore[arg-type]
    _echo(f"report: {out / 'report.html'}")
    if report.incomplete is not None:  # type: ignore[attr-defined]
        return EXIT_NOT_READY  # an interrupted run is never ready, not even for the demo
    if not strict:
        return EXIT_READY
    return EXIT_READY if report.verdict == "ready" else EXIT_NOT_READY  # type: ignore[attr-defined]


@app.command()
@click.option(
    "--model",
    "-m",
    required=True,
    help="Model file (.pt TorchScript, .pt2, .onnx, .skops; .pkl/.joblib with --trust-pickle), an MLflow "
    "model URI (models:/<name>/<version>, models:/<name>@<alias>, runs:/<id>/<path>, models:/m-<id>) or a "
    "served model's URL (http://host:port/invocations, http://host:port/v2/models/<name>/infer).",
)
@click.option(
    "--data",
    "-d",
    required=True,
    help="Evaluation data: .npz (x, y), image folder per class, .csv/.parquet with --target.",
)
@click.option("--train-data", help="Training data (same formats); enables the integrity suite.")
@click.option("--ood-data", help="Your own out-of-distribution samples for the OOD detectors.")
@click.option(
    "--reference-model",
    help="The artifact --model must agree with (e.g. the trained .pt an .onnx export or int8 copy was made "
    "from), in any form --model takes, loaded with the same options; enables the parity suite.",
)
@click.option(
    "--suite", "-s", multiple=True, help="Suite name, check id or pattern; repeatable. Default: all."
)
@click.option(
    "--budget",
    type=click.Choice(BUDGETS),
    default="standard",
    show_default=True,
    help="quick (every CI run) | standard | thorough (release).",
)
@click.option("--policy", help="Policy YAML with gates (default: the documented default policy).")
@click.option(
    "--baseline",
    help="report.json of the last deployed model, for max_drop gates and mCE; or an MLflow run or "
    "model URI whose run holds one (runs:/<id>, models:/<name>@<alias>).",
)
@click.option(
    "--force-baseline",
    is_flag=True,
    help="Accept a --baseline that measured other data (refused otherwise: its gates would compare different data).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("roadworthy-report"),
    show_default=True,
    help="Output folder for report.json, report.html, report.md, junit.xml.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for every random choice.")
@click.option("--backend", type=click.Choice(BACKEND_NAMES), default="local", show_default=True)
@click.option(
    "--ray-address",
    help="Ray cluster for --backend ray, e.g. 127.0.0.1:6379 or ray://host:10001 [default: RAY_ADDRESS, "
    "else a Ray instance started here].",
)
@click.option(
    "--ray-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for the Ray cluster before stopping (exit 2).",
)
@click.option(
    "--workers", type=int, help="Ray tasks in flight at once [default: every independent check at once]."
)
@click.option(
    "--cpus-per-task", type=float, default=1.0, show_default=True, help="CPUs Ray reserves for each task."
)
@click.option("--trust-pickle", is_flag=True, help="Allow loading pickle files (runs code from the file).")
@click.option(
    "--mean", help="Per-channel mean the model expects, e.g. 0.485,0.456,0.406 (applied inside the adapter)."
)
@click.option("--std", help="Per-channel std the model expects.")
@click.option("--target", help="Label column of CSV/Parquet data.")
@click.option(
    "--class-names",
    help="The model's classes in output order, comma-separated; folder names and string labels are "
    "matched to them by name.",
)
@click.option(
    "--image-size",
    help="Size image folders are resized to while read, e.g. 224 or 224x160 (default: the model's "
    "input size, else the folder's most common size).",
)
@click.option(
    "--strict-data", is_flag=True, help="Stop on an unreadable image instead of skipping it with a warning."
)
@click.option("--input-shape", help="Per-sample input shape when the model does not say, e.g. 3,32,32.")
@click.option("--feature-layer", help="Layer (or ONNX tensor) whose input gives the penultimate features.")
@click.option(
    "--batch-size",
    type=int,
    default=256,
    show_default=True,
    help="Largest batch of model calls (lowered when the measured memory per sample says so).",
)
@click.option(
    "--time-limit",
    help="Plan the run to fit this time, e.g. 15m or 1h: sample counts shrink (wider intervals) instead "
    "of the budget's own target (quick 10 min, standard 30 min).",
)
@click.option(
    "--device",
    type=click.Choice(("cpu", "cuda")),
    default="cpu",
    show_default=True,
    help="Where PyTorch models run; cuda is refused when no GPU is available.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Reuse finished checks of an interrupted run in --out, when every setting that changes a number matches.",
)
@click.option(
    "--http-timeout",
    type=float,
    help="Served model: seconds one request may take [default: 30; env ROADWORTHY_HTTP_TIMEOUT].",
)
@click.option(
    "--http-retries",
    type=int,
    help="Served model: retries of a failed request, with exponential back-off [default: 3].",
)
@click.option(
    "--http-max-rps", type=float, help="Served model: most requests per second [default: no limit]."
)
@click.option("--http-max-batch", type=int, help="Served model: most samples per request [default: 256].")
@click.option("--http-concurrency", type=int, help="Served model: requests in flight at once [default: 1].")
@click.option(
    "--http-binary/--http-json",
    default=None,
    help="Open Inference Protocol v2: tensors as raw bytes or as JSON numbers [default: bytes when the "
    "server accepts them].",
)
@click.option(
    "--http-header",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="Served model: an extra request header; repeatable. Not for secrets: the Authorization header "
    "comes from ROADWORTHY_HTTP_AUTHORIZATION.",
)
@click.option("--mlflow", "log_mlflow", is_flag=True, help="Log metrics, verdict and report files to MLflow.")
@click.option(
    "--mlflow-experiment", help="MLflow experiment for the run (created if missing); implies --mlflow."
)
@click.option("--mlflow-run-name", help="Name of the new MLflow run; implies --mlflow.")
@click.option(
    "--mlflow-run-id",
    help="Log into this existing MLflow run (refused if it already holds a report); implies --mlflow.",
)
@click.option("--verbose", "-v", is_flag=True)
def check(
    model: str,
    data: str,
    train_data: str | None,
    ood_data: str | None,
    reference_model: str | None,
    suite: tuple[str, ...],
    budget: str,
    policy: str | None,
    baseline: str | None,
    force_baseline: bool,
    out: Path,
    seed: int,
    backend: str,
    ray_address: str | None,
    ray_timeout: float,
    workers: int | None,
    cpus_per_task: float,
    trust_pickle: bool,
    mean: str | None,
    std: str | None,
    target: str | None,
    class_names: str | None,
    image_size: str | None,
    strict_data: bool,
    input_shape: str | None,
    feature_layer: str | None,
    batch_size: int,
    time_limit: str | None,
    device: str,
    resume: bool,
    http_timeout: float | None,
    http_retries: int | None,
    http_max_rps: float | None,
    http_max_batch: int | None,
    http_concurrency: int | None,
    http_binary: bool | None,
    http_header: tuple[str, ...],
    log_mlflow: bool,
    mlflow_experiment: str | None,
    mlflow_run_name: str | None,
    mlflow_run_id: str | None,
    verbose: bool,
) -> int:
    """Run the suites on a model and write the readiness report.

    Exit codes: 0 ready; 1 not ready (a gate failed, or the run was interrupted: the report is marked
    INCOMPLETE); 2 bad usage or input; 3 a report file could not be written, or an internal error.
    """
    from roadworthy.api import run as run_check
    from roadworthy.config import HttpSettings, LoadOptions, RunConfig

    _logging(verbose)
    # the settings, built once; a bad value stops here, before anything is loaded
    config = RunConfig(
        suites=suite or None,
        budget=budget,
        seed=seed,
        backend=backend,
        ray_address=ray_address,
        ray_timeout=ray_timeout,
        workers=workers,
        cpus_per_task=cpus_per_task,
        batch_size=batch_size,
        out=out,
        resume=resume,
        policy=policy,
        baseline=baseline,
        force_baseline=force_baseline,
        time_limit=time_limit,
        device=device,
    )
    load = LoadOptions(
        trust_pickle=trust_pickle,
        mean=_numbers(mean, "--mean", float, "0.485,0.456,0.406"),
        std=_numbers(std, "--std", float, "0.229,0.224,0.225"),
        input_shape=_numbers(input_shape, "--input-shape", int, "3,32,32"),
        feature_layer=feature_layer,
        class_names=[c.strip() for c in class_names.split(",")] if class_names else None,
        target=target,
        image_size=image_size,
        strict_data=strict_data,
        http=HttpSettings.from_cli(
            timeout=http_timeout,
            retries=http_retries,
            max_rps=http_max_rps,
            max_batch=http_max_batch,
            concurrency=http_concurrency,
            binary=http_binary,
            header=http_header,
        ),
    )
    if backend == "ray":
        from roadworthy.errors import require

        # Ray's C++ core writes its warnings to stderr itself; it reads this when ray is imported
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
        require("ray", "ray", "--backend ray")  # fail before loading anything
    tracker = None
    if log_mlflow or mlflow_experiment or mlflow_run_name or mlflow_run_id:
        from roadworthy.trackers import MlflowTracker

        tracker = MlflowTracker(experiment=mlflow_experiment, run_name=mlflow_run_name, run_id=mlflow_run_id)
    progress, say = _progress_and_say()
    try:
        with _sigterm_as_interrupt(), _maybe_live(progress):
            report = run_check(
                model,
                data,
                train_data,
                ood_data=ood_data,
                reference_model=reference_model,
                load=load,
                config=config,
                progress=progress,
                say=say,
                mlflow=tracker,
            )
    except RunInterrupted as exc:
        if tracker is not None and tracker.logged_run_id:
            _echo(f"mlflow run: {tracker.logged_run_id} (incomplete)")
        return _finish(exc.report, out)
    except OutputError as exc:
        if hasattr(exc, "report"):  # MLflow logging failed after the run: the verdict first, then the error
            _finish(exc.report, out)
        raise
    if tracker is not None:
        _echo(f"mlflow run: {tracker.logged_run_id}")
    return _finish(report, out)


@app.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("roadworthy-report"),
    show_default=True,
    help="Output folder.",
)
@click.option("--budget", type=click.Choice(BUDGETS), default="quick", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--strict", is_flag=True, help="Exit 1 when the demo model is not ready.")
@click.option(
    "--tabular",
    is_flag=True,
    help="The tabular demo instead: a tumour classifier on scikit-learn's breast-cancer table that leans "
    "on one measurement (planted unit drift).",
)
@click.option(
    "--parity",
    is_flag=True,
    help="Test the demo model's int8 ONNX copy (written to OUT/shipped/) against the demo model: the parity suite.",
)
@click.option("--verbose", "-v", is_flag=True)
def demo(out: Path, budget: str, seed: int, strict: bool, tabular: bool, parity: bool, verbose: bool) -> int:
    """The built-in road-sign model and data (with planted poisoning), full report; --tabular for a table,
    --parity for the int8 copy against the demo model."""
    from roadworthy.demo.command import run_demo
    from roadworthy.demo.tabular import run_tabular_demo

    _logging(verbose)
    progress, say = _progress_and_say()
    if tabular and parity:
        raise click.UsageError("--tabular and --parity are two different demos; pick one")
    try:
        with _sigterm_as_interrupt(), _maybe_live(progress):
            if tabular:
                report = run_tabular_demo(out=out, budget=budget, seed=seed, progress=progress, say=say)
            else:
                report = run_demo(
                    out=out, budget=budget, seed=seed, progress=progress, say=say, parity=parity
                )
    except RunInterrupted as exc:
        from roadworthy.report import write_reports

        write_reports(exc.report, out)
        return _finish(exc.report, out)
    return _finish(report, out, strict=strict)


@app.command()
@click.argument("report_json", metavar="REPORT.json", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Output folder (default: the report's folder).")
def render(report_json: Path, out: Path | None) -> int:
    """Rebuild report.html, report.md and junit.xml from a report.json."""
    from roadworthy.report import write_reports
    from roadworthy.results import load_report

    ignored: list[str] = []
    report = load_report(str(report_json), ignored=ignored)
    if ignored:
        _warn(
            f"{report_json}: ignored field(s) this roadworthy {__version__} does not know: "
            f"{', '.join(ignored[:10])}{' …' if len(ignored) > 10 else ''}"
        )
    if report.incomplete is not None:
        _warn(f"{report_json}: an incomplete report ({report.incomplete.reason}); it renders as INCOMPLETE")
    target = out or report_json.parent
    written = write_reports(report, target, formats=("html", "markdown", "junit"))
    for path in written.values():
        _echo(str(path))
    return EXIT_READY


@app.command()
@click.argument("old", metavar="OLD.json", type=click.Path(path_type=Path))
@click.argument("new", metavar="NEW.json", type=click.Path(path_type=Path))
@click.option(
    "--max-drop",
    type=float,
    default=0.02,
    show_default=True,
    help="Largest tolerated drop of an accuracy-like metric.",
)
def compare(old: Path, new: Path, max_drop: float) -> int:
    """Metric by metric changes between two reports. Exit 1 when an accuracy-like metric dropped by more than --max-drop."""
    from roadworthy.compare import compare_reports, comparison_warnings, format_comparison
    from roadworthy.results import load_report

    if not 0 <= max_drop <= 1:
        raise InvalidInputError(f"--max-drop must be in [0, 1]. Got {max_drop} instead.")
    old_report, new_report = load_report(str(old)), load_report(str(new))
    rows, regressions = compare_reports(old_report, new_report, max_drop)
    _echo(format_comparison(rows, regressions, max_drop, comparison_warnings(old_report, new_report)))
    return EXIT_NOT_READY if regressions else EXIT_READY


@app.command("list")
def list_checks() -> int:
    """Suites and checks, one line each."""
    from roadworthy.checks import SUITE_ORDER, load_builtin_checks

    registry = load_builtin_checks()
    rank = {s: i for i, s in enumerate(SUITE_ORDER)}
    for cid in sorted(registry, key=lambda i: (rank.get(i.split(".")[0], 99), i)):
        cls = registry[cid]
        req = []
        if cls.requires.capabilities:
            req.append("+".join(sorted(cls.requires.capabilities)))
        if cls.requires.modalities != frozenset({"image", "tabular"}):
            req.append("/".join(sorted(cls.requires.modalities)))
        if cls.requires.train_data:
            req.append("train-data")
        budgets = ",".join(b for b in BUDGETS if b in cls.budgets)
        _echo(f"{cid:<34} {cls.title:<44} [{budgets}]" + (f" needs {', '.join(req)}" if req else ""))
    return EXIT_READY


@app.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("roadworthy.yaml"),
    show_default=True,
    help="Where to write the policy.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(out: Path, force: bool) -> int:
    """Write a commented roadworthy.yaml policy with the default gates."""
    from roadworthy.policy import DEFAULT_POLICY_TEXT

    if out.exists() and not force:
        raise InvalidInputError(f"{out}: already exists; pass --force to overwrite it")
    out.write_text(DEFAULT_POLICY_TEXT, encoding="utf-8")
    _echo(f"wrote {out}")
    return EXIT_READY


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


class _maybe_live:
    """Start/stop a Rich live display around a run; plain progress needs nothing."""

    def __init__(self, progress: object) -> None:
        self.progress = progress

    def __enter__(self) -> object:
        if hasattr(self.progress, "__enter__"):
            return self.progress.__enter__()  # type: ignore[attr-defined]
        return self.progress

    def __exit__(self, *exc: object) -> None:
        if hasattr(self.progress, "__exit__"):
            self.progress.__exit__(*exc)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps errors to exit codes and one-line messages.

    ``ROADWORTHY_DEBUG=1`` adds the traceback on stderr; it never changes the exit code.
    """
    import warnings

    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        code = app.main(args=argv, prog_name="roadworthy", standalone_mode=False)
    except click.exceptions.Abort:
        _fail(EXIT_NOT_READY, "roadworthy: interrupted before any check finished; nothing was written")
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_BAD_INPUT)
    except OutputError as exc:
        _fail(EXIT_INTERNAL, f"roadworthy: error: {_one_line(exc)}", exc)
    except RoadworthyError as exc:
        _fail(EXIT_BAD_INPUT, f"roadworthy: error: {_one_line(exc)}", exc)
    except KeyboardInterrupt as exc:
        _fail(EXIT_NOT_READY, "roadworthy: interrupted before any check finished; nothing was written", exc)
    except Exception as exc:  # noqa: BLE001 - the boundary: any other failure is an internal error, exit 3
        _fail(
            EXIT_INTERNAL,
            f"roadworthy: internal error: {type(exc).__name__}: {_one_line(exc)} "
            "(set ROADWORTHY_DEBUG=1 for the traceback and please report it)",
            exc,
        )
    finally:
        warnings.showwarning = previous
    sys.exit(code if isinstance(code, int) else 0)


def _fail(code: int, line: str, exc: BaseException | None = None) -> None:
    """Write the one-line message (and with ``ROADWORTHY_DEBUG`` the traceback), then exit with ``code``."""
    if exc is not None and os.environ.get("ROADWORTHY_DEBUG"):
        import traceback

        sys.stderr.write("".join(traceback.format_exception(exc)))
    sys.stderr.write(line + "\n")
    sys.exit(code)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """Warnings as one line for people, without the Python source path and line of the default format."""
    sys.stderr.write(f"roadworthy: warning: {_one_line(message)}\n")  # type: ignore[arg-type]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:500]


if __name__ == "__main__":
    main()
