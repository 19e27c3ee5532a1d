"""A fixed report (no timings, no randomness) for renderer tests, with hostile user-controlled text."""

from __future__ import annotations

from roadworthy.results import (
    CheckResult,
    DataDescription,
    Example,
    Gate,
    ModelDescription,
    Report,
    ToolInfo,
)

HOSTILE = '<script>alert("x")</script>'
PIXEL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def fixed_report() -> Report:
    checks = [
        CheckResult(
            id="clean.accuracy",
            suite="clean",
            title="Clean accuracy",
            status="pass",
            summary=f"97.0% correct; weakest class {HOSTILE}.",
            metrics={
                "clean.accuracy": 0.97,
                "clean.accuracy_ci_low": 0.95,
                "clean.accuracy_ci_high": 0.98,
                "clean.accuracy_n": 500.0,
                "clean.ece": 0.021,
            },
            details={"confusion_matrix": [[9, 1], [0, 10]], "class_names": ["stop", HOSTILE]},
            examples=[
                Example(title="sample 3", label=HOSTILE, original=PIXEL, original_prediction="stop"),
                Example(title="evil uri", original="javascript:alert(1)"),
            ],
            duration_s=0.5,
        ),
        CheckResult(
            id="attack.fgsm",
            suite="attack",
            title="FGSM",
            status="fail",
            summary="robust accuracy 0.02 at 8/255",
            metrics={"attack.fgsm.robust_accuracy": 0.02},
            warnings=["gradients were zero for 3% of samples"],
            duration_s=1.25,
        ),
        CheckResult(
            id="integrity.label_issues",
            suite="integrity",
            title="Label issues",
            status="skipped",
            summary="Skipped: needs --train-data.",
        ),
        CheckResult(
            id="shift.snow",
            suite="shift",
            title="Snow",
            status="error",
            error="ValueError: bad | pipe",
            summary="The check crashed: ValueError: bad | pipe",
        ),
    ]
    gates = [
        Gate(rule="clean.accuracy >= 0.9", value=0.97, passed=True, metric="clean.accuracy"),
        Gate(
            rule="attack.fgsm.robust_accuracy >= 0.1",
            value=0.02,
            passed=False,
            metric="attack.fgsm.robust_accuracy",
        ),
        Gate(
            rule="integrity.label_issues.rate <= 0.03",
            value=None,
            passed=None,
            metric="integrity.label_issues.rate",
        ),
    ]
    metrics: dict[str, float | None] = {}
    for c in checks:
        metrics.update(c.metrics)
    return Report(
        tool=ToolInfo(version="0.1.0", frameworks={"numpy": "2.0"}),
        created="2026-01-01T00:00:00+00:00",
        seed=7,
        budget="quick",
        model=ModelDescription(
            path=f"models/{HOSTILE}.onnx", format="onnx", sha256="ab" * 32, n_classes=2, white_box=False
        ),
        data=DataDescription(
            path="data/test.npz",
            sha256="cd" * 32,
            n_samples=500,
            modality="image",
            input_shape=[3, 32, 32],
            class_names=["stop", HOSTILE],
        ),
        metrics=metrics,
        checks=checks,
        gates=gates,
        verdict="not-ready",
    )
