"""Policy: gates over metrics and a baseline comparison, turned into a verdict.

A gate is ``METRIC OP NUMBER`` (``clean.accuracy >= 0.90``); ``*`` in the metric matches many
(``attack.*.robust_accuracy >= 0.1`` is one gate per attack). A gate on a metric that was not
measured is *not evaluated* (``passed: null``), never passed. With ``--baseline``, no accuracy-like
metric may fall more than ``baseline.max_drop`` below the baseline's value.

The policy file is validated strictly before anything is loaded: unknown keys, quoted booleans
(``"false"``) and gates on metric names no selected check can produce are errors, because each of them
would otherwise weaken a gate without a word.
"""

from __future__ import annotations

import fnmatch
import math
import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from roadworthy.errors import InvalidInputError
from roadworthy.results import CheckResult, Gate, Report

if TYPE_CHECKING:
    from roadworthy.checks.base import Check

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
    "integrity.backdoor_scan.suspect_count <= 0",
    "integrity.leakage.count <= 0",
    "fuzz.failure_rate_ci_low <= 0.05",
)

# Models without gradients (ONNX, scikit-learn, a plain function) cannot run the white-box attacks, so
# their attack gates would never be evaluated: these black-box ones take their place.
DEFAULT_BLACK_BOX_GATES = (
    "attack.square.robust_accuracy >= 0.10",
    "attack.hopskipjump.eps_0.10000.robust_accuracy >= 0.50",
)

# Gates that apply only when the run compares the model with a --reference-model (the parity suite): a
# run without a reference has no parity metrics, and its verdict must not depend on them, not even with
# fail_on_unevaluated.
DEFAULT_REFERENCE_GATES = ("parity.disagreement <= 0.01",)

# Gates that apply only to tabular models (data with modality "tabular"): the weaknesses a table's model
# meets in production. An image run has none of these metrics, and its verdict must not list them as
# "not evaluated", so they join the gates only for tables (reasons in docs/metrics.md, "Default policy").
DEFAULT_TABULAR_GATES = (
    "shift.tab_feature_sensitivity.max_drop <= 0.20",
    "attack.tab_*.eps_0.10000.robust_accuracy >= 0.50",
)

# Attacks that need the model's gradients; a gate on one of their metrics cannot hold for a black box.
WHITE_BOX_ATTACKS = ("fgsm", "pgd_linf", "pgd_l2", "apgd_ce", "apgd_dlr", "autoattack", "sticker")

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
  - integrity.backdoor_scan.suspect_count <= 0   # backdoor target in the model (Neural Cleanse; eval data only)
  - integrity.leakage.count <= 0       # test samples that also sit in the training data
  # --- OOD and calibration
  # - ood.energy.auroc >= 0.80
  # - ood.calibration.ece_shifted <= 0.15
  # --- fuzzing (image models): small plausible changes (DeepHunter's bounded mutations that the validity
  # gate accepts) must rarely break the model. Valid failures per fuzzed mutant, lower end of the 95%
  # interval: the gate fails only when the evidence says more than 5% break it. Fuzzing searches for
  # failures, so this is no error rate on natural data, and the rate depends on the search and budget.
  - fuzz.failure_rate_ci_low <= 0.05

# Models without gradients (ONNX, scikit-learn, a function) cannot run the white-box attacks above; for
# them these gates replace every gate on a white-box attack (fgsm, pgd_*, apgd_*, autoattack, sticker).
black_box_gates:
  - attack.square.robust_accuracy >= 0.10                 # score queries at 8/255 must leave 10% standing
  - attack.hopskipjump.eps_0.10000.robust_accuracy >= 0.50  # an L2 change of 0.1 must not flip half

# With --reference-model (the artifact that was tested, e.g. the PyTorch model an ONNX or int8 file was
# made from) these gates apply too; without one they are left out, also under fail_on_unevaluated.
reference_gates:
  - parity.disagreement <= 0.01        # the shipped file may change at most 1% of top-1 predictions
  # - parity.disagreement_ci_high <= 0.02   # stricter: the upper end of the 95% interval
  # - parity.clean.disagreement <= 0     # an exact export must agree on every clean input

# For tabular models (a feature table as data) these gates apply too; image runs leave them out. The
# default gates above on shifts (shift.rpc) cover the tabular shifts as well.
tabular_gates:
  - shift.tab_feature_sensitivity.max_drop <= 0.20   # one column recorded in another unit (x1.5 to x10)
                                                      # must not cost 20 points of accuracy
  - attack.tab_*.eps_0.10000.robust_accuracy >= 0.50  # a 0.1-standard-deviation edit of the mutable
                                                      # columns must not flip half the rows

baseline:
  max_drop: 0.02        # with --baseline: no *accuracy metric may fall more than this below the baseline

