"""The registered graph-level ops. Importing this package registers them all (the device ops,
``dev.*``, are registered by ``dlavm.devops``)."""
from . import creation, elementwise, host, nn, reduce, shape  # noqa: F401
