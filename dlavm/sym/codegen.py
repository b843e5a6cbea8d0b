"""Printing and export: ``str(e)``, Python and C++ expression strings.

``str(e)`` and :func:`to_python` share one infix form, valid Python with the
exact semantics of :func:`dlavm.sym.evaluate`::

    seq*2 + 1        (seq + 127) // 128        seq % 128        x**2
    min(seq, 4096)   max(a, b)                 seq < 129        x == y    x != 0
    (a < 5) & (b == 0)   (p < 3) | q           (a if c else b)

Sums print positive terms first, then negative ones, then the constant;
``floordiv``/``mod`` operands of products are parenthesized for readability.
:func:`to_cpp` prints the same tree with ``int64_t`` arithmetic and the
helpers of ``clib/include/dlavm/sym_rt.h`` (``dlavm_floordiv``,
``dlavm_floormod``, ``dlavm_min``, ``dlavm_max``, ``dlavm_ipow``), whose
floor semantics equal Python's for all signs. The C++ value equals the Python
value whenever every intermediate fits in ``int64_t``.

All printers are iterative (post-order with a memo of rendered operands), so
depth is unlimited. A DAG prints as a tree; when that tree would be long
(heavy sharing), ``str`` switches to ``let %0 = ...; %1 = ... in <expr>``
naming the shared subexpressions, and the exports raise ValueError beyond
EXPORT_LIMIT characters.
"""
from __future__ import annotations

from .expr import Expr, as_expr, walk

ATOM, POW, UNARY, MUL, ADD, BITAND, BITOR, CMP = 100, 90, 80, 70, 60, 50, 40, 30
# Python ``//`` and ``%`` bind like ``*``; ranking them just below it makes
# every product, sum term, power base or division operand parenthesize them:
# ``(a // 2)*3`` rather than the legal but misleading ``a // 2*3``.
DIVMOD = MUL - 1
_DIVMOD = ("floordiv", "mod")
_CMP_OP = {"lt": "<", "eq": "==", "ne": "!="}
_INT32 = 2 ** 31
_INT64 = 2 ** 63


def _var_names(e: Expr, dialect: str, names) -> dict:
    """Var -> printed name; refuses (py/cpp) or disambiguates (str) same-name vars."""
    names = names or {}
    by_name: dict = {}
    for v in e.free_vars():
        by_name.setdefault(v.name, []).append(v)
    out = {}
    for name, vs in by_name.items():
        unmapped = [v for v in vs if v not in names and name not in names]
        for v in vs:
            if v in names:
                out[v] = names[v]
            elif name in names:
                out[v] = names[name]
            elif len(unmapped) > 1:
                if dialect != "str":
                    rng = ", ".join(f"[{w.lo}, {w.hi}]" for w in sorted(
                        unmapped, key=lambda w: w._key))
                    raise ValueError(f"expression uses several variables named {name!r} "
                                     f"with different bounds ({rng}); pass names= to "
                                     "tell them apart")
                lo = "" if v.lo is None else v.lo
                hi = "" if v.hi is None else v.hi
                out[v] = f"{name}{{{lo}..{hi}}}"
            else:
                out[v] = name
    return out


def _lit(v: int, dialect: str):
    if dialect != "cpp" and v.bit_length() > 10_000:
        # str() of huge ints is refused by CPython (int_max_str_digits); hex is not.
        return (hex(v), ATOM if v >= 0 else UNARY)
    if dialect != "cpp" or -_INT32 < v < _INT32:
        return str(v), (ATOM if v >= 0 else UNARY)
    if not -_INT64 <= v < _INT64:
        raise ValueError(f"constant {v} does not fit in int64_t")
    if v == -_INT64:
        return "(-INT64_C(9223372036854775807) - 1)", ATOM
    return f"INT64_C({v})", ATOM


def _wrap(r, need: int) -> str:
    s, p = r
    return f"({s})" if p < need else s


