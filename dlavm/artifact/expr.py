"""The size expressions of an artifact manifest: parsed into a small tree of our own, evaluated in linear time.

Manifests carry expressions in ``dlavm.sym.to_python`` form (``seq*2 + 1``,
``(seq + 15) // 16``, ``min(seq, 64)``, ``(a if c else b)``, ``(s < 5) & (k == 0)``).
A manifest is untrusted input, so the text is never handed to Python's parser
or ``eval``: :func:`parse_expr` reads it with a recursive-descent parser into
nested tuples and refuses anything outside this grammar (Python's precedence
and semantics)::

    test    := compare ["if" compare "else" test]
    compare := bitor [("<" | "<=" | ">" | ">=" | "==" | "!=") bitor]
    bitor   := bitand ("|" bitand)*
    bitand  := sum ("&" sum)*
    sum     := product (("+" | "-") product)*
    product := unary (("*" | "//" | "%") unary)*
    unary   := ("-" | "+") unary | atom
    atom    := INTEGER | NAME | ("min" | "max") "(" test ("," test)+ ")" | "(" test ")"

There is no exponentiation (the writer never emits ``**``), no attribute,
subscript or other call. The work is bounded: at most
:data:`MAX_EXPR_CHARS` characters and :data:`MAX_EXPR_DEPTH` levels of
nesting (parentheses, calls, unary signs, conditionals; a chain ``a + b + c``
is one level), so the parser's recursion is bounded and evaluation visits
each node once. Every literal and every intermediate value lies in int64
(``[-2**63, 2**63 - 1]``, what the C++ driver computes in): a value outside
it, a division or modulo by zero and a missing variable are
:class:`ExprError`. ``//`` and ``%`` floor as in Python (and ``dlavm_floordiv``
in clib); comparisons are 0 or 1.
"""
from __future__ import annotations

import re
from typing import Mapping

MAX_EXPR_CHARS = 8192
MAX_EXPR_DEPTH = 64
INT64_MIN, INT64_MAX = -2**63, 2**63 - 1

_TOKEN = re.compile(r"\s*(?:(?P<int>[0-9]+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>//|<=|>=|==|!=|[-+*%&|<>(),]))")
_KEYWORDS = ("if", "else")
_FUNCS = ("min", "max")
_CMP = ("<", "<=", ">", ">=", "==", "!=")
#: parsed trees by text; cleared when it holds this many (a manifest has a few thousand distinct texts)
_CACHE_LIMIT = 65536
_TREES: dict = {}


class ExprError(ValueError):
    """A manifest expression is malformed, uses a forbidden construct, misses a variable or leaves int64."""


def _short(expr: str) -> str:
    return repr(expr) if len(expr) <= 60 else repr(expr[:40]) + "..."


_PREC = {"|": 1, "&": 2, "+": 3, "-": 3, "*": 4, "//": 4, "%": 4}


class _Parser:
    """Recursive descent for ``test``/``compare``/``unary``/``atom``, precedence climbing for the binary
    operators (so one nesting level costs a handful of stack frames); ``a + b - c`` is one ``chain`` node."""

    def __init__(self, text: str):
        self.text, self.depth, self.i = text, 0, 0
        self.tokens = []
        pos, end = 0, len(text.rstrip())
        while pos < end:
            m = _TOKEN.match(text, pos)
            if m is None:
                raise self.error(f"unexpected character {text[pos:].lstrip()[:1]!r}")
            if m.group("int") is not None:
                digits = m.group("int")   # int() of a long digit string is slow: anything past 20 is out of range
                self.tokens.append(("int", int(digits) if len(digits) <= 20 else INT64_MAX + 2))
            elif m.group("name") is not None:
                self.tokens.append(("name", m.group("name")))
            elif m.group("op") == "*" and text.startswith("*", m.end()):
                raise self.error("'**' (exponentiation) is not allowed")
            else:
                self.tokens.append(("op", m.group("op")))
            pos = m.end()
        self.tokens.append(("end", None))

    def error(self, why: str) -> ExprError:
        return ExprError(f"malformed size expression {_short(self.text)}: {why}")

    def peek(self):
        return self.tokens[self.i]

    def take(self, op: str | None = None):
        tok = self.tokens[self.i]
        if op is not None and tok != ("op", op):
            raise self.error(f"expected {op!r}, got {self._show(tok)}")
        self.i += 1
        return tok

    @staticmethod
    def _show(tok) -> str:
        return "end of text" if tok[0] == "end" else repr(str(tok[1]))

    def nest(self, step: int):
        self.depth += step
        if self.depth > MAX_EXPR_DEPTH:
            raise ExprError(f"size expression {_short(self.text)} is nested deeper than {MAX_EXPR_DEPTH} levels")

    def parse(self):
        node = self.test()
        tok = self.peek()
        if tok[0] != "end":
            raise self.error(f"unexpected {self._show(tok)}")
        return node

    def test(self):
        self.nest(1)
        node = self.compare()
        if self.peek() == ("name", "if"):
            self.take()
            cond = self.compare()
            if self.peek() != ("name", "else"):
                raise self.error(f"expected 'else', got {self._show(self.peek())}")
            self.take()
            node = ("if", cond, node, self.test())
        self.nest(-1)
        return node

    def compare(self):
        node = self.binary(1)
        tok = self.peek()
        if tok[0] == "op" and tok[1] in _CMP:
            self.take()
            node = ("cmp", tok[1], node, self.binary(1))
            nxt = self.peek()
            if nxt[0] == "op" and nxt[1] in _CMP:
                raise self.error("chained comparisons are not allowed")
        return node

    def binary(self, min_prec: int):
        left = self.unary()
        while True:
            tok = self.peek()
            prec = _PREC.get(tok[1]) if tok[0] == "op" else None
            if prec is None or prec < min_prec:
                return left
            self.take()
            right = self.binary(prec + 1)
            if left[0] == "chain" and left[1] == prec:
                left = ("chain", prec, left[2] + ((tok[1], right),))
            else:
                left = ("chain", prec, ((None, left), (tok[1], right)))

    def unary(self):
        tok = self.peek()
        if tok[0] == "op" and tok[1] in ("-", "+"):
            self.take()
            self.nest(1)
            nxt = self.peek()
            if tok[1] == "-" and nxt == ("int", INT64_MAX + 1):
                self.take()
                node = ("int", INT64_MIN)
            else:
                node = ("neg", self.unary()) if tok[1] == "-" else self.unary()
            self.nest(-1)
            return node
        return self.atom()

    def atom(self):
        tok = self.take()
        if tok[0] == "int":
            if tok[1] > INT64_MAX:
                raise ExprError(f"size expression {_short(self.text)}: a literal is outside int64")
            return ("int", tok[1])
        if tok[0] == "name" and tok[1] in _FUNCS:
            self.take("(")
            self.nest(1)
            args = [self.test()]
            while self.peek() == ("op", ","):
                self.take()
                args.append(self.test())
            self.take(")")
            self.nest(-1)
            if len(args) < 2:
                raise self.error(f"{tok[1]}() needs at least two operands")
            return (tok[1], tuple(args))
        if tok[0] == "name" and tok[1] not in _KEYWORDS:
            if self.peek() == ("op", "("):
                raise ExprError(f"size expression {_short(self.text)} calls {tok[1]!r}; only min and max "
                                f"may be called")
            return ("var", tok[1])
        if tok == ("op", "("):
            node = self.test()
            self.take(")")
            return node
        raise self.error(f"unexpected {self._show(tok)}")


