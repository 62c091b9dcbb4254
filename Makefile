PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test check bench clean demo

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/postsale check rules/ examples/author_tasks/
	$(VENV)/bin/postsale serve

test: $(STAMP)
	$(VENV)/bin/postsale check rules/ examples/author_tasks/
	$(VENV)/bin/postsale test rules/ examples/author_tasks/
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) examples/demo.py $(ARGS)

bench: $(STAMP)
	$(PY) -m pip install --quiet -r bench/requirements.txt
	$(PY) bench/run.py
	$(PY) bench/bench_signals.py
	$(PY) bench/bench_streams.py --events 10000 --accounts 500 --repeat 2
	$(PY) bench/bench_kpis.py
	$(PY) bench/bench_choose.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