fail_on_unevaluated: false   # true: a gate whose metric was not measured fails the verdict
fail_on_error: true          # a check that crashed makes the verdict not-ready
# schema:                    # tables only: override the feature schema inferred from the training data
#   immutable: [age, country]  # columns no shift or attack may change
#   kinds: {zip_code: categorical}   # continuous, integer, binary or categorical
#   ranges: {income: [0, 500000]}    # the valid range (default: the observed one)
#   one_hot: [[colour_red, colour_green, colour_blue]]  # one-hot categories (default: inferred by name prefix)
# (booleans are unquoted: "false" in quotes is a string and is refused)
"""


class _BaselineSection(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    max_drop: float = Field(0.02, ge=0, le=1)


class _PolicyFile(BaseModel):
    """The schema of roadworthy.yaml: strict types (``"false"`` is not a boolean), no unknown keys."""

    model_config = ConfigDict(extra="forbid", strict=True)

    gates: list[str] = Field(default_factory=list)
    black_box_gates: list[str] = Field(default_factory=list)
    reference_gates: list[str] = Field(default_factory=list)
    tabular_gates: list[str] = Field(default_factory=list)
    baseline: _BaselineSection = Field(default_factory=_BaselineSection)
    fail_on_unevaluated: bool = False
    fail_on_error: bool = True
    #: tables: the feature schema's overrides (immutable, kinds, ranges, one_hot), checked by roadworthy.schema
    feature_schema: dict[str, Any] | None = Field(None, alias="schema")  # "schema" is taken by BaseModel


_ALLOWED = {
    "": sorted(f.alias or n for n, f in _PolicyFile.model_fields.items()),
    "baseline": sorted(_BaselineSection.model_fields),
}


def _policy_error(source: str, exc: ValidationError) -> InvalidInputError:
    """One line for the first problem pydantic found, in the words of the policy file."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    where = ".".join(loc)
    found = err.get("input")
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = ".".join(loc[:-1])
        allowed = ", ".join(_ALLOWED.get(parent, []))
        return InvalidInputError(
            f"{source}: unknown policy key(s) {where}; allowed{' under ' + parent if parent else ''}: {allowed}"
        )
    if loc and loc[0] in ("fail_on_unevaluated", "fail_on_error"):
        kind_text = f" (a {type(found).__name__})" if not isinstance(found, bool) else ""
        return InvalidInputError(
            f"{source}: {where} must be true or false, unquoted. Got {found!r}{kind_text} instead."
        )
    if loc and loc[0] == "baseline" and len(loc) == 1:
        return InvalidInputError(
            f"{source}: 'baseline' must be a mapping like 'max_drop: 0.02'. Got {found!r}."
        )
    if where == "baseline.max_drop":
        return InvalidInputError(
            f"{source}: baseline.max_drop must be a number in [0, 1]. Got {found!r} instead."
        )
    if loc and loc[0] in ("gates", "black_box_gates", "reference_gates", "tabular_gates"):
        return InvalidInputError(
            f"{source}: '{loc[0]}' must be a list of 'METRIC OP NUMBER' strings, e.g. "
            f"'clean.accuracy >= 0.9'. Got {found!r} at {where} instead."
        )
    return InvalidInputError(f"{source}: {where}: {err['msg']}. Got {found!r} instead.")


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
    """Gates over metric names, the baseline's ``max_drop`` and how unmeasured or crashed checks count.

    ``black_box_gates`` apply only to models without gradients; for such a model they replace every gate
    on a white-box attack; ``reference_gates`` apply only to runs with a reference model and
    ``tabular_gates`` only to tabular data (see :meth:`for_model`).
    """

    gates: list[GateRule] = field(default_factory=lambda: [GateRule.parse(g) for g in DEFAULT_GATES])
    max_drop: float = 0.02
    fail_on_unevaluated: bool = False
    fail_on_error: bool = True
    source: str = "default policy"
    black_box_gates: list[GateRule] = field(
        default_factory=lambda: [GateRule.parse(g) for g in DEFAULT_BLACK_BOX_GATES]
    )
    reference_gates: list[GateRule] = field(
        default_factory=lambda: [GateRule.parse(g) for g in DEFAULT_REFERENCE_GATES]
    )
    tabular_gates: list[GateRule] = field(
        default_factory=lambda: [GateRule.parse(g) for g in DEFAULT_TABULAR_GATES]
    )
    #: tables: overrides of the inferred feature schema (``immutable``, ``kinds``, ``ranges``, ``one_hot``)
    schema: dict[str, Any] = field(default_factory=dict)

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
        """A policy from the parsed YAML mapping; every problem is one :class:`InvalidInputError` line."""
        if not isinstance(raw, dict):
            raise InvalidInputError(f"{source}: the policy must be a mapping with a 'gates' list")
        unknown = set(raw) - set(_ALLOWED[""])
        if unknown:
            raise InvalidInputError(
                f"{source}: unknown policy key(s) {', '.join(sorted(map(str, unknown)))}; "
                f"allowed: {', '.join(_ALLOWED[''])}"
            )
        raw = {k: v for k, v in raw.items() if not (k == "baseline" and v is None)}
        try:
            parsed = _PolicyFile.model_validate(raw)
        except ValidationError as exc:
            raise _policy_error(source, exc) from exc
        return cls(
            gates=[GateRule.parse(g, source) for g in parsed.gates],
            black_box_gates=[GateRule.parse(g, source) for g in parsed.black_box_gates],
            reference_gates=[GateRule.parse(g, source) for g in parsed.reference_gates],
            tabular_gates=[GateRule.parse(g, source) for g in parsed.tabular_gates],
            max_drop=float(parsed.baseline.max_drop),
            fail_on_unevaluated=parsed.fail_on_unevaluated,
            fail_on_error=parsed.fail_on_error,
            source=source,
            schema=dict(parsed.feature_schema or {}),
        )

    def check_metric_names(self, checks: Iterable[type[Check]]) -> None:
        """Refuse a gate whose metric no check can produce (a typo would leave it never evaluated).

        A name is known when docs/metrics.md documents it (:mod:`roadworthy.metric_names`) or when it lies
        under a selected plug-in check (one defined outside roadworthy). Wildcard gates must be able to
        match at least one known name.
        """
        from roadworthy.metric_names import is_known, nearest

        builtin_suites = {"sanity", "clean", "shift", "ood", "attack", "integrity"}
        extra = []
        for cls in checks:
            if cls.__module__.startswith("roadworthy.checks"):
                continue
            extra.append(cls.id if cls.suite() in builtin_suites else cls.suite())
        for rule in (*self.gates, *self.black_box_gates, *self.reference_gates, *self.tabular_gates):
            if is_known(rule.metric, extra):
                continue
            hint = nearest(rule.metric)
            raise InvalidInputError(
                f"{self.source}: gate '{rule.text}' names unknown metric {rule.metric!r}"
                + (f" (did you mean {hint}?)" if hint else "")
                + "; metric names are listed in docs/metrics.md and under 'metrics' in report.json"
            )

    def for_model(
        self, white_box: bool, reference: bool = False, tabular: bool = False
    ) -> tuple[Policy, list[str]]:
        """The gates that apply to a model with or without gradients, and warnings about the others.

        For a black-box model the ``black_box_gates`` replace every gate on a white-box attack. Without
        black-box gates those white-box gates stay (not evaluated), and a warning says so. The
        ``reference_gates`` join the gates only when ``reference`` (a ``--reference-model`` was given),
        the ``tabular_gates`` only when ``tabular`` (the data is a feature table); the returned policy has
        no ``reference_gates`` or ``tabular_gates`` left either way.
        """
        policy, notes = self._for_gradients(white_box)
        extra = [*(policy.reference_gates if reference else []), *(policy.tabular_gates if tabular else [])]
        return replace(policy, gates=[*policy.gates, *extra], reference_gates=[], tabular_gates=[]), notes

    def _for_gradients(self, white_box: bool) -> tuple[Policy, list[str]]:
        if white_box:
            return self, []
        white = [r for r in self.gates if _white_box_only(r.metric)]
        if not white:
            return replace(self, gates=[*self.gates, *self.black_box_gates]), []
        if self.black_box_gates:
            kept = [r for r in self.gates if not _white_box_only(r.metric)]
            return replace(self, gates=[*kept, *self.black_box_gates]), []
        names = ", ".join(r.text for r in white)
        return self, [
            f"the model has no gradients, so the white-box attack gate(s) {names} cannot be evaluated; "
            f"add black_box_gates to {self.source} (roadworthy init shows them)"
        ]


def _white_box_only(metric: str) -> bool:
    """Whether a gate's metric belongs to a white-box attack only (no black-box check can produce it)."""
    return any(metric.startswith(f"attack.{a}.") for a in WHITE_BOX_ATTACKS)


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
    if policy.fail_on_unevaluated:
        # a gate that could not be evaluated fails, and says why (JUnit and every renderer count it)
        for g in gates:
            if g.passed is None:
                g.passed = False
                g.note = "not measured; the policy sets fail_on_unevaluated"
    failed = any(g.passed is False for g in gates)
    return gates, "not-ready" if failed else "ready"


def mark_failed_checks(checks: list[CheckResult], gates: list[Gate]) -> None:
    """Set status ``fail`` on every check that produced a metric whose gate failed."""
    failed_metrics = {g.metric for g in gates if g.passed is False and g.metric}
    for c in checks:
        if c.status in ("pass", "warn") and failed_metrics & set(c.metrics):
            c.status = "fail"
