"""Progress for long work: a Rich bar on a terminal, plain log lines in CI and pipes."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("roadworthy")


def use_rich() -> bool:
    """Rich bars only on an interactive terminal, never in CI or when ``ROADWORTHY_PLAIN_PROGRESS`` is set."""
    if os.environ.get("ROADWORTHY_PLAIN_PROGRESS") or os.environ.get("CI"):
        return False
    return sys.stderr.isatty()


#: Inside a long task the plain reporter writes a line at least this often (seconds), with an estimate.
HEARTBEAT_S = 30.0


def eta_text(elapsed: float, frac: float) -> str:
    """``"12 s elapsed, about 36 s left"`` from the elapsed time and the share done."""
    left = elapsed * (1 - frac) / frac if frac > 0 else None
    return f"{_secs(elapsed)} elapsed" + (f", about {_secs(left)} left" if left is not None else "")


def _secs(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


class _PlainTask:
    def __init__(self, description: str, total: int, stream: Any, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.description, self.total, self.done = description, max(1, total), 0
        self.stream = stream
        self.heartbeat_s = heartbeat_s
        self._next = 0.25
        self._start = self._last = time.perf_counter()

    def advance(self, n: int = 1) -> None:
        self.done += n
        frac = min(1.0, self.done / self.total)
        now = time.perf_counter()
        quarter = frac >= self._next and frac < 1.0
        if quarter or (frac < 1.0 and now - self._last >= self.heartbeat_s):
            if quarter:
                self._next = (int(frac * 4) + 1) / 4
            self._last = now
            self.stream.write(f"  {self.description}: {frac:.0%} ({eta_text(now - self._start, frac)})\n")
            self.stream.flush()


class PlainProgress:
    """Writes a line when a task reaches 25/50/75% and when it ends, to stderr by default."""

    def __init__(self, stream: Any = None, enabled: bool = True, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.heartbeat_s = heartbeat_s

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Any]:
        t = _PlainTask(description, total, self.stream if self.enabled else _Sink(), self.heartbeat_s)
        yield t

    def line(self, text: str) -> None:
        if self.enabled:
            self.stream.write(text + "\n")
            self.stream.flush()


class _Sink:
    def write(self, _s: str) -> None:
        pass

    def flush(self) -> None:
        pass


class RichProgress:
    """A live Rich progress display: one bar for the checks, one per running task."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Any]:
        tid = self._progress.add_task(description, total=max(1, total))
        progress = self._progress

        class _T:
            def advance(self, n: int = 1) -> None:
                progress.advance(tid, n)

        try:
            yield _T()
        finally:
            progress.remove_task(tid)

    def line(self, text: str) -> None:
        self._progress.console.print(text, markup=False, highlight=False)
