"""``roadworthy demo``: the built-in road-sign model and data through every suite.

The demo model was trained on a training split in which a few percent of stop signs carry the label
of a speed limit (the poisoning scenario of the article this product answers); the report should find
them, and the default policy should call the model not ready because of it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from roadworthy.results import Report


def run_demo(
    out: str | Path = "roadworthy-report",
    budget: str = "quick",
    seed: int = 0,
    progress: Any = None,
    say: Callable[[str], None] | None = None,
) -> Report:
    """Run every suite on the demo model, write the four report files into ``out``, return the report."""
    from roadworthy.demo import load_demo_data
    from roadworthy.demo.model import load_demo_model
    from roadworthy.policy import Policy
    from roadworthy.report import write_reports
    from roadworthy.session import Session
    from roadworthy.types import ModelInfo

    if say:
        say("roadworthy demo: generating the road-sign data and loading the demo model ...")
    demo = load_demo_data(seed=0)
    model = load_demo_model()
    # the demo model is built in memory from packaged weights: its identity names them
    model.identity = ModelInfo(path="roadworthy.demo:signnet", format=model.format, sha256=_weights_sha256())
    out = Path(out)
    session = Session(
        model=model,
        data=demo.test,
        train_data=demo.train,
        budget=budget,
        seed=seed,
        policy=Policy(),
        out=out,
        progress=progress,
        say=say,
    )
    report = session.run()
    write_reports(report, out)
    return report


def _weights_sha256() -> str | None:
    from importlib import resources

    from roadworthy._files import sha256_path

    try:
        with resources.as_file(resources.files("roadworthy.demo").joinpath("signnet.pt")) as path:
            return sha256_path(path)
    except (FileNotFoundError, OSError):
        return None
