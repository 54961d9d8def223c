# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv with nothing but the system Python, install the package
# with its test extras under constraints.txt (torch pinned to the CPU wheel),
# and the peer libraries of peers.txt (without their dependencies), then run.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= demo-output

.PHONY: install demo test lint clean gpu-wheels

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt peers.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt -e ".[test]"
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps -r peers.txt
	touch $(STAMP)

demo: install
	$(BIN)/xrfsr demo --out $(DEMO_OUT) --overwrite

# TomoPy (conda only) is built from ../shared/peers where that folder exists, for the tests
# marked `tomopy`; without it (or if its build fails) those tests are skipped, saying why.
test: lint
	if [ -x ../shared/peers/build-tomopy.sh ]; then ../shared/peers/build-tomopy.sh $(VENV) \
		|| echo "TomoPy could not be built: the tests marked tomopy will be skipped"; fi
	$(BIN)/python -m pytest

# ruff and mypy as configured in pyproject.toml; `make test` runs them first.
lint: install
	$(BIN)/ruff check xrfsr_dask tests benchmarks docs/_hooks docs/_griffe
	$(BIN)/mypy

# For a GPU machine that is offline and lacks dask, zarr and the readers (benchmarks/gpu_check.sh):
# Python 3.12 wheels into the ignored .whl/, which the device tool carries there.
gpu-wheels: install
	mkdir -p .whl
	cp ../shared/device/wheels/*.whl .whl/
	$(BIN)/python -m pip download --disable-pip-version-check -q --python-version 3.12 --only-binary=:all: \
		--no-deps -d .whl -r benchmarks/gpu-wheels.txt

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .hypothesis
