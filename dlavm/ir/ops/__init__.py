"""The registered graph-level ops. Importing this package registers them all."""
from . import creation, device, elementwise, nn, reduce, shape  # noqa: F401
