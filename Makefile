# Atelier: `make demo` (set-up + kiosk on the bundled model) and `make test` (set-up + the whole suite).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# Re-install when the project's metadata or the C++ sources change.
DEPS   := pyproject.toml CMakeLists.txt $(wildcard csrc/*.cpp csrc/*.hpp csrc/*.h)

# Debian packages, installed when missing (as root with apt-get; otherwise the exact command is printed and make
# stops). Building the venv and the C++ kernels needs BUILD_DEBS (`system-packages`, before every venv); the suite
# also needs Debian's chromium (the browser tests drive it with Playwright), shellcheck (firmware_scripts) and
# systemd (systemd-analyze verify of the units): TEST_DEBS (`test-packages`, before `make test`). The check is one
# dpkg -s per package, quick when all is there; SKIP_DEBS=1 skips it.
BUILD_DEBS := python3.11 python3.11-venv python3.11-dev g++
TEST_DEBS  := $(BUILD_DEBS) chromium shellcheck systemd

.PHONY: demo test lint bench build fuzz sanitize clean system-packages test-packages

# $(call install_debs,PACKAGES): install the missing ones of PACKAGES, or say how and fail.
define install_debs
	@missing=""; \
	if ! command -v dpkg >/dev/null 2>&1; then \
	  echo "make: no dpkg (not a Debian machine): make sure these Debian packages' tools are installed: $(1)"; \
	  exit 0; \
	fi; \
	for pkg in $(1); do \
	  dpkg -s "$$pkg" 2>/dev/null | grep -q "^Status: install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "make: missing Debian packages:$$missing" >&2; \
	  echo "make: install them as root, then run make again:" >&2; \
	  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends$$missing" >&2; \
	  exit 1; \
	fi; \
	echo "make: installing Debian packages:$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing
endef

system-packages:
	$(if $(SKIP_DEBS),@:,$(call install_debs,$(BUILD_DEBS)))

test-packages:
	$(if $(SKIP_DEBS),@:,$(call install_debs,$(TEST_DEBS)))

$(BIN)/python: | system-packages
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# The editable install builds edge._kernels with scikit-build-core (no build isolation: the build deps live in the venv).
$(VENV)/.edge-installed: $(BIN)/python $(DEPS)
	$(PIP) install -q "scikit-build-core>=0.10" "pybind11>=2.12" "cmake>=3.18" ninja
	$(PIP) install -q --no-build-isolation -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.edge-installed
	$(PIP) install -q --no-build-isolation -e ".[train,dev]"
	touch $@

build: $(VENV)/.edge-installed

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .

test: test-packages $(VENV)/.dev-installed lint
	$(BIN)/python -m pytest

bench: $(VENV)/.dev-installed
	$(BIN)/atelier bench

# The kiosk on the committed default bundle (models/default) with a synthetic camera. While models/default is
# missing, a quick demo bundle (tiny model on procedural garments; needs the [train] extra) is made once in build/.
demo: system-packages $(VENV)/.edge-installed
	@bundle=models/default; port=$${PORT:-8000}; \
	if [ ! -f "$$bundle/manifest.json" ]; then \
	  bundle=build/demo-bundle; \
	  echo "demo: no model bundle in models/default; using the quick demo bundle $$bundle instead"; \
	  if [ ! -f "$$bundle/manifest.json" ]; then \
	    $(MAKE) --no-print-directory $(VENV)/.dev-installed && \
	    $(BIN)/python -c "from edge.procedural_garments import write_dataset as w; w('build/demo-data', 40, 48, 0)" && \
	    rm -rf build/demo-run && \
	    $(BIN)/atelier train --data build/demo-data --out build/demo-run --preset tiny --size 32 --epochs 3 \
	      --no-progress && \
	    $(BIN)/atelier export build/demo-run --out $$bundle --force --overwrite --no-edgetpu-compiler || exit 1; \
	  fi; \
	fi; \
	echo "demo: the kiosk is at http://127.0.0.1:$$port/ (open it in a browser; Ctrl-C stops it)"; \
	exec $(BIN)/atelier kiosk --bundle "$$bundle" --camera synthetic:// --port "$$port"

# Differential fuzzing of every C++ kernel entry point against its NumPy reference, FUZZ_SECONDS each.
FUZZ_SECONDS ?= 30
FUZZ_TARGETS := preprocess_frame postprocess tile upscale sharpness exposure dhash64 hamming_nearest
fuzz: $(VENV)/.dev-installed
	@mkdir -p build/fuzz
	@for t in $(FUZZ_TARGETS); do echo "== fuzz $$t ($(FUZZ_SECONDS) s, log in build/fuzz/$$t.log)"; \
	  $(BIN)/python tests/fuzz/fuzz_kernels.py $$t -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=build/fuzz/$$t- > build/fuzz/$$t.log 2>&1; rc=$$?; \
	  grep -E "^Done" build/fuzz/$$t.log; \
	  if [ $$rc -ne 0 ]; then tail -n 40 build/fuzz/$$t.log; exit $$rc; fi; done

# The property and error tests against an ASan + UBSan build of the kernels (build/sanitize).
sanitize: $(VENV)/.dev-installed
	$(BIN)/python -m pytest tests/edge/kernels/test_kernels_sanitize.py

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