def _names(tree) -> frozenset:
    out, stack = set(), [tree]
    while stack:
        n = stack.pop()
        kind = n[0]
        if kind == "var":
            out.add(n[1])
        elif kind == "neg":
            stack.append(n[1])
        elif kind == "cmp":
            stack.extend(n[2:])
        elif kind == "if":
            stack.extend(n[1:])
        elif kind == "chain":
            stack.extend(x for _, x in n[2])
        elif kind in _FUNCS:
            stack.extend(n[1])
    return frozenset(out)


def parse_expr(expr: str):
    """The tree of ``expr`` (nested tuples) after checking it against the grammar and limits; cached."""
    tree = _TREES.get(expr) if isinstance(expr, str) else None
    if tree is not None:
        return tree
    if not isinstance(expr, str):
        raise ExprError(f"a size expression must be a string, got {type(expr).__name__}")
    if len(expr) > MAX_EXPR_CHARS:
        raise ExprError(f"size expression is {len(expr)} characters long; the limit is {MAX_EXPR_CHARS}")
    root = _Parser(expr).parse()
    tree = (root, _names(root))
    if len(_TREES) >= _CACHE_LIMIT:
        _TREES.clear()
    _TREES[expr] = tree
    return tree


def check_expr(expr: str) -> frozenset:
    """The variable names of ``expr`` after checking it (raises :class:`ExprError`)."""
    return parse_expr(expr)[1]


def _int64(v: int, expr: str) -> int:
    if not INT64_MIN <= v <= INT64_MAX:
        raise ExprError(f"size expression {_short(expr)} leaves int64 (an intermediate value is {v})")
    return v


def _eval(n, env: Mapping[str, int], expr: str) -> int:
    kind = n[0]
    if kind == "int":
        return n[1]
    if kind == "var":
        try:
            v = env[n[1]]
        except KeyError:
            raise ExprError(f"size expression {_short(expr)} needs a value for {n[1]!r}") from None
        return _int64(int(v), expr)
    if kind == "neg":
        return _int64(-_eval(n[1], env, expr), expr)
    if kind == "cmp":
        a, b = _eval(n[2], env, expr), _eval(n[3], env, expr)
        op = n[1]
        return int(a < b if op == "<" else a <= b if op == "<=" else a > b if op == ">" else a >= b if op == ">="
                   else a == b if op == "==" else a != b)
    if kind == "if":
        return _eval(n[2], env, expr) if _eval(n[1], env, expr) else _eval(n[3], env, expr)
    if kind in _FUNCS:
        vals = [_eval(x, env, expr) for x in n[1]]
        return min(vals) if kind == "min" else max(vals)
    items = n[2]
    acc = _eval(items[0][1], env, expr)
    for op, x in items[1:]:
        v = _eval(x, env, expr)
        if op == "+":
            acc += v
        elif op == "-":
            acc -= v
        elif op == "*":
            acc *= v
        elif op in ("//", "%"):
            if v == 0:
                raise ExprError(f"size expression {_short(expr)} divides by zero for {dict(env)}")
            acc = acc // v if op == "//" else acc % v
        elif op == "&":
            acc &= v
        else:
            acc |= v
        _int64(acc, expr)
    return acc


def eval_expr(expr: str, env: Mapping[str, int]) -> int:
    """The integer value of ``expr`` with variables bound by ``env`` (name -> int); see the module docstring."""
    return _eval(parse_expr(expr)[0], env, expr)


__all__ = ["ExprError", "eval_expr", "check_expr", "parse_expr", "MAX_EXPR_CHARS", "MAX_EXPR_DEPTH",
           "INT64_MIN", "INT64_MAX"]