def _render_add(n, ops, dialect):
    parts_pos, parts_neg = [], []
    for r, k in zip(ops, n.data[1:]):
        s = _wrap(r, MUL)
        a = abs(k)
        body = s if a == 1 else f"{s}*{_lit(a, dialect)[0]}"
        (parts_pos if k > 0 else parts_neg).append(body)
    c = n.data[0]
    if len(parts_pos) == 1 and not parts_neg and c == 0:
        return parts_pos[0], MUL
    out = ""
    for b in parts_pos:
        out = b if not out else f"{out} + {b}"
    for b in parts_neg:
        out = f"-{b}" if not out else f"{out} - {b}"
    if c > 0:
        out += f" + {_lit(c, dialect)[0]}"
    elif c < 0:
        out += f" - {_lit(-c, dialect)[0]}"
    return out, ADD


def _render_mul(n, ops, dialect):
    parts = []
    for r, e in zip(ops, n.data):
        if e == 1:
            parts.append(_wrap(r, MUL))
        elif dialect == "cpp":
            base = _wrap(r, ATOM)
            parts.append("*".join([base] * e) if e <= 3 else f"dlavm_ipow({r[0]}, {e})")
        else:
            parts.append(f"{_wrap(r, ATOM)}**{e}")
    return "*".join(parts), MUL


def _render(n: Expr, ops: list, dialect: str, vnames: dict):
    kind = n.kind
    cpp = dialect == "cpp"
    if kind == "const":
        return _lit(n.data[0], dialect)
    if kind == "var":
        return vnames[n], ATOM
    if kind == "add":
        return _render_add(n, ops, dialect)
    if kind == "mul":
        return _render_mul(n, ops, dialect)
    if kind in _DIVMOD:
        if cpp:
            fn = "dlavm_floordiv" if kind == "floordiv" else "dlavm_floormod"
            return f"{fn}({ops[0][0]}, {ops[1][0]})", ATOM
        op = "//" if kind == "floordiv" else "%"
        return f"{_wrap(ops[0], MUL)} {op} {_wrap(ops[1], MUL + 1)}", DIVMOD
    if kind in ("min", "max"):
        if cpp:
            acc = ops[0][0]
            for r in ops[1:]:
                acc = f"dlavm_{kind}({acc}, {r[0]})"
            return acc, ATOM
        return f"{kind}({', '.join(r[0] for r in ops)})", ATOM
    if kind in _CMP_OP:
        s = f"{_wrap(ops[0], ADD)} {_CMP_OP[kind]} {_wrap(ops[1], ADD)}"
        return (f"int64_t({s})", ATOM) if cpp else (s, CMP)
    if kind in ("and", "or"):
        prec = BITAND if kind == "and" else BITOR
        op = " & " if kind == "and" else " | "
        # Operands are parenthesized unless atomic: & and | rank differently
        # against comparisons in Python and C++ (and g++ -Wparentheses asks).
        return op.join(_wrap(r, ATOM) for r in ops), prec
    if kind == "select":
        c, a, b = (r[0] for r in ops)
        if cpp:
            # A bool condition: the bare comparison (its int64_t(...) wrapper
            # stripped), else "!= 0" (g++ flags e.g. "a*b ?" as int-in-bool).
            cond = n.args[0]
            c = c[len("int64_t("):-1] if cond.kind in _CMP_OP else f"{_wrap(ops[0], ADD)} != 0"
            return f"int64_t({c} ? {a} : {b})", ATOM
        return f"({a} if {c} else {b})", ATOM
    raise AssertionError(f"no printer for kind {kind!r}")


# A DAG whose subexpressions are shared prints as a tree that can be
# exponentially long (``select(e < y, e + 1, x)`` repeated doubles it). Above
# STR_TREE_LIMIT characters str() names shared subexpressions instead; the
# exports, which must stay single expressions, refuse above EXPORT_LIMIT.
STR_TREE_LIMIT = 20_000
EXPORT_LIMIT = 4_000_000


# Shared subexpressions shorter than this are repeated, not named.
_MIN_NAMED = 32


def _sizes(nodes: list):
    """Approximate tree-form print length of every node, and of the DAG printed
    once per node (nodes in post-order)."""
    size: dict = {}
    dag = 0
    for n in nodes:
        if n.kind == "const":
            own = n.data[0].bit_length() // 3 + 2
        elif n.kind == "var":
            own = len(n.data[0])
        else:
            own = 8 + 4 * len(n.args)
        dag += own
        size[n] = own + sum(size[a] for a in n.args)
    return size, dag


