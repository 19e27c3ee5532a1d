"""The parity suite: does the artifact you ship answer like the model you tested (``--reference-model``)?"""

from roadworthy.checks.parity import suite  # noqa: F401  (registers the checks)
