"""The allocator settings a run applies (glibc only): a freed 10 MB block is then reused from the heap."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# allocate 10 MB through malloc and report whether glibc served it by mmap (mallinfo2's hblks counts them)
CODE = """
import ctypes, roadworthy.memory as m
libc = ctypes.CDLL("libc.so.6")
class MallInfo2(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                  "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
applied = m.keep_freed_memory()
again = m.keep_freed_memory()
before = libc.mallinfo2().hblks
block = libc.malloc(10 << 20)
mapped = libc.mallinfo2().hblks - before
libc.free(block)
print(applied, again, mapped)
"""


def _run(env: dict[str, str]) -> str:
    return subprocess.run(
        [sys.executable, "-c", CODE], env={**os.environ, **env}, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt"
)
def test_big_blocks_come_from_the_heap_unless_opted_out() -> None:
    assert _run({}) == "True True 0"  # applied once, idempotent; the 10 MB block is not a fresh mapping
    assert _run({"ROADWORTHY_DEFAULT_MALLOC": "1"}) == "False False 1"  # glibc's default: mmap
