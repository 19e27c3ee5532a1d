"""The local backend: every check in this process, in dependency order."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from roadworthy.checks.base import Check, Context
from roadworthy.results import CheckResult
from roadworthy.runner import run_checks


def run_local(
    classes: Sequence[type[Check]],
    ctx: Context,
    on_result: Callable[[CheckResult], None] | None = None,
    done: dict[str, CheckResult] | None = None,
    say: Callable[[str], None] | None = None,
    **_: object,
) -> list[CheckResult]:
    return run_checks(classes, ctx, on_result=on_result, done=done, say=say)
