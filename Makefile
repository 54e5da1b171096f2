# Two commands: `make demo` (the main job on built-in data) and `make test` (the whole suite).
# Both create .venv, install torch first (the pinned CPU wheel unless TORCH_SPEC says otherwise),
# then the package in editable mode with its test extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= demo_out
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: venv test demo lint bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,ray]"
	touch $@

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check toolkit cli tests examples benchmarks

demo: venv
	$(PY) examples/demo.py --out $(DEMO_OUT) $(DEMO_ARGS)

bench: venv
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache build *.egg-info
