"""Graph passes: each one job, with a docstring saying what holds afterwards."""
from .canonicalize import RULES as CANONICALIZE_RULES
from .canonicalize import canonicalize
from .rewrite import Rule, rewrite

IMPORT_PIPELINE = [canonicalize]

__all__ = ["CANONICALIZE_RULES", "IMPORT_PIPELINE", "Rule", "canonicalize", "rewrite"]
