# flowsr development tasks. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
# Written after a successful install; re-install when the dependency files change.
STAMP := $(VENV)/.installed

.PHONY: venv test demo demo-retrain lint wheel clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --no-input -c constraints.txt -e '.[dev]'
	# lpips: the reference LPIPS for tests/test_lpips.py. --no-deps: its torchvision requirement would
	# come from PyPI as a CUDA build that does not import beside the CPU torch (docs/packaging.md).
	$(VPY) -m pip install --no-input --no-deps -c constraints.txt lpips
	touch $@

test: venv
	$(VPY) -m pytest -q -n 2 tests

demo: venv
	$(VENV)/bin/flowsr demo

# Trains the two demo models again from their recipes (about an hour each on 2 CPU cores), then
# runs the demo with them instead of the bundled ones.
demo-retrain: venv
	$(VENV)/bin/flowsr demo --retrain --out demo_retrained

lint: venv
	$(VENV)/bin/ruff check flowsr tests

# The wheel and sdist users install (docs/packaging.md); tests/test_packaging.py builds the wheel too.
wheel: venv
	rm -rf dist
	$(VPY) -m pip wheel --no-deps --no-build-isolation -w dist .
	rm -rf build *.egg-info  # setuptools' by-products in the source tree

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
