# The course's commands. `make lab` to learn, `make test` to check everything.
# Both create .venv when it is missing and install the course into it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The PyTorch this course is tested with. On Linux, add the CPU wheel index to skip the
# several GB of CUDA libraries:  make lab TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_WORKERS ?= 2

.PHONY: help install install-dev lab test test-package test-notebooks exercises notebooks bench lint clean

help:
	@echo "make lab        install the course into $(VENV) and open JupyterLab at notebook 00"
	@echo "make test       install, then lint, package tests, exercise checks and every notebook (offline)"
	@echo "make exercises  regenerate exercises/ from solutions/"
	@echo "make bench      time every notebook and write bench/results.md"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

lab: install
	$(VENV)/bin/jupyter lab notebooks/00_start_here.ipynb $(LAB_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check src tests tools bench

# The notebooks run with the network switched off (tools/offline.sh), so a download
# anywhere fails the build.
test: install-dev lint
	$(PY) tools/make_exercises.py --check
	TC_PROGRESS=0 tools/offline.sh $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile \
		--nbval-lax --nbval-current-env tests notebooks solutions

test-package: install-dev
	TC_PROGRESS=0 $(PY) -m pytest tests

test-notebooks: install-dev
	TC_PROGRESS=0 tools/offline.sh $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile \
		--nbval-lax --nbval-current-env notebooks solutions

exercises: install-dev
	$(PY) tools/make_exercises.py

bench: install-dev
	$(PY) bench/run_notebooks.py

clean:
	rm -rf $(VENV) .pytest_cache src/*.egg-info

# Execute notebooks/ and solutions/ in place (outputs stored, as committed), then
# regenerate exercises/. Maintainers run this after editing a notebook.
notebooks: install-dev
	$(PY) bench/run_notebooks.py --save --no-results
	$(PY) tools/make_exercises.py
