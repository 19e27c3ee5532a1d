"""The allocator settings a run applies (glibc only)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = (
    "import ctypes, roadworthy.memory as m; a = m.keep_freed_memory(); b = m.keep_freed_memory(); print(a, b)"
)


def _run(env: dict[str, str]) -> str:
    import os

    return subprocess.run(
        [sys.executable, "-c", CODE], env={**os.environ, **env}, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_applied_once_on_glibc_and_opt_out_respected() -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert _run({}) == "True True"
    assert _run({"ROADWORTHY_DEFAULT_MALLOC": "1"}) == "False False"
