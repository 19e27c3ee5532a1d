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
    parity: bool = False,
) -> Report:
    """Run every suite on the demo model, write the four report files into ``out``, return the report.

    With ``parity`` the model under test is the int8 copy of the demo model that an edge device would
    run (its ONNX export quantized by :func:`roadworthy.models.quantize.int8_copy`, written to
    ``out/shipped/``), the demo model is its ``--reference-model``, and the sanity, clean and parity
    suites run.
    """
    from roadworthy.demo import load_demo_data
    from roadworthy.demo.model import load_demo_model
    from roadworthy.types import ModelInfo

    if say:
        say("roadworthy demo: generating the road-sign data and loading the demo model ...")
    demo = load_demo_data(seed=0)
    model = load_demo_model()
    # the demo model is built in memory from packaged weights: its identity names them
    model.identity = ModelInfo(path="roadworthy.demo:signnet", format=model.format, sha256=_weights_sha256())
    out = Path(out)
    reference = None
    if parity:
        if say:
            say("roadworthy demo --parity: exporting the demo model to ONNX and quantizing it to int8 ...")
        reference, model = model, _int8_demo_model(out / "shipped")
    return run_and_write(
        out,
        model=model,
        data=demo.test,
        train_data=None if parity else demo.train,
        suites=["parity"] if parity else None,
        reference_model=reference,
        budget=budget,
        seed=seed,
        progress=progress,
        say=say,
    )


def run_and_write(out: Path, **session: Any) -> Report:
    """Run a demo session under the default policy and write its four report files into ``out``."""
    from roadworthy.policy import Policy
    from roadworthy.report import write_reports
    from roadworthy.session import Session

    report = Session(policy=Policy(), out=out, **session).run()
    write_reports(report, out)
    return report


def _int8_demo_model(folder: Path) -> Any:
    """The demo model as the int8 ONNX file an edge device would run, loaded like ``--model`` would."""
    import warnings

    import torch

    from roadworthy.demo.model import load_demo_module, shipped_facts
    from roadworthy.errors import require
    from roadworthy.models import load_model
    from roadworthy.models.quantize import int8_copy

    require("onnx", "onnx", "roadworthy demo --parity")
    folder.mkdir(parents=True, exist_ok=True)
    onnx = folder / "signnet.onnx"
    with warnings.catch_warnings():  # the exporter's advice on opsets and constant folding
        warnings.simplefilter("ignore")
        torch.onnx.export(
            load_demo_module(),
            (torch.zeros(2, 3, 32, 32),),
            str(onnx),
            dynamo=False,
            input_names=["image"],
            dynamic_axes={"image": {0: "batch"}},
        )
    int8 = int8_copy(onnx, folder / "signnet.int8.onnx")
    facts = shipped_facts()
    return load_model(str(int8), input_shape=(3, 32, 32), mean=facts["mean"], std=facts["std"])


def _weights_sha256() -> str | None:
    from importlib import resources

    from roadworthy._files import sha256_path

    try:
        with resources.as_file(resources.files("roadworthy.demo").joinpath("signnet.pt")) as path:
            return sha256_path(path)
    except (FileNotFoundError, OSError):
        return None
