# People and CI use the same targets. `make demo` and `make test` work on a fresh clone.
# torch is installed first, pinned to the CPU build, so that no dependency pulls a CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
OUT ?= roadworthy-report
# NumPy, OpenCV and torch on their generic kernels: the code paths of an old x86-64 CPU (DEVELOPERS.md;
# tests/demo/kernels.py holds the same values, and a test keeps the two equal)
GENERIC_KERNELS := ATEN_CPU_CAPABILITY=default \
	OPENCV_CPU_DISABLE=AVX512-SKX,AVX512-CLX,AVX_VNNI,AVX2,FP16,AVX,SSE4.2,SSE4.1 \
	NPY_DISABLE_CPU_FEATURES="AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR X86_V4 X86_V3"

.PHONY: demo test test-generic install install-test browser lint format bench clean

$(VENV)/.core: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q -e . torch==$(TORCH_VERSION)
	touch $@

$(VENV)/.test: $(VENV)/.core
	$(PIP) install -q -e '.[test]' torch==$(TORCH_VERSION)
	touch $@

install: $(VENV)/.core

install-test: $(VENV)/.test

## make demo: install everything, build the road-sign demo report, print where it is
demo: install
	$(VENV)/bin/roadworthy demo --out $(OUT)

## make test: install the test extras (and headless chromium where apt is available), run the whole suite
test: install-test browser
	$(PY) -m pytest -q

## make test-generic: the whole suite again on generic CPU kernels, as another CPU would round (CI runs both)
test-generic: install-test browser
	env $(GENERIC_KERNELS) $(PY) -m pytest -q

## Debian's chromium + chromedriver for the real-browser test of the HTML report (skipped if apt is absent)
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null \
	  || echo "warning: could not install chromium; the browser test will be skipped"; \
	else echo "note: chromium not installed; the browser test will be skipped"; fi

lint: install-test
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: install-test
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

## make bench: side-by-side benchmarks against reference libraries (installs them; slow)
bench: install-test
	bash benchmarks/install-references.sh $(PY)
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache $(OUT)
