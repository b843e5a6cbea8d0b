"""The torch frontend: ``torch.export`` with dynamic dims -> graph IR."""
from .converters import CONVERTERS
from .importer import (UnsupportedOpError, export_module, from_exported_program, from_torch,
                       span_of)

__all__ = ["CONVERTERS", "UnsupportedOpError", "export_module", "from_exported_program",
           "from_torch", "span_of"]
