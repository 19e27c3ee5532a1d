"""Policy: gates over metrics and a baseline comparison, turned into a verdict.

A gate is ``METRIC OP NUMBER`` (``clean.accuracy >= 0.90``); ``*`` in the metric matches many
(``attack.*.robust_accuracy >= 0.1`` is one gate per attack). A gate on a metric that was not
measured is *not evaluated* (``passed: null``), never passed. With ``--baseline``, no accuracy-like
metric may fall more than ``baseline.max_drop`` below the baseline's value.
"""

from __future__ import annotations

import fnmatch
import math
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roadworthy.errors import InvalidInputError
from roadworthy.results import CheckResult, Gate, Report

OPS = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
_GATE = re.compile(
    r"^\s*([A-Za-z0-9_.*\-]+)\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)

DEFAULT_GATES = (
    "sanity.determinism >= 1",
    "sanity.batch_invariance >= 1",
    "sanity.outputs_valid >= 1",
    "clean.accuracy >= 0.80",
    "shift.rpc >= 0.70",
    "attack.pgd_linf.eps_0.00392.robust_accuracy >= 0.50",
    "attack.trustworthy >= 1",
    "integrity.label_issues.rate <= 0.05",
    "integrity.poisoning.suspect_count <= 0",
    "integrity.leakage.count <= 0",
)

DEFAULT_POLICY_TEXT = """\
# roadworthy policy: the gates a model must pass to be called ready.
# Each gate is "METRIC OP NUMBER" with OP one of >= <= > < == !=. Metric names are listed in
# docs/metrics.md and in every report.json under "metrics". "*" matches any part of a name:
# "attack.*.robust_accuracy >= 0.1" is one gate per attack. A gate whose metric was not measured
# (its suite did not run) is shown as "not evaluated"; it does not fail unless fail_on_unevaluated.
# Every accuracy X also has X_ci_low / X_ci_high (95% Wilson interval): gate on X_ci_low to demand
# that the number holds with confidence, not just on this sample.
gates:
  # --- mistakes that make every other number wrong
  - sanity.determinism >= 1            # same input, same output
  - sanity.batch_invariance >= 1       # no batch-norm statistics / training mode left on
  - sanity.outputs_valid >= 1          # finite outputs, one column per class
  # --- the model does its job on data like its test set
  - clean.accuracy >= 0.80
  # - clean.accuracy_ci_low >= 0.90    # stricter: the lower end of the 95% interval
  # --- natural shifts (noise, blur, weather, faded signs, vegetation, rotation...)
  - shift.rpc >= 0.70                  # keeps 70% of its clean accuracy on average under shift
  # - shift.worst_accuracy >= 0.30
  # --- evasion attacks
  - attack.pgd_linf.eps_0.00392.robust_accuracy >= 0.50   # a 1/255 change must not flip half the inputs
  - attack.trustworthy >= 1            # the attacks show no sign of gradient masking
  # - attack.pgd_linf.robust_accuracy >= 0.10             # at the budget's default strength (8/255)
  # --- training data (needs --train-data)
  - integrity.label_issues.rate <= 0.05
  - integrity.poisoning.suspect_count <= 0
  - integrity.leakage.count <= 0       # test samples that also sit in the training data
  # --- OOD and calibration
  # - ood.energy.auroc >= 0.80
  # - ood.calibration.ece_shifted <= 0.15

baseline:
  max_drop: 0.02        # with --baseline: no *accuracy metric may fall more than this below the baseline

fail_on_unevaluated: false   # true: a gate whose metric was not measured fails the verdict
fail_on_error: true          # a check that crashed makes the verdict not-ready
"""


@dataclass(frozen=True)
class GateRule:
    metric: str
    op: str
    threshold: float

    @property
    def text(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"

    @classmethod
    def parse(cls, text: str, source: str = "policy") -> GateRule:
        m = _GATE.match(str(text))
        if not m:
            raise InvalidInputError(
                f"{source}: gate {text!r} must look like 'METRIC OP NUMBER', e.g. 'clean.accuracy >= 0.9'"
            )
        return cls(m.group(1), m.group(2), float(m.group(3)))


@dataclass
class Policy:
    gates: list[GateRule] = field(default_factory=lambda: [GateRule.parse(g) for g in DEFAULT_GATES])
    max_drop: float = 0.02
    fail_on_unevaluated: bool = False
    fail_on_error: bool = True
    source: str = "default policy"

    @classmethod
    def load(cls, path: str | Path | None) -> Policy:
        """The policy in ``path`` (YAML), or the documented default when ``path`` is None."""
        if path is None:
            return cls()
        import yaml

        p = Path(path)
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise InvalidInputError(f"{path}: policy file not found") from exc
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise InvalidInputError(
                f"{path}: not a readable YAML policy ({str(exc).splitlines()[0]})"
            ) from exc
        return cls.from_dict(raw or {}, source=str(path))

    @classmethod
    def from_dict(cls, raw: Any, source: str = "policy") -> Policy:
        if not isinstance(raw, dict):
            raise InvalidInputError(f"{source}: the policy must be a mapping with a 'gates' list")
        unknown = set(raw) - {"gates", "baseline", "fail_on_unevaluated", "fail_on_error"}
        if unknown:
            raise InvalidInputError(f"{source}: unknown policy key(s) {', '.join(sorted(unknown))}")
        gates_raw = raw.get("gates", [])
        if not isinstance(gates_raw, list):
            raise InvalidInputError(f"{source}: 'gates' must be a list of 'METRIC OP NUMBER' strings")
        base = raw.get("baseline") or {}
        if not isinstance(base, dict):
            raise InvalidInputError(f"{source}: 'baseline' must be a mapping like 'max_drop: 0.02'")
        max_drop = base.get("max_drop", 0.02)
        if not isinstance(max_drop, int | float) or not 0 <= max_drop <= 1:
            raise InvalidInputError(
                f"{source}: baseline.max_drop must be a number in [0, 1]. Got {max_drop!r} instead."
            )
        return cls(
            gates=[GateRule.parse(g, source) for g in gates_raw],
            max_drop=float(max_drop),
            fail_on_unevaluated=bool(raw.get("fail_on_unevaluated", False)),
            fail_on_error=bool(raw.get("fail_on_error", True)),
            source=source,
        )


def is_accuracy_metric(name: str) -> bool:
    """Accuracy-like metrics (the ones a baseline comparison guards): ``...accuracy``, not CI bounds."""
    return name.endswith("accuracy") and not name.endswith(("_ci_low", "_ci_high", "_n"))


def evaluate_gates(policy: Policy, metrics: dict[str, float | None]) -> list[Gate]:
    """One :class:`Gate` per rule (per matched metric for wildcard rules)."""
    gates: list[Gate] = []
    for rule in policy.gates:
        names = (
            sorted(n for n in metrics if fnmatch.fnmatchcase(n, rule.metric))
            if "*" in rule.metric
            else [rule.metric]
        )
        if not names:
            gates.append(Gate(rule=rule.text, value=None, passed=None, metric=rule.metric))
            continue
        for name in names:
            value = metrics.get(name)
            text = rule.text if name == rule.metric else f"{name} {rule.op} {rule.threshold:g}"
            if value is None or not math.isfinite(value):
                gates.append(Gate(rule=text, value=None, passed=None, metric=name))
            else:
                gates.append(
                    Gate(
                        rule=text, value=value, passed=bool(OPS[rule.op](value, rule.threshold)), metric=name
                    )
                )
    return gates


def baseline_gates(policy: Policy, metrics: dict[str, float | None], baseline: Report) -> list[Gate]:
    """No accuracy-like metric may drop more than ``max_drop`` below the baseline report's value."""
    gates = []
    for name in sorted(metrics):
        if not is_accuracy_metric(name):
            continue
        old, new = baseline.metrics.get(name), metrics.get(name)
        if old is None or not math.isfinite(old):
            continue
        floor = old - policy.max_drop
        rule = f"{name} >= {floor:.4g} (baseline {old:.4g} - {policy.max_drop:g})"
        if new is None or not math.isfinite(new):
            gates.append(Gate(rule=rule, value=None, passed=None, metric=name, source="baseline"))
        else:
            gates.append(
                Gate(rule=rule, value=new, passed=bool(new >= floor - 1e-12), metric=name, source="baseline")
            )
    return gates


def judge(
    policy: Policy,
    metrics: dict[str, float | None],
    checks: list[CheckResult],
    baseline: Report | None = None,
) -> tuple[list[Gate], str]:
    """Gates and verdict (``ready`` / ``not-ready``) for a set of measured metrics."""
    gates = evaluate_gates(policy, metrics)
    if baseline is not None:
        gates += baseline_gates(policy, metrics, baseline)
    errored = [c.id for c in checks if c.status == "error"]
    if policy.fail_on_error:
        gates.append(
            Gate(
                rule="no check errored" + (f" ({', '.join(errored)})" if errored else ""),
                value=float(len(errored)),
                passed=not errored,
                metric=None,
                source="runner",
            )
        )
    failed = any(g.passed is False for g in gates)
    if policy.fail_on_unevaluated and any(g.passed is None for g in gates):
        failed = True
    return gates, "not-ready" if failed else "ready"


def mark_failed_checks(checks: list[CheckResult], gates: list[Gate]) -> None:
    """Set status ``fail`` on every check that produced a metric whose gate failed."""
    failed_metrics = {g.metric for g in gates if g.passed is False and g.metric}
    for c in checks:
        if c.status in ("pass", "warn") and failed_metrics & set(c.metrics):
            c.status = "fail"
