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
# A cell that runs longer than this fails (the slowest cell takes about 30 s alone on 2 cores):
# a hang fails in minutes instead of waiting for CI's limit.
CELL_TIMEOUT ?= 300

.PHONY: help install install-dev lab test test-package test-notebooks test-browser test-binder browser-deps \
	classroom classroom-deps test-classroom exercises notebooks diagrams bench seeds race parallel lint clean fresh \
	ko ko-check ko-stub lab-ko fresh-ko

help:
	@echo "make lab        install the course into $(VENV) and open JupyterLab at notebook 00;"
	@echo "               it copies exercises/ into my-work/ once (yours to solve, never overwritten)"
	@echo "make lab-ko     the same for the Korean edition (한국어판): notebooks/ko/00, exercises in my-work/ko/"
	@echo "               (make fresh-ko EXERCISE=03: a clean copy of one Korean exercise)"
	@echo "make fresh EXERCISE=03  a clean copy of one exercise in my-work/ (yours kept as a backup)"
	@echo "make test       install, then lint, package tests, exercise checks and every notebook (offline)"
	@echo "make test-browser  run notebooks in a real JupyterLab in headless Chromium"
	@echo "make exercises  stamp nbgrader metadata on solutions/ and regenerate exercises/ from them"
	@echo "make diagrams   redraw docs/course_map.png, the course map the README shows"
	@echo "make ko         write the Korean edition from the English files and i18n/ko/ (i18n/README.md)"
	@echo "make ko-check   list the Korean cells waiting for translation; fail if any, or if make ko is due"
	@echo "make ko-stub    add a todo block to i18n/ko/ for every English cell that has no translation"
	@echo "make classroom  start the course's JupyterHub + nbgrader on localhost (an instructor, two students)"
	@echo "make test-classroom  nbgrader's whole cycle through a real local JupyterHub, then in Chromium"
	@echo "make bench      time every notebook and write bench/results.md"
	@echo "make seeds      run every notebook that asserts a lesson on seeds 0-4, write bench/seeds.md"
	@echo "make race       notebook 08's race of three translation models, write bench/race.md"
	@echo "make parallel   an RNN, a GRU and self-attention against CPU threads (and CUDA), write bench/parallel.md"

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

# The classroom: JupyterHub and nbgrader at the versions tested together (pyproject's
# `classroom` extra), and JupyterHub's proxy from npm into classroom/node_modules (package-lock.json).
$(VENV)/.installed-classroom: pyproject.toml $(VENV)/.installed-dev
	$(PY) -m pip install --quiet -e ".[dev,classroom]"
	touch $@

# Without npm the classroom's test skips and says so (on a learner's laptop); CI has npm.
classroom/node_modules/.package-lock.json: classroom/package.json classroom/package-lock.json
	@if command -v npm >/dev/null; then \
		cd classroom && npm ci --no-audit --no-fund --loglevel=error; \
	else \
		echo "no npm here: configurable-http-proxy not installed, the classroom cannot start"; \
	fi

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
classroom-deps: $(VENV)/.installed-classroom classroom/node_modules/.package-lock.json

# The learner works in my-work/ (git-ignored), copied from exercises/ once and never overwritten;
# JupyterLab's root is the repository, so notebooks/ and my-work/ are both in its file browser.
lab: install
	$(PY) tools/my_work.py
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. notebooks/00_start_here.ipynb $(LAB_ARGS)

fresh: | $(PY)
	@test -n "$(EXERCISE)" || { echo "which exercise? e.g. make fresh EXERCISE=03"; exit 2; }
	$(PY) tools/my_work.py --fresh $(EXERCISE)

fresh-ko: | $(PY)
	@test -n "$(EXERCISE)" || { echo "which exercise? e.g. make fresh-ko EXERCISE=03"; exit 2; }
	$(PY) tools/my_work.py --lang ko --fresh $(EXERCISE)

# The Korean edition (한국어판): notebooks/ko/, the Korean exercises copied into my-work/ko/.
lab-ko: install
	$(PY) tools/my_work.py --lang ko
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. notebooks/ko/00_start_here.ipynb $(LAB_ARGS)

# The Korean edition is generated from the English files and the translations in i18n/ko/
# (tools/translate.py, i18n/README.md); tests/test_i18n.py fails when it is out of date.
ko: install
	$(PY) tools/translate.py

ko-check: install
	$(PY) tools/translate.py --check

ko-stub: install
	$(PY) tools/translate.py --stub

