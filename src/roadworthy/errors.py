"""Exceptions and warnings raised by roadworthy.

Every error a user can cause derives from :class:`RoadworthyError` and from the built-in exception
it resembles, so ``except ValueError`` in user code keeps working. The CLI turns these into one line on
stderr and exit code 2, except :class:`OutputError` (a report that could not be written: exit code 3);
anything else is an internal error (exit code 3). An interrupted run raises :class:`RunInterrupted`, a
``KeyboardInterrupt`` that carries the incomplete report (exit code 1: not ready).
"""

from __future__ import annotations

import re
from typing import Any


class RoadworthyError(Exception):
    """Root of all roadworthy errors."""


class InvalidInputError(RoadworthyError, ValueError):
    """A model file, data file, policy or parameter the user supplied is wrong.

    The message names the file or parameter, what was expected and what was found.
    """


class UnsupportedModelError(RoadworthyError, TypeError):
    """The model's format or type cannot be adapted."""


class MissingDependencyError(RoadworthyError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class UnsafeFileError(InvalidInputError):
    """A file would have to be unpickled (run arbitrary code) and ``--trust-pickle`` was not given."""


class OutputError(RoadworthyError, OSError):
    """A report file could not be written (disk full, permission denied, a file where a folder belongs)."""


class Interrupt(KeyboardInterrupt):
    """A signal that ends the run like Ctrl-C does; ``reason`` says which (``interrupted (SIGTERM)``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RunInterrupted(KeyboardInterrupt):
    """The run was interrupted; ``report`` holds the checks that finished, marked incomplete."""

    def __init__(self, report: Any, reason: str) -> None:
        super().__init__(reason)
        self.report = report
        self.reason = reason


class RoadworthyWarning(UserWarning):
    """Base class of warnings users can filter with ``warnings.filterwarnings``."""


class UntrustworthyResultWarning(RoadworthyWarning):
    """A number in the report may overstate robustness (e.g. signs of gradient masking)."""


def require(module: str, extra: str, feature: str):
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the optional package '{module}'. Install it with: pip install 'roadworthy[{extra}]'"
        ) from exc


# ------------------------------------------------------------------------------------ one-line messages

_TORCHSCRIPT_PREAMBLE = "The following operation failed in the TorchScript interpreter"
_ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception)): (.+)$")


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The line of an exception's message that says what went wrong, shortened to one line.

    Usually the first line. The TorchScript interpreter opens with a fixed sentence and two tracebacks
    and ends with the real error (``RuntimeError: shape '[2, 4]' is invalid ...``): that last line is
    taken instead, without its ``RuntimeError:`` prefix. Used wherever a framework's error is wrapped
    in one of ours, so the user reads one line naming the file and the fault.
    """
    text = [t.strip() for t in str(exc).strip().splitlines() if t.strip()]
    line = text[0] if text else type(exc).__name__
    if line.startswith(_TORCHSCRIPT_PREAMBLE):
        found = [m.group(0) for m in map(_ERROR_LINE.match, text) if m]
        if found:
            line = found[-1].removeprefix("RuntimeError: ")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``"1 class"``, ``"2 classes"``: a count with its noun in the right number, for messages."""
    return f"{n} {noun if n == 1 else (many or noun + 's')}"
