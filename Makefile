# Two entry points: `make demo` and `make test`. Both build everything they
# need from a fresh clone: a virtual environment, the package, and clib/.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup clib demo test rtl-test golden bench clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) clib

clib:
	$(MAKE) -C clib

# The demo's model is trained on the text in data/ on first use (a few minutes, with progress;
# script/train_tiny.py), then cached in build/trained-tiny/. The second step serves it: `dlavm serve
# --http-port` and one question through the `openai` package, streamed (script/serve_demo.py).
demo: setup
	$(VPY) script/train_tiny.py >/dev/null
	$(VPY) script/main.py
	$(VPY) script/serve_demo.py

test: setup
	$(VPY) -m pytest -q tests

# The full RTL suite (doc/rtl.md): every unit bench with many more hypothesis cases, and the tiny Llama's
# prefill and decode streams on the Verilated core against the simulator. `make test` runs its smoke subset.
rtl-test: setup
	DLAVM_RTL_FULL=1 DLAVM_RTL_EXAMPLES=300 $(VPY) -m pytest -q tests/rtl

# Rewrite the golden instruction streams in compare/ on purpose; review their diff.
golden: setup
	$(VENV)/bin/dlavm golden --update

bench: setup
	$(VPY) bench/import_time.py

clean:
	$(MAKE) -C clib clean
	rm -rf $(VENV) build *.egg-info
