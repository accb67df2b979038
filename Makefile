# Set-up is two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench clean browser screenshots

venv: $(STAMP)

# The exact steps the Dockerfile mirrors.
# No pip cache: the wheels (several GB with torch's CUDA libraries) would be kept twice,
# once in ~/.cache/pip and once installed, and CI machines have run out of disk on that.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-cache-dir --upgrade pip
	$(BIN)/pip install --quiet --no-cache-dir -r requirements.lock
	$(BIN)/pip install --quiet --no-cache-dir --no-deps -e .
	# BirdNET-Analyzer 2.4, the peer the tests run exported classifiers with; without its deps,
	# which name full tensorflow (ours is tensorflow-cpu, the same package) and are all in the lock
	$(BIN)/pip install --quiet --no-cache-dir --no-deps birdnet-analyzer==2.4.0
	touch $(STAMP)

demo: venv
	$(BIN)/python jobs/demo.py

test: venv browser
	$(BIN)/python -m pytest

# Headless Chromium for the app's browser test (Debian's packages; CI runs `make test` as root).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver)

# Refresh docs/images/app-*.png from the app's browser test.
screenshots: venv browser
	BIRDEMB_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/explore/app/test_browser.py

bench: venv
	$(BIN)/python jobs/bench.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo-output