def _print(e, dialect: str, names=None) -> str:
    e = as_expr(e)
    vnames = _var_names(e, dialect, names)
    nodes = list(walk(e))
    sizes, dag = _sizes(nodes)
    size = sizes[e]
    shared: dict = {}
    if dialect == "str" and size > STR_TREE_LIMIT and size > 2 * dag:
        shared = _shared_nodes(nodes, sizes)
    elif dialect != "str" and size > EXPORT_LIMIT:
        approx = str(size) if size < 10 ** 12 else f"2**{size.bit_length() - 1}"
        raise ValueError(f"expression would print to about {approx} characters as a single "
                         f"{'C++' if dialect == 'cpp' else 'Python'} expression (shared "
                         "subexpressions are repeated); simplify it or evaluate it instead")
    done: dict = {}
    lets = []
    for n in nodes:
        r = _render(n, [done[a] for a in n.args], dialect, vnames)
        if n in shared:
            lets.append(f"{shared[n]} = {r[0]}")
            r = (shared[n], ATOM)
        done[n] = r
    if not lets:
        return done[e][0]
    return "let " + "; ".join(lets) + " in " + done[e][0]


def _shared_nodes(nodes: list, sizes: dict) -> dict:
    """Sizeable nodes used by two or more parents -> their names %0, %1, ..."""
    uses: dict = {}
    for n in nodes:
        for a in n.args:
            uses[a] = uses.get(a, 0) + 1
    out: dict = {}
    for n in nodes:
        if sizes[n] >= _MIN_NAMED and uses.get(n, 0) > 1:
            out[n] = f"%{len(out)}"
    return out


def to_str(e) -> str:
    """The readable infix form (used by ``str``/``repr``).

    Identical to :func:`to_python` except that variables sharing a name but
    not bounds print as ``name{lo..hi}`` instead of raising.
    """
    return _print(e, "str")


def to_python(e, names=None) -> str:
    """A Python expression with :func:`dlavm.sym.evaluate`'s semantics.

    Uses ``//``, ``%``, ``**``, ``min``, ``max``, comparisons (bool, usable as
    0/1), ``&``, ``|`` and ``(a if c else b)``. ``names`` optionally maps a
    ``Var`` or variable name to the text to print for it. ValueError if two
    different variables share a name and ``names`` does not separate them.
    """
    return _print(e, "py", names)


def to_cpp(e, names=None) -> str:
    """A C++17 ``int64_t`` expression with the same value as :func:`to_python`.

    Needs ``#include "dlavm/sym_rt.h"`` (``clib/include``). ``names`` as for
    :func:`to_python`; the replacement text must be a primary expression
    (an identifier, ``args.seq``, ``p->n``, ...). Constants outside int64_t
    raise ValueError.
    """
    return _print(e, "cpp", names)


# Kinds whose Python value is always an int (never a bool from a comparison).
_INT_KINDS = ("const", "var", "add", "mul", "floordiv", "mod")


def compile_python(e):
    """A function ``f(**vars) -> int`` computing ``e`` (no bounds checks; fast path).

    Keyword arguments are the variable names. The body is :func:`to_python`'s
    string, so CPython's parser limits nesting to a few hundred levels: deeper
    expressions raise ValueError (use :func:`dlavm.sym.evaluate` for those).
    """
    e = as_expr(e)
    body = to_python(e)
    if e.kind not in _INT_KINDS:
        body = f"int({body})"
    params = sorted({v.name for v in e.free_vars()})
    src = f"lambda *, {', '.join(params)}: {body}" if params else f"lambda: {body}"
    env = {"__builtins__": {}, "min": min, "max": max, "int": int}
    try:
        code = compile(src, "<dlavm.sym>", "eval")
    except (SyntaxError, RecursionError, MemoryError) as err:
        raise ValueError(f"expression too deeply nested for compile_python ({err}); "
                         "use sym.evaluate") from None
    return eval(code, env)  # noqa: S307 - code generated above from an Expr
