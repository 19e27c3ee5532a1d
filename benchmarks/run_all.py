"""Run every side-by-side benchmark in turn (``make bench``); each writes results/<suite>.json and .md."""

from __future__ import annotations

import runpy
import sys

SUITES = ("benchmarks.bench_shift", "benchmarks.bench_attack", "benchmarks.bench_integrity")


def main() -> int:
    for module in SUITES:
        sys.stderr.write(f"== {module}\n")
        saved = sys.argv
        sys.argv = [module]
        try:
            runpy.run_module(module, run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (0, None):
                sys.stderr.write(f"{module} exited with {exc.code}\n")
                return int(exc.code) if isinstance(exc.code, int) else 1
        finally:
            sys.argv = saved
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
