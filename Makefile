# Two entry points: `make demo` and `make test`. Both build everything they
# need from a fresh clone: a virtual environment, the package, and clib/.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup clib demo test golden bench clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) clib

clib:
	$(MAKE) -C clib

demo: setup
	$(VPY) script/main.py

test: setup
	$(VPY) -m pytest -q tests

# Rewrite the golden instruction streams in compare/ on purpose; review their diff.
golden: setup
	$(VENV)/bin/dlavm golden --update

bench: setup
	$(VPY) bench/import_time.py

clean:
	$(MAKE) -C clib clean
	rm -rf $(VENV) build *.egg-info
