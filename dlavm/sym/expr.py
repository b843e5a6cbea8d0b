"""The expression object: an immutable, hash-consed DAG node.

Every node is created through :func:`_node`, which interns it in one
process-wide table keyed by ``(kind, args, data)``. Two structurally equal
expressions are therefore the same object: equality is ``is``, hashing is a
precomputed integer, and memo tables keyed by expressions stay small.

Node layout (``data`` is a tuple of plain ints / strings, never expressions):

=========== ============================= ====================================
kind        args                          data
=========== ============================= ====================================
``const``   ``()``                        ``(value,)``
``var``     ``()``                        ``(name, lo, hi)`` (None: unbounded)
``add``     terms (sorted)                ``(constant, coeff_1, ..., coeff_n)``
``mul``     factors (sorted)              ``(exponent_1, ..., exponent_n)``
``floordiv`` / ``mod``  ``(a, b)``        ``()``
``min`` / ``max`` / ``and`` / ``or``  operands (sorted)  ``()``
``lt`` / ``eq`` / ``ne``  ``(lhs, rhs)``  ``()``
``select``  ``(cond, if_true, if_false)`` ``()``
=========== ============================= ====================================

The table holds strong references: an expression lives as long as the
process. Shape expressions number in the tens of thousands for a 7B model,
and immortality is what makes identity-equality safe without weak-reference
bookkeeping on every construction.
"""
from __future__ import annotations

import functools
import keyword
import numbers
import zlib

from . import bounds as _bounds

INF = _bounds.INF

# Sort ranks: variables first (alphabetical), constants last, so that sums and
# operand lists print as ``seq*2 + 1`` and ``max(seq, 1)``.
_RANK = {"var": 0, "mul": 1, "floordiv": 2, "mod": 3, "min": 4, "max": 5, "add": 6,
         "select": 7, "lt": 8, "eq": 9, "ne": 10, "and": 11, "or": 12, "const": 13}

# Names a variable may not take: they would shadow what the Python and C++
# exports emit (``min``/``max`` builtins, helper prefix) or not parse.
_CPP_KEYWORDS = frozenset("""
alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t
char16_t char32_t class compl concept const consteval constexpr constinit const_cast
continue co_await co_return co_yield decltype default delete do double dynamic_cast
else enum explicit export extern false float for friend goto if inline int long
mutable namespace new noexcept not not_eq nullptr operator or or_eq private
protected public register reinterpret_cast requires return short signed sizeof
static static_assert static_cast struct switch template this thread_local throw
true try typedef typeid typename union unsigned using virtual void volatile wchar_t
while xor xor_eq int64_t INT64_C std
""".split())
_RESERVED = _CPP_KEYWORDS | frozenset(keyword.kwlist) | {"min", "max"}

_TABLE: dict = {}


