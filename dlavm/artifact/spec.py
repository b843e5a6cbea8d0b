"""Field specs: the JSON type and rule of each manifest field, read and written by one engine.

A manifest dataclass (:mod:`dlavm.artifact.schema`) declares every field with
:func:`spec_field`; :func:`decode` turns untrusted JSON into the typed object
(checking type, range and enum, naming the field path on the first
violation), :func:`encode` turns the object back into JSON, and
:func:`describe` gives the human text of a spec for the schema table in
doc/backend.md. The decoder walks the *schema*, whose depth is fixed, so a
deeply nested input cannot exhaust the stack; free-form JSON fields
(:class:`Json`) are checked iteratively against a depth limit.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re

from .errors import ManifestError
from .expr import ExprError, check_expr

#: Deepest free-form JSON value (a target description, a host op's attribute) a manifest may hold.
MAX_JSON_DEPTH = 32


def escape(text: str) -> str:
    """``text`` with quotes, backslashes and control characters escaped as in JSON, so a message stays
    one line (clib/src/artifact.cc escapes alike)."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def quote(v) -> str:
    """A value as the messages show it: strings in double quotes, numbers and the rest as JSON."""
    if isinstance(v, str):
        return f'"{escape(v)}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def json_type(v) -> str:
    """The JSON type name of a decoded value ("object", "array", "string", "integer", ...)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


class Reader:
    """Decoding state: the source named in messages; :meth:`fail` raises the one error class."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, rule: str):
        raise ManifestError(f"{self.source}: {path}: {rule}" if path else f"{self.source}: {rule}")

    def want(self, path: str, what: str, v):
        self.fail(path, f"must be {what}, got {json_type(v)}")


def join(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    key = escape(str(key))
    return f"{path}.{key}" if path else key


class Spec:
    doc = ""

    def decode(self, v, path: str, r: Reader):
        raise NotImplementedError

    def encode(self, v):
        return v


class Int(Spec):
    def __init__(self, lo: int | None = 0, hi: int | None = None, multiple_of: int | None = None):
        self.lo, self.hi, self.multiple_of = lo, hi, multiple_of

    @property
    def doc(self):
        rng = [f">= {self.lo}" if self.lo is not None else "", f"<= {self.hi}" if self.hi is not None else ""]
        rule = ", ".join(x for x in rng if x)
        if self.multiple_of:
            rule += f", a multiple of {self.multiple_of}"
        return f"integer {rule}".strip()

    def decode(self, v, path, r):
        if not isinstance(v, int) or isinstance(v, bool):
            r.want(path, "an integer", v)
        if self.lo is not None and v < self.lo:
            r.fail(path, f"must be >= {self.lo}, got {v}")
        if self.hi is not None and v > self.hi:
            r.fail(path, f"must be <= {self.hi}, got {v}")
        if self.multiple_of and v % self.multiple_of:
            r.fail(path, f"must be a multiple of {self.multiple_of}, got {v}")
        return v


class Bool(Spec):
    doc = "boolean"

    def decode(self, v, path, r):
        if not isinstance(v, bool):
            r.want(path, "a boolean", v)
        return v


class Text(Spec):
    def __init__(self, pattern: str | None = None, what: str = "", max_len: int = 4096, label: str = "string"):
        self.pattern = re.compile(pattern) if pattern else None
        self.what, self.max_len, self.doc = what, max_len, label

    def decode(self, v, path, r):
        if not isinstance(v, str):
            r.want(path, "a string", v)
        if len(v) > self.max_len:
            r.fail(path, f"must be at most {self.max_len} characters, got {len(v)}")
        if self.pattern is not None and not self.pattern.fullmatch(v):
            r.fail(path, f"{quote(v)} is not {self.what}")
        return v


IDENT = Text(r"[A-Za-z_][A-Za-z0-9_]*", "an identifier", 256, "identifier")
NAME = Text(r"[^\x00-\x1f]+", "a non-empty name without control characters", 1024, "name")


class Enum(Spec):
    def __init__(self, *values):
        self.values = values

    @property
    def doc(self):
        return "one of " + ", ".join(quote(x) for x in self.values)

    def decode(self, v, path, r):
        if not isinstance(v, (str, int)) or isinstance(v, bool) or v not in self.values:
            if not isinstance(v, (str, int)) or isinstance(v, bool):
                r.want(path, "a string", v)
            r.fail(path, f"must be one of {', '.join(quote(x) for x in self.values)}; got {quote(v)}")
        return v


class Sha256(Spec):
    doc = "sha256"
    _HEX = re.compile(r"[0-9a-f]{64}")

    def decode(self, v, path, r):
        if not isinstance(v, str) or not self._HEX.fullmatch(v):
            r.fail(path, "must be 64 lowercase hex digits (a sha256)")
        return v


#: The files of an artifact that ``files`` cannot list: the manifest and the record of its sha256.
RESERVED_FILES = ("manifest.json", "manifest.sha256")


def inside_artifact(rel: str) -> bool:
    """``rel`` is a plain relative path inside the artifact directory (not manifest.json or manifest.sha256)."""
    if not rel or rel.startswith("/") or "\\" in rel or rel in RESERVED_FILES or rel.endswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in rel.split("/")) and not re.search(r"[\x00-\x1f]", rel)


