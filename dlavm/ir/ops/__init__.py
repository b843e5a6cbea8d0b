"""The registered graph-level ops. Importing this package registers them all."""
from . import creation, elementwise, nn, reduce, shape  # noqa: F401
