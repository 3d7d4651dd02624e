# Atelier: `make demo` (set-up + kiosk on the bundled model) and `make test` (set-up + the whole suite).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# Re-install when the project's metadata or the C++ sources change.
DEPS   := pyproject.toml CMakeLists.txt $(wildcard csrc/*.cpp csrc/*.hpp csrc/*.h)

.PHONY: demo test lint bench build fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# The editable install builds edge._kernels with scikit-build-core (no build isolation: the build deps live in the venv).
$(VENV)/.edge-installed: $(BIN)/python $(DEPS)
	$(PIP) install -q "scikit-build-core>=0.10" "pybind11>=2.12"
	$(PIP) install -q --no-build-isolation -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.edge-installed
	$(PIP) install -q --no-build-isolation -e ".[train,dev]"
	touch $@

build: $(VENV)/.edge-installed

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .

test: $(VENV)/.dev-installed lint
	$(BIN)/python -m pytest

bench: $(VENV)/.dev-installed
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

demo: $(VENV)/.edge-installed
	$(BIN)/atelier --help

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
