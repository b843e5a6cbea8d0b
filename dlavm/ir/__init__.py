"""Graph IR: typed dataflow graphs over symbolic shapes (see doc/ir.md)."""
from . import ops  # noqa: F401  (registers the ops)
from .node import Call, Constant, Function, GetItem, Literal, Module, Node, Span, Tuple, Var, call
from .op import IRError, IRTypeError, Op, attr, get_op, list_ops, register_op
from .pass_manager import (Pass, PassContext, PassManager, format_records, function_pass, module_pass,
                           paused_gc)
from .printer import print_function, print_module, summarize_module
from .structural import structural_equal, structural_hash
from .traversal import Mutator, Visitor, count_ops, post_order, users
from .types import DTYPES, TensorType, TupleType, Type, dtype_bytes, dtype_category, promote_dtypes
from .verify import verify_function, verify_module

__all__ = [
    "Call", "Constant", "Function", "GetItem", "Literal", "Module", "Node", "Span", "Tuple", "Var",
    "call", "IRError", "IRTypeError", "Op", "attr", "get_op", "list_ops", "register_op",
    "Pass", "PassContext", "PassManager", "format_records", "function_pass", "module_pass", "paused_gc",
    "print_function", "print_module", "summarize_module", "structural_equal", "structural_hash",
    "Mutator", "Visitor", "count_ops", "post_order", "users",
    "DTYPES", "TensorType", "TupleType", "Type", "dtype_bytes", "dtype_category", "promote_dtypes",
    "verify_function", "verify_module",
]
