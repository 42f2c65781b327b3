# `make test` and `make demo` each install what they need into .venv first (fresh machine: Python 3.11, pip, gcc).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
DEMO   ?= demo

.PHONY: install test demo lint clean

install: $(STAMP)

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: a plain torch requirement pulls a CUDA build plus several GB of CUDA wheels
	$(PIP) install -q -c constraints.txt torch==2.13.0 torchvision==0.28.0
	$(PIP) install -q -c constraints.txt -e '.[all,dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

demo: install
	$(VENV)/bin/edgefer data synth --out $(DEMO)/fer_synth.csv --n 3000 --seed 0
	$(VENV)/bin/edgefer data inspect $(DEMO)/fer_synth.csv

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
