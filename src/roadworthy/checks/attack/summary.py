"""The attack suite's overview: one trust verdict over every attack, and the robustness curves side by side.

It compares attacks with each other, which no single attack can do: a weaker attack (one-step FGSM, a
black-box attack) that fools the model more often than a stronger white-box attack at the same budget
means the stronger one failed, most often through gradient masking (Athalye, Carlini, Wagner, ICML 2018;
pitfalls: "Gradient masking").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from roadworthy import evidence
from roadworthy.checks.attack import _common as common
from roadworthy.checks.attack import trust
from roadworthy.checks.base import Check, Context, Outcome, register
from roadworthy.results import CheckResult

#: Strong attacks per norm, and the weaker attacks that must not beat them.
STRONG = {
    "linf": ("attack.pgd_linf", "attack.apgd_ce", "attack.apgd_dlr", "attack.autoattack"),
    "l2": ("attack.pgd_l2",),
}
WEAK = {"linf": ("attack.fgsm", "attack.square"), "l2": ("attack.hopskipjump",)}


@dataclass(frozen=True)
class SummaryParams:
    pass


@register
class AttackSummary(Check):
    """Attack suite summary: ``attack.trustworthy`` is 1 when every attack that ran is trustworthy and no
    weaker attack (FGSM, Square, HopSkipJump) beats a stronger white-box one at the same budget.

    Threat model: the union of the attacks' own (each states its threat model in ``details.threat_model``).
    """

    id = "attack.summary"
    title = "Attack suite: trust and robustness overview"
    Params = SummaryParams
    depends_on = ("attack.*",)

    def run(self, ctx: Context) -> Outcome:
        results = {
            cid: r
            for cid, r in sorted(ctx.results.items())
            if cid.startswith("attack.") and cid != self.id and r.status in ("pass", "warn", "fail")
        }
        attacks: dict[str, Any] = {}
        curves: dict[str, Any] = {}
        for cid, r in results.items():
            m = r.metrics
            attacks[cid] = {
                "title": r.title,
                "robust_accuracy": m.get(f"{cid}.robust_accuracy"),
                "ci_low": m.get(f"{cid}.robust_accuracy_ci_low"),
                "ci_high": m.get(f"{cid}.robust_accuracy_ci_high"),
                "trustworthy": m.get(f"{cid}.trustworthy"),
                "statement": r.details.get("trust", {}).get("statement", ""),
                "threat_model": r.details.get("threat_model", {}),
            }
            if r.details.get("curve", {}).get("eps"):
                curves[cid] = r.details["curve"]
        findings = self._comparisons(results)
        untrusted = [cid for cid, a in attacks.items() if a["trustworthy"] == 0.0]
        warnings = [f"not trustworthy: {f.message}" for f in findings if not f.ok]
        warnings += [
            f"not trustworthy: {cid}: {attacks[cid]['statement'].removeprefix('not trustworthy: ')}"
            for cid in untrusted
        ]
        metrics: dict[str, float] = {}
        if attacks:
            metrics["attack.trustworthy"] = 0.0 if warnings else 1.0
        details: dict[str, Any] = {
            "attacks": attacks,
            "curves": curves,
            "comparisons": [f.as_dict() for f in findings],
            "not_tested": [
                "targeted attacks",
                "adaptive attacks against a specific defence",
                "physical-world attacks (laser and sticker are simulated digitally)",
                "privacy attacks, poisoning of the model (see the integrity suite for data)",
            ],
        }
        curve_plots = self._curve_evidence(curves)
        if curve_plots:
            details[evidence.KEY] = curve_plots
        if not attacks:
            summary = "No attack ran (the model or data did not support any, or none was selected)."
        else:
            rated = [
                (a["robust_accuracy"], cid) for cid, a in attacks.items() if a["robust_accuracy"] is not None
            ]
            worst = min(rated) if rated else None
            lead = f"{len(attacks)} attacks ran"
            if worst:
                tm = attacks[worst[1]]["threat_model"]
                at = f" at {tm['eps_text']}" if tm.get("eps_text") else ""
                lead += f"; lowest robust accuracy {worst[0]:.1%} ({worst[1]}{at})"
            verdict = (
                "all trustworthy"
                if not warnings
                else "not trustworthy: " + "; ".join(w.removeprefix("not trustworthy: ") for w in warnings)
            )
            summary = f"{lead}; {verdict}."
        return Outcome(metrics=metrics, details=details, warnings=warnings, summary=summary)

    @staticmethod
    def _comparisons(results: dict[str, CheckResult]) -> list[trust.Finding]:
        findings = []
        for norm, strong_ids in STRONG.items():
            strong = [s for s in strong_ids if s in results]
            for weak in WEAK[norm]:
                if weak not in results or not strong:
                    continue
                wm = results[weak].metrics
                pattern = re.compile(rf"^{re.escape(weak)}\.(eps_[0-9.]+)\.robust_accuracy$")
                for key in sorted({m.group(1) for k in wm if (m := pattern.match(k))}):
                    w_val = wm.get(f"{weak}.{key}.robust_accuracy")
                    w_hi = wm.get(f"{weak}.{key}.robust_accuracy_ci_high")
                    s_vals = [
                        (results[s].metrics.get(f"{s}.{key}.robust_accuracy"), s)
                        for s in strong
                        if results[s].metrics.get(f"{s}.{key}.robust_accuracy") is not None
                    ]
                    if w_val is None or w_hi is None or not s_vals:
                        continue
                    s_val, s_id = min(s_vals)
                    eps = float(key.removeprefix("eps_"))
                    findings.append(
                        trust.comparison_finding(
                            f"{weak} vs {s_id}",
                            weak,
                            w_val,
                            w_hi,
                            s_id,
                            s_val,
                            common.describe_eps(eps, norm),
                        )
                    )
        return findings

    @staticmethod
    def _curve_evidence(curves: dict[str, Any]) -> list[dict[str, Any]]:
        """Robust accuracy against strength, one plot per norm with every attack of that norm."""
        out = []
        for norm in ("linf", "l2", "l0", "area"):
            same = {
                cid.removeprefix("attack."): c
                for cid, c in curves.items()
                if c.get("norm") == norm and len(c.get("eps", [])) >= 1
            }
            if same:
                out.append(
                    common.curve_evidence(
                        f"Robust accuracy against attack strength ({common.NORM_LABEL[norm]})",
                        same,
                        "eps (x/255)" if norm == "linf" else common.NORM_LABEL[norm],
                    )
                )
        return out
