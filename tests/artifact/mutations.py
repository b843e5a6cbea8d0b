"""Hypothesis strategies for damaging a manifest: any JSON value, and every node's path."""
from __future__ import annotations

from hypothesis import strategies as st


def json_values():
    scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8)
    return st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c,
                                                                                       max_size=4), max_leaves=12)


def paths(x, path=()):
    yield path
    if isinstance(x, dict):
        for k, v in x.items():
            yield from paths(v, path + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from paths(v, path + (i,))