lint: install-dev
	$(VENV)/bin/ruff check src tests tools bench

# Everything runs with the network switched off (tools/offline.sh), so a download anywhere
# fails the build. Two pytest workers share the cores, so each kernel gets one thread
# (two threads each on two cores oversubscribe the CPU and slow small models badly).
TEST_ENV := TC_PROGRESS=0 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

test: install-dev lint browser-deps classroom-deps
	$(PY) tools/make_exercises.py --check
	$(PY) -m pytest -q tests/binder
	$(TEST_ENV) tools/offline.sh $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=$(CELL_TIMEOUT) \
		--ignore=tests/browser --ignore=tests/binder --ignore=tests/classroom \
		--ignore=notebooks/ko --ignore=solutions/ko tests notebooks solutions
	tools/offline.sh $(PY) -m pytest -s tests/browser
	tools/offline.sh $(PY) -m pytest -s tests/classroom

# Binder's environment rebuilt with pip in a fresh venv (needs the package index).
test-binder: install-dev
	$(PY) -m pytest -q tests/binder

# The browser test: a real JupyterLab driven in Debian's Chromium by Playwright.
test-browser: install-dev browser-deps
	tools/offline.sh $(PY) -m pytest -s tests/browser

# The classroom: a real JupyterHub on localhost, nbgrader's whole cycle through it (offline),
# then a student and the instructor in Chromium.
test-classroom: classroom-deps browser-deps
	tools/offline.sh $(PY) -m pytest -s tests/classroom

# The course's JupyterHub on localhost until Ctrl-C: an instructor and two students, their
# passwords printed; everything it writes goes to classroom/run/ (CLASSROOM_ARGS="--students 30").
classroom: classroom-deps
	$(PY) tools/classroom.py serve $(CLASSROOM_ARGS)

# Debian's Chromium for the browser test (no test tool may download a browser of its own).
# Installed when missing and we are root with apt-get; otherwise the browser test skips.
browser-deps:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

test-package: install-dev
	$(TEST_ENV) $(PY) -m pytest --ignore=tests/browser --ignore=tests/binder tests

test-notebooks: install-dev
	$(TEST_ENV) tools/offline.sh $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=$(CELL_TIMEOUT) \
		--ignore=notebooks/ko --ignore=solutions/ko notebooks solutions

exercises: install-dev
	$(PY) tools/make_exercises.py
	$(PY) tools/translate.py

bench: install-dev
	$(PY) bench/bench_mha.py
	$(PY) bench/bench_kv_cache.py
	$(PY) bench/run_notebooks.py
	$(PY) tools/translate.py

# Every lesson on five seeds (COURSE_SEED=0..4), two notebooks at a time: about 20 minutes.
# Writes bench/seeds.md and src/transformer_course/seed_spreads.json (the spreads the notebooks
# print); a test fails when they are older than the code. Run `make notebooks` after it.
# The README's course map, drawn by the package (tests/test_diagrams.py fails when it is stale).
diagrams: install-dev
	$(PY) -c "from transformer_course import diagrams as d; d.course_map().savefig('docs/course_map.png', dpi=d.MAP_DPI)"

seeds: install-dev
	$(TEST_ENV) $(PY) bench/seeds.py

# Notebook 08's race (three models, two length regimes, a learning-rate grid, three seeds) and
# seconds per step against length: 30 to 45 minutes on two cores. Writes its results to
# src/transformer_course/race_results.json and bench/race.md; tests/test_race.py fails when
# the measured code or the grammar's sentences have changed since.
race: install-dev
	$(TEST_ENV) $(PY) bench/race.py

# Notebook 09's speed-up curves: one forward + backward pass of nn.RNN, nn.GRU and the course's
# MultiHeadAttention (B=32, n=512, d=256) on 1 .. all CPU threads, each count in a fresh process
# (and on CUDA when present): a minute or two on an idle 2-core machine. Run it on a quiet machine:
# other programs on the cores make multi-threaded timings a lottery. Writes bench/parallel.json and
# bench/parallel.md; tests/test_bench_parallel.py fails when the measured code has changed since.
parallel: install-dev
	$(PY) bench/parallel.py

clean:
	rm -rf $(VENV) .pytest_cache src/*.egg-info

# Execute notebooks/ and solutions/ in place (outputs stored, as committed), then
# regenerate exercises/. Maintainers run this after editing a notebook.
notebooks: install-dev
	$(PY) bench/run_notebooks.py --save --no-results
	$(PY) tools/make_exercises.py
	$(PY) tools/translate.py
