# Two commands matter: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# TF logs a screenful of CPU-feature notices at import; keep warnings and errors.
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: venv demo test bench clean

# The stamp is rebuilt when the dependency list changes, so `make` re-installs only then.
$(VENV)/.installed: setup.cfg setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,plot]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m bin.yt8m_demo

test: venv
	$(PY) -m pytest tests

bench: venv
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) demo_output *.egg-info
