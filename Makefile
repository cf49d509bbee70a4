# Two commands matter: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# TF logs a screenful of CPU-feature notices at import; keep warnings and errors.
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: venv demo test bench figures clean

# The stamp is rebuilt when the dependency list changes, so `make` re-installs only then.
$(VENV)/.installed: setup.cfg setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,plot]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m bin.yt8m_demo

# One test process per core (at most 4), whole files to a process so module fixtures
# are built once: about half the serial time on 2 cores (mostly TF start-ups of binaries).
test: venv
	$(PY) -m pytest tests -n auto --maxprocesses=4 --dist loadfile

bench: venv
	$(PY) -m bench.run_all

# Redraws the converged evidence's PNGs in docs/ from bench/'s committed result files alone.
figures: venv
	$(PY) -m yt8m_sdnn.experiments.figures --output_dir=docs

clean:
	rm -rf $(VENV) demo_output *.egg-info
