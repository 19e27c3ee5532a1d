"""Where checks execute: ``local`` (this process, in order) or ``ray`` (independent checks in parallel).

A backend takes the ordered check classes and a context and returns results in the same order; it calls
``on_result`` after each finished check so a partial report survives a later failure.
"""

from __future__ import annotations

BACKENDS = ("local", "ray")