class Expr:
    """An immutable symbolic integer expression (see module docstring for layout).

    Guarantees: structurally equal expressions are the same object; ``==``
    returns a bool (an ``Expr`` equals an ``int`` only when it is that
    constant); ``hash`` is cheap and consistent with ``==`` (a constant hashes
    like its int). Build expressions with :func:`Var`, :func:`const`, the
    operators ``+ - * // % **`` and the functions of :mod:`dlavm.sym`.
    """

    __slots__ = ("kind", "args", "data", "_h", "_key", "_lo", "_hi", "_simp", "_fv")

    def __new__(cls, *a, **k):
        raise TypeError("Expr is not constructed directly: use sym.Var, sym.const, "
                        "operators or sym functions")

    def __setattr__(self, name, value):
        raise AttributeError(f"sym.Expr is immutable (tried to set {name!r})")

    def __delattr__(self, name):
        raise AttributeError(f"sym.Expr is immutable (tried to delete {name!r})")

    # -- identity -------------------------------------------------------------
    def __eq__(self, other):
        if self is other:
            return True
        if isinstance(other, Expr):
            return False
        if isinstance(other, numbers.Integral) and not isinstance(other, bool):
            return self.kind == "const" and self.data[0] == other
        return NotImplemented

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def __hash__(self):
        return self._h

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        # A flat post-order table of plain values: pickling never recurses
        # into deep expressions, and unpickling re-interns every node.
        index: dict = {}
        table = []
        for n in walk(self):
            index[n] = len(table)
            table.append((n.kind, tuple(index[a] for a in n.args), n.data))
        return (_o.rebuild_table, (tuple(table),))

    # -- introspection --------------------------------------------------------
    @property
    def is_const(self) -> bool:
        """True when the expression is an integer constant."""
        return self.kind == "const"

    @property
    def value(self) -> int:
        """The int value of a constant; TypeError for anything else."""
        if self.kind != "const":
            raise TypeError(f"symbolic expression {_short(self)} has no constant value")
        return self.data[0]

    def free_vars(self) -> frozenset:
        """The set of variables (``Var`` objects) the expression depends on."""
        fv = self._fv
        if fv is not None:
            return fv
        # Iterative post-order fill of the per-node memo.
        stack = [self]
        while stack:
            n = stack[-1]
            if n._fv is not None:
                stack.pop()
                continue
            pending = [a for a in n.args if a._fv is None]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            if n.kind == "var":
                fv = frozenset((n,))
            elif not n.args:
                fv = frozenset()
            elif len(n.args) == 1:
                fv = n.args[0]._fv
            else:
                fv = frozenset().union(*(a._fv for a in n.args))
            object.__setattr__(n, "_fv", fv)
        return self._fv

    # -- conversions ----------------------------------------------------------
    def __bool__(self):
        if self.kind != "const":
            raise TypeError(f"truth value of symbolic expression {_short(self)} is unknown; "
                            "use sym.prove(...) or compare constants")
        return self.data[0] != 0

    def __int__(self):
        if self.kind != "const":
            raise TypeError(f"cannot convert symbolic expression {_short(self)} to int")
        return self.data[0]

    __index__ = __int__

    def __str__(self):
        return _cg.to_str(self)

    __repr__ = __str__

    def __format__(self, spec):
        return format(str(self), spec)

    # -- arithmetic (all work delegated to ops; non-int operands -> TypeError) --
    def __add__(self, o):
        return NotImplemented if _foreign(o) else _o.add(self, o)

    def __radd__(self, o):
        return NotImplemented if _foreign(o) else _o.add(o, self)

    def __sub__(self, o):
        return NotImplemented if _foreign(o) else _o.sub(self, o)

    def __rsub__(self, o):
        return NotImplemented if _foreign(o) else _o.sub(o, self)

    def __mul__(self, o):
        return NotImplemented if _foreign(o) else _o.mul(self, o)

    def __rmul__(self, o):
        return NotImplemented if _foreign(o) else _o.mul(o, self)

    def __floordiv__(self, o):
        return NotImplemented if _foreign(o) else _o.floordiv(self, o)

    def __rfloordiv__(self, o):
        return NotImplemented if _foreign(o) else _o.floordiv(o, self)

    def __mod__(self, o):
        return NotImplemented if _foreign(o) else _o.mod(self, o)

    def __rmod__(self, o):
        return NotImplemented if _foreign(o) else _o.mod(o, self)

    def __pow__(self, n):
        if isinstance(n, Expr) and n.kind == "const":
            n = n.data[0]
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            return NotImplemented
        return _o.power(self, int(n))

    def __neg__(self):
        return _o.scale(self, -1)

    def __pos__(self):
        return self

    def __abs__(self):
        return _o.smax(self, _o.scale(self, -1))

    def __truediv__(self, o):
        raise TypeError("symbolic integers have no true division: use // (floordiv) "
                        "or sym.ceildiv")

    __rtruediv__ = __truediv__


class Var(Expr):
    """A named integer variable with inclusive bounds ``lo <= v <= hi``.

    ``Var(name, lo, hi)`` returns the interned variable whose identity is the
    triple ``(name, lo, hi)``: calling it twice with the same triple returns
    the same object, and the same name with other bounds is a *different*
    variable (see doc/sym.md, "Variable identity"). ``None`` for ``lo`` or
    ``hi`` means unbounded on that side.
    """

    __slots__ = ()

    def __new__(cls, name, lo, hi):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"variable name {name!r} is not an identifier")
        if name in _RESERVED or name.startswith("dlavm_"):
            raise ValueError(f"variable name {name!r} is reserved (keyword, builtin or "
                             "exported helper name)")
        lo = _check_bound(name, "lo", lo)
        hi = _check_bound(name, "hi", hi)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"variable {name!r}: empty range, lo={lo} > hi={hi}")
        return _node("var", (), (name, lo, hi))

    @property
    def name(self) -> str:
        """The variable's name."""
        return self.data[0]

    @property
    def lo(self):
        """Declared inclusive lower bound (int, or None when unbounded)."""
        return self.data[1]

    @property
    def hi(self):
        """Declared inclusive upper bound (int, or None when unbounded)."""
        return self.data[2]


def _check_bound(name, which, b):
    if b is None:
        return None
    if isinstance(b, bool) or not isinstance(b, numbers.Integral):
        raise TypeError(f"variable {name!r}: bound {which}={b!r} must be an int or None")
    return int(b)


