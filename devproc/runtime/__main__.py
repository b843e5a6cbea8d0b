"""``python -m devproc.runtime DIR --input NAME=VALUE ... --out OUTDIR``: run a saved pipeline from the command
line with the Python runtime; the same command line and output files as the generated C++ program
(doc/devproc.md, "The C++ host program")."""
from __future__ import annotations

import sys

from .cli import main

sys.exit(main(sys.argv[1:]))
