"""Make tests/sym's helper module (sym_gen) importable from the test files."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