def const(n) -> Expr:
    """The interned constant expression with int value ``n`` (bool/float rejected)."""
    if n.__class__ is not int:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"sym.const needs an int, got {type(n).__name__} {n!r}")
        n = int(n)
    e = _TABLE.get(("const", (), (n,)))
    return e if e is not None else _node("const", (), (n,))


def as_expr(x) -> Expr:
    """``x`` as an expression: Expr unchanged, int -> constant; TypeError otherwise
    (bool and float included: a shape of ``True`` or ``2.0`` is a bug upstream)."""
    c = x.__class__
    if c is Expr or c is Var:
        return x
    if c is int:
        e = _TABLE.get(("const", (), (x,)))
        return e if e is not None else _node("const", (), (x,))
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TypeError(f"expected an int or sym.Expr, got {type(x).__name__} {x!r}")
    return const(x)


def _foreign(o) -> bool:
    """True for operands the operators must refuse (so Python raises TypeError)."""
    if isinstance(o, Expr) or o.__class__ is int:
        return False
    return isinstance(o, bool) or not isinstance(o, numbers.Integral)


def _node(kind: str, args: tuple, data: tuple) -> Expr:
    """Intern a node exactly as given (no simplification); see ops._build."""
    key = (kind, args, data)
    e = _TABLE.get(key)
    if e is not None:
        return e
    e = object.__new__(Var if kind == "var" else Expr)
    s = object.__setattr__
    s(e, "kind", kind)
    s(e, "args", args)
    s(e, "data", data)
    s(e, "_simp", e if kind in ("const", "var") else None)
    s(e, "_fv", None)
    if kind == "const":
        v = data[0]
        s(e, "_h", hash(v))
        s(e, "_key", (13, "", 0, 0, 0))
        s(e, "_lo", v)
        s(e, "_hi", v)
    elif kind == "var":
        name, lo, hi = data
        lk = (0, lo) if lo is not None else (-1, 0)
        hk = (0, hi) if hi is not None else (1, 0)
        # Deterministic digest (str hashes are salted per process; crc32 is not)
        # so that operand order, hence printing, is the same in every run.
        h = hash((0, zlib.crc32(name.encode()), lk, hk))
        s(e, "_h", h)
        s(e, "_key", (0, name, lk, hk, h))
        s(e, "_lo", -INF if lo is None else lo)
        s(e, "_hi", INF if hi is None else hi)
    else:
        rank = _RANK[kind]
        h = hash((rank, data, tuple(a._h for a in args)))
        s(e, "_h", h)
        s(e, "_key", (rank, "", (0, 0), (0, 0), h))
        lo, hi = _bounds.node_interval(kind, args, data)
        s(e, "_lo", lo)
        s(e, "_hi", hi)
    _TABLE[key] = e
    return e


def sort_operands(xs) -> tuple:
    """Operands in canonical order: by sort key, ties broken structurally.

    Keys hold a 64-bit structural digest; two distinct nodes with the same key
    are a digest collision, resolved by a full (iterative) comparison so that
    the order never depends on creation history.
    """
    out = sorted(xs, key=_sort_key)
    for i in range(1, len(out)):
        if out[i - 1]._key == out[i]._key and out[i - 1] is not out[i]:
            return tuple(sorted(out, key=functools.cmp_to_key(_struct_cmp)))
    return tuple(out)


def _sort_key(e):
    return e._key


def _struct_cmp(a, b) -> int:
    """Total structural order (used only on digest collisions)."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if x is y:
            continue
        kx = (x._key[0], x.kind, len(x.args), repr(x.data))
        ky = (y._key[0], y.kind, len(y.args), repr(y.data))
        if kx != ky:
            return -1 if kx < ky else 1
        stack.extend(reversed(list(zip(x.args, y.args))))
    return 0


def walk(e: Expr):
    """Yield every distinct subexpression of ``e`` once, children before parents.

    Iterative (no recursion), so arbitrarily deep expressions are fine.
    """
    seen = set()
    stack = [(e, False)]
    while stack:
        n, expanded = stack.pop()
        if expanded:
            yield n
            continue
        if n in seen:
            continue
        seen.add(n)
        stack.append((n, True))
        for a in reversed(n.args):
            if a not in seen:
                stack.append((a, False))


def _short(e: Expr, limit: int = 160) -> str:
    """``str(e)`` cut to ``limit`` characters, for error messages."""
    s = str(e)
    return s if len(s) <= limit else s[: limit - 3] + "..."


# Late imports: ops and codegen build on Expr, and Expr's operators and str()
# delegate to them; binding the modules here (after Expr exists) breaks the cycle.
from . import ops as _o  # noqa: E402
from . import codegen as _cg  # noqa: E402