class RelPath(Spec):
    doc = "relative path"

    def decode(self, v, path, r):
        if not isinstance(v, str):
            r.want(path, "a string", v)
        if not inside_artifact(v):
            r.fail(path, f"path {quote(v)} must be a relative path inside the artifact")
        return v


class Expr(Spec):
    doc = "size expression"

    def decode(self, v, path, r):
        if not isinstance(v, str):
            r.want(path, "a string", v)
        try:
            check_expr(v)
        except ExprError as e:
            r.fail(path, str(e))
        return v


class Json(Spec):
    """Any JSON value (finite numbers, string keys) at most :data:`MAX_JSON_DEPTH` levels deep."""

    def __init__(self, kind: type | None = None):
        self.kind = kind

    @property
    def doc(self):
        return "object (free-form JSON)" if self.kind is dict else "any JSON value"

    def decode(self, v, path, r):
        if self.kind is dict and not isinstance(v, dict):
            r.want(path, "an object", v)
        stack = [(v, path, 1)]
        while stack:
            x, p, d = stack.pop()
            if d > MAX_JSON_DEPTH:
                r.fail(p, f"nesting deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(x, dict):
                for k, y in x.items():
                    if not isinstance(k, str):
                        r.fail(p, f"object keys must be strings, got {json_type(k)}")
                    stack.append((y, join(p, k), d + 1))
            elif isinstance(x, (list, tuple)):
                stack.extend((y, join(p, i), d + 1) for i, y in enumerate(x))
            elif isinstance(x, float) and not math.isfinite(x):
                r.fail(p, f"must be a finite number, got {x}")
            elif not (x is None or isinstance(x, (bool, int, float, str))):
                r.want(p, "a JSON value", x)
        return json.loads(json.dumps(v))  # a private copy: the typed object never aliases the input


#: The key of the one-key object that stands for a non-finite number in a host step's literal or attribute
#: (strict JSON has no inf or nan): ``{"$float": "-inf"}``. clib/src/artifact.cc checks the same form.
FLOAT_TAG = "$float"
#: Each tag value and the number it stands for.
NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _tag_non_finite(v):
    """``v`` as JSON data with each non-finite float written ``{"$float": TAG}``."""
    if isinstance(v, float) and not math.isfinite(v):
        return {FLOAT_TAG: "nan" if math.isnan(v) else "inf" if v > 0 else "-inf"}
    if isinstance(v, dict):
        return {k: _tag_non_finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_tag_non_finite(x) for x in v]
    return v


class HostJson(Json):
    """A host step's literal or attribute: any JSON value, a non-finite number written ``{"$float": TAG}``
    (TAG one of :data:`NON_FINITE`); an object with a ``"$float"`` key is that and nothing else."""

    doc = 'any JSON value, a non-finite number as {"$float": "inf" / "-inf" / "nan"}'

    def decode(self, v, path, r):
        super().decode(v, path, r)
        stack = [(v, path)]
        while stack:   # in document order, as the C++ reader (the first bad tag is named)
            x, p = stack.pop()
            if isinstance(x, dict) and FLOAT_TAG in x:
                other = next((k for k in x if k != FLOAT_TAG), None)
                if other is not None:
                    r.fail(p, f'a {quote(FLOAT_TAG)} object must have no other key, got {quote(other)}')
                Enum(*NON_FINITE).decode(x[FLOAT_TAG], join(p, FLOAT_TAG), r)
            elif isinstance(x, dict):
                stack.extend(reversed([(y, join(p, k)) for k, y in x.items()]))
            elif isinstance(x, (list, tuple)):
                stack.extend(reversed([(y, join(p, i)) for i, y in enumerate(x)]))
        return json.loads(json.dumps(v), object_hook=lambda o: NON_FINITE[o[FLOAT_TAG]] if FLOAT_TAG in o else o)

    def encode(self, v):
        return _tag_non_finite(v)


class ListOf(Spec):
    def __init__(self, item: Spec, max_len: int | None = None):
        self.item, self.max_len = item, max_len

    @property
    def doc(self):
        return f"array of {describe(self.item)}"

    def decode(self, v, path, r):
        if not isinstance(v, (list, tuple)):
            r.want(path, "an array", v)
        if self.max_len is not None and len(v) > self.max_len:
            r.fail(path, f"must have at most {self.max_len} items, got {len(v)}")
        return tuple(self.item.decode(x, join(path, i), r) for i, x in enumerate(v))

    def encode(self, v):
        return [self.item.encode(x) for x in v]


class MapOf(Spec):
    def __init__(self, key: Spec, value: Spec):
        self.key, self.value = key, value

    @property
    def doc(self):
        return f"object {{{describe(self.key)}: {describe(self.value)}}}"

    def decode(self, v, path, r):
        if not isinstance(v, dict):
            r.want(path, "an object", v)
        out = {}
        for k, x in v.items():
            if not isinstance(k, str):
                r.fail(path, f"object keys must be strings, got {json_type(k)}")
            self.key.decode(k, path, r)  # a key's rule names the key itself
            out[k] = self.value.decode(x, join(path, k), r)
        return out

    def encode(self, v):
        return {k: self.value.encode(x) for k, x in v.items()}


class Nullable(Spec):
    def __init__(self, inner: Spec):
        self.inner = inner

    @property
    def doc(self):
        return f"{describe(self.inner)}, or null"

    def decode(self, v, path, r):
        return None if v is None else self.inner.decode(v, path, r)

    def encode(self, v):
        return None if v is None else self.inner.encode(v)


def spec_field(spec: Spec, doc: str = "", default=dataclasses.MISSING):
    """A dataclass field of a manifest record: its JSON spec and one line of meaning (``default``: the
    value a constructor call may leave out; the JSON field is required all the same)."""
    return dataclasses.field(default=default, metadata={"spec": spec, "doc": doc})


def record_fields(cls) -> list:
    return [(f.name, f.metadata["spec"], f.metadata["doc"]) for f in dataclasses.fields(cls)
            if "spec" in f.metadata]


class Record(Spec):
    """A dataclass as a JSON object with exactly its fields (``as_list``: a JSON array in field order)."""

    def __init__(self, cls, as_list: bool = False):
        self.cls, self.as_list = cls, as_list

    @property
    def doc(self):
        if self.as_list:
            return "[" + ", ".join(n for n, _, _ in record_fields(self.cls)) + "]"
        return f"`{self.cls.__name__}`"

    def decode(self, v, path, r):
        fields = record_fields(self.cls)
        if self.as_list:
            if not isinstance(v, (list, tuple)) or len(v) != len(fields):
                r.fail(path, f"must be an array [{', '.join(n for n, _, _ in fields)}], got {json_type(v)}"
                       + (f" of {len(v)} items" if isinstance(v, (list, tuple)) else ""))
            return self.cls(**{n: s.decode(x, join(path, i), r) for i, ((n, s, _), x) in enumerate(zip(fields, v))})
        if not isinstance(v, dict):
            r.want(path, "an object", v)
        known = {n for n, _, _ in fields} | ({"kind"} if getattr(self.cls, "TAG", None) else set())
        for k in v:
            if k not in known:
                from .schema import MANIFEST_VERSION
                r.fail(join(path, k), f"is not a field of manifest version {MANIFEST_VERSION}")
        out = {}
        for n, s, _ in fields:
            if n not in v:
                r.fail(join(path, n), "is required")
            out[n] = s.decode(v[n], join(path, n), r)
        return self.cls(**out)

    def encode(self, v):
        vals = [(n, s.encode(getattr(v, n))) for n, s, _ in record_fields(self.cls)]
        if self.as_list:
            return [x for _, x in vals]
        out = {"kind": v.TAG} if getattr(v, "TAG", None) else {}
        out.update(vals)
        return out


class Tagged(Spec):
    """One of several records, chosen by the string field ``kind`` (each class has ``TAG``)."""

    def __init__(self, *classes):
        self.classes = {c.TAG: c for c in classes}

    @property
    def doc(self):
        return "one of " + ", ".join(f"`{c.__name__}` (kind {quote(t)})" for t, c in self.classes.items())

    def decode(self, v, path, r):
        if not isinstance(v, dict):
            r.want(path, "an object", v)
        if "kind" not in v:
            r.fail(join(path, "kind"), "is required")
        kind = v["kind"]
        if not isinstance(kind, str) or kind not in self.classes:
            Enum(*self.classes).decode(kind, join(path, "kind"), r)
        return Record(self.classes[kind]).decode(v, path, r)

    def encode(self, v):
        return Record(type(v)).encode(v)


class Keyed(Spec):
    """One of several records, chosen by which of their distinguishing keys the object has."""

    def __init__(self, **classes):
        self.classes = classes

    @property
    def doc(self):
        return "one of " + ", ".join(f"`{c.__name__}` (has {quote(k)})" for k, c in self.classes.items())

    def decode(self, v, path, r):
        if not isinstance(v, dict):
            r.want(path, "an object", v)
        hits = [k for k in self.classes if k in v]
        if len(hits) != 1:
            r.fail(path, f"must have exactly one of {', '.join(quote(k) for k in self.classes)}")
        return Record(self.classes[hits[0]]).decode(v, path, r)

    def encode(self, v):
        return Record(type(v)).encode(v)


def describe(spec: Spec) -> str:
    return spec.doc


__all__ = ["Reader", "Spec", "Int", "Bool", "Text", "Enum", "Sha256", "RelPath", "Expr", "Json", "HostJson", "ListOf",
           "MapOf", "Nullable", "Record", "Tagged", "Keyed", "spec_field", "record_fields", "describe",
           "inside_artifact", "IDENT", "NAME", "MAX_JSON_DEPTH", "FLOAT_TAG", "NON_FINITE", "json_type", "quote",
           "join"]
