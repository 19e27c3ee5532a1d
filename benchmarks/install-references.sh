#!/usr/bin/env bash
# Reference libraries for the side-by-side benchmarks (never dependencies of roadworthy).
# Every line pins torch so that pip cannot replace the CPU build.
set -euo pipefail
PY=${1:-.venv/bin/python}
"$PY" -m pip install -q --no-deps imagecorruptions==1.1.2
"$PY" -m pip install -q scikit-image scipy "setuptools<81" "torch==2.13.0"
"$PY" -m pip install -q "adversarial-robustness-toolbox==1.20.1" packaging "torch==2.13.0"
"$PY" -m pip install -q "cleanlab[datalab]" "torch==2.13.0"
