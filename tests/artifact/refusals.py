"""The refusal table: bad manifests made from a good one, each with the message its reader must give.

``BOTH`` is fed to the Python reader (``dlavm.artifact.open_artifact``) and to
the C++ one (``dlavm::Artifact::open``): both must refuse each entry with the
same one-line message ``artifact DIR: manifest.json: PATH: RULE``. ``PYTHON``
holds the rules only the Python reader applies (the fields the C++ runtime
does not read: size expressions, value ids, target description, memory map).

A mutation takes the manifest as JSON data (and the artifact directory, for
damage to a file) and returns the expected ``PATH: RULE`` text, which may
depend on the manifest (a count, an address).
"""
from __future__ import annotations

from dlavm.artifact import MANIFEST_VERSION

V = MANIFEST_VERSION
STREAM = "forward.0"
DTYPES = ('"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", '
          '"float32", "float64"')


def _s(m):
    return m["streams"][STREAM]


def _stream_step(m):
    steps = m["entries"]["forward"]["steps"]
    return next(i for i, s in enumerate(steps) if s["kind"] == "stream"), steps


def _set(path, value, expect):
    """Set ``path`` (keys and indexes from the top) to ``value`` (``...``: delete it)."""
    def mutate(m, d):
        obj = m
        for k in path[:-1]:
            obj = obj[k]
        if value is ...:
            del obj[path[-1]]
        else:
            obj[path[-1]] = value
        return expect
    return mutate


def _count_past(m, d):
    s = _s(m)
    s["patches"][0]["index"] = s["count"]
    return f"streams.{STREAM}.patches[0].index: must be < the stream's count ({s['count']}), got {s['count']}"


def _guard_past(m, d):
    s = _s(m)
    s["guards"][0]["index"] = s["count"] + 5
    return f"streams.{STREAM}.guards[0].index: must be < the stream's count ({s['count']}), got {s['count'] + 5}"


def _short_records(m, d):
    s = _s(m)
    s["insns"].pop()
    return f"streams.{STREAM}.insns: must have one record per entry ({s['count']}), got {s['count'] - 1}"


def _unaligned(m, d):
    s = _s(m)
    s["addr"] += 4
    return f"streams.{STREAM}.addr: must be a multiple of 32, got {s['addr']}"


def _no_stream(m, d):
    i, steps = _stream_step(m)
    steps[i]["stream"] = "forward.9"
    return f'entries.forward.steps[{i}].stream: "forward.9" names no stream'


def _step_field(m, d):
    i, steps = _stream_step(m)
    steps[i]["program"] = "x"
    return f"entries.forward.steps[{i}].program: is not a field of manifest version {V}"


def _lo_above_hi(m, d):
    m["dims"]["seq"] = [17, 16]
    return "dims.seq: lower bound 17 exceeds upper bound 16"


def _unlisted(section):
    def mutate(m, d):
        if section == "stream":
            _s(m)["file"] = "streams/other.bin"
            return f'streams.{STREAM}.file: "streams/other.bin" is not listed in files'
        m[section][0]["file"] = "weights/other.bin"
        return f'{section}[0].file: "weights/other.bin" is not listed in files'
    return mutate


def _corrupt(m, d):
    rel = m["weights"][0]["file"]
    data = bytearray((d / rel).read_bytes())
    data[0] ^= 0x40
    (d / rel).write_bytes(bytes(data))
    return f'file "{rel}" does not match its sha256'


def _missing(m, d):
    rel = _s(m)["asm"]
    (d / rel).unlink()
    return f'file "{rel}" is missing'


def _stream_size(m, d):
    s = _s(m)
    rel = s["file"]
    data = (d / rel).read_bytes()[:-64]
    (d / rel).write_bytes(data)
    import hashlib
    m["files"][rel] = hashlib.sha256(data).hexdigest()
    return f"streams.{STREAM}.file: holds {len(data)} bytes, its count ({s['count']}) needs {len(data) + 64}"


#: A string value the test's writer replaces by an array nested this deep (too deep for json.dumps).
DEEP_MARK, DEEP_LEVELS = "@deeply nested@", 5000


def _deep(m, d):
    m["target"]["description"]["deep"] = DEEP_MARK
    return "nesting deeper than"


S = ("streams", STREAM)
P = S + ("patches", 0)

#: (name, mutation) fed to both readers; each must refuse with the message the mutation returns.
BOTH = [
    ("format", _set(("format",), "onnx", 'format: must be "dlavm-artifact", got "onnx"')),
    ("no format", _set(("format",), ..., "format: is required")),
    ("old version", _set(("version",), 1, f"version: is 1, this reader reads version {V}")),
    ("string version", _set(("version",), str(V), "version: must be an integer, got string")),
    ("bool version", _set(("version",), True, "version: must be an integer, got boolean")),
    ("unknown top-level field", _set(("ops",), [], f"ops: is not a field of manifest version {V}")),
    ("unknown field with a newline", _set(("bad\nkey",), 1, f"bad\\nkey: is not a field of manifest version {V}")),
    ("no files", _set(("files",), ..., "files: is required")),
    ("no streams", _set(("streams",), ..., "streams: is required")),
    ("files not an object", _set(("files",), ["a"], "files: must be an object, got array")),
    ("escaping path", _set(("files", "../w.bin"), "0" * 64,
                           'files: path "../w.bin" must be a relative path inside the artifact')),
    ("absolute path", _set(("files", "/etc/passwd"), "0" * 64,
                           'files: path "/etc/passwd" must be a relative path inside the artifact')),
    ("dot path", _set(("files", "weights/./w.bin"), "0" * 64,
                      'files: path "weights/./w.bin" must be a relative path inside the artifact')),
    ("upper-case digest", _set(("files", "weights/w.bin"), "A" * 64,
                               "files.weights/w.bin: must be 64 lowercase hex digits (a sha256)")),
    ("dim not a pair", _set(("dims", "seq"), [1], "dims.seq: must be an array [lo, hi], got array of 1 items")),
    ("dim bound a string", _set(("dims", "seq", 1), "16", "dims.seq[1]: must be an integer, got string")),
    ("dim bound negative", _set(("dims", "seq", 0), -1, "dims.seq[0]: must be >= 0, got -1")),
    ("dim lo above hi", _lo_above_hi),
    ("dim name", _set(("dims", "a b"), [1, 2], 'dims: "a b" is not an identifier')),
    ("weight file unlisted", _unlisted("weights")),
    ("weight file escaping", _set(("weights", 0, "file"), "../x.bin",
                                  'weights[0].file: path "../x.bin" must be a relative path inside the artifact')),
    ("weight addr negative", _set(("weights", 0, "addr"), -32, "weights[0].addr: must be >= 0, got -32")),
    ("weight field missing", _set(("weights", 0, "nbytes"), ..., "weights[0].nbytes: is required")),
    ("host const dtype", _set(("host_consts", 0, "dtype"), "complex64",
                              f'host_consts[0].dtype: must be one of {DTYPES}; got "complex64"')),
    ("host const shape", _set(("host_consts", 0, "shape", 0), -2, "host_consts[0].shape[0]: must be >= 0, got -2")),
    ("host const file unlisted", _unlisted("host_consts")),
    ("stream count negative", _set(S + ("count",), -1, f"streams.{STREAM}.count: must be >= 0, got -1")),
    ("stream count a string", _set(S + ("count",), "3", f"streams.{STREAM}.count: must be an integer, got string")),
    ("stream count missing", _set(S + ("count",), ..., f"streams.{STREAM}.count: is required")),
    ("stream v1 ops field", _set(S + ("ops",), [], f"streams.{STREAM}.ops: is not a field of manifest version {V}")),
    ("stream addr unaligned", _unaligned),
    ("stream file unlisted", _unlisted("stream")),
    ("stream asm escaping", _set(S + ("asm",), "/tmp/x.asm",
                                 f'streams.{STREAM}.asm: path "/tmp/x.asm" must be a relative path inside the '
                                 f'artifact')),
    ("patch index past the stream", _count_past),
    ("patch word past the entry", _set(P + ("word",), 16, f"streams.{STREAM}.patches[0].word: must be <= 15, got 16")),
    ("patch width zero", _set(P + ("width",), 0, f"streams.{STREAM}.patches[0].width: must be >= 1, got 0")),
    ("patch bits past the word", lambda m, d: (_s(m)["patches"][0].update(lo=20, width=16),
                                               f"streams.{STREAM}.patches[0].width: bits [20, 36) do not fit a "
                                               f"32-bit word")[1]),
    ("patch kind", _set(P + ("kind",), "float",
                        f'streams.{STREAM}.patches[0].kind: must be one of "uint", "addr"; got "float"')),
    ("patch expr not text", _set(P + ("expr",), 5, f"streams.{STREAM}.patches[0].expr: must be a string, "
                                                   f"got integer")),
    ("patch field name", _set(P + ("field",), "m n", f'streams.{STREAM}.patches[0].field: "m n" is not an '
                                                      f'identifier')),
    ("guard index past the stream", _guard_past),
    ("instruction records short", _short_records),
    ("instruction layer negative", _set(S + ("insns", 0, "layer"), -1,
                                        f"streams.{STREAM}.insns[0].layer: must be >= 0, got -1")),
    ("instruction tag empty", _set(S + ("insns", 0, "tag"), "",
                                   f'streams.{STREAM}.insns[0].tag: "" is not a non-empty name without control '
                                   f'characters')),
    ("instruction weights not a list", _set(S + ("insns", 0, "weights"), "w",
                                            f"streams.{STREAM}.insns[0].weights: must be an array, got string")),
    ("step names no stream", _no_stream),
    ("step kind", _set(("entries", "forward", "steps", 0, "kind"), "jump",
                       'entries.forward.steps[0].kind: must be one of "host", "to_device", "to_host", "stream"; '
                       'got "jump"')),
    ("stream step with a foreign field", _step_field),
    ("corrupt file", _corrupt),
    ("missing file", _missing),
    ("stream file of another size", _stream_size),
    ("deep nesting", _deep),
]


def _expr(field, value, rule):
    return _set(P + (field,), value, f"streams.{STREAM}.patches[0].{field}: {rule}")


#: Rules only the Python reader applies (fields the C++ runtime does not read).
PYTHON = [
    ("expression syntax", _expr("expr", "seq +", "malformed size expression 'seq +': invalid syntax")),
    ("expression call", _expr("expr", "__import__('os')", "size expression \"__import__('os')\" calls something "
                                                          "other than min/max")),
    ("expression attribute", _expr("expr", "seq.real", "size expression 'seq.real' uses a forbidden construct "
                                                       "(Attribute)")),
    ("expression power", _expr("expr", "seq ** seq", "size expression 'seq ** seq': '**' needs a name or literal "
                                                     "base and a literal exponent in [0, 64]")),
    ("expression too long", _expr("expr", "+".join(["seq"] * 3000),
                                  "size expression is 11999 characters long; the limit is 8192")),
    ("expression too deep", _expr("expr", "-" * 100 + "seq", "size expression '" + "-" * 40 + "'... is nested "
                                                             "deeper than 64 levels")),
    ("expression names no dim", _expr("expr", "kv + 1", "uses \"kv\", which is not a dim")),
    ("size attribute names no dim", _set(("entries", "forward", "steps", 0, "attrs"), {"shape": [1, {"sym": "kv"}]},
                                         'entries.forward.steps[0].attrs.shape[1].sym: uses "kv", which is not a '
                                         'dim')),
    ("input names no value", _set(("entries", "forward", "inputs", 0, "value"), "v999",
                                  'entries.forward.inputs[0].value: "v999" is not a value of the entry')),
    ("state dim", _set(("entries", "forward", "state_dims"), ["ctx"],
                       'entries.forward.state_dims[0]: "ctx" is not a dim')),
    ("weight not a buffer", _set(("weights", 0, "name"), "nope", 'weights[0].name: "nope" is not a buffer of '
                                                                 'memory.weights')),
    ("instruction weight not a buffer", _set(S + ("insns", 0, "weights"), ["nope"],
                                             f'streams.{STREAM}.insns[0].weights[0]: "nope" is not a buffer of '
                                             f'memory.weights or memory.kv')),
    ("value layout", _set(("entries", "forward", "values", "v0", "layout"), "tiled",
                          'entries.forward.values.v0.layout: must be one of "dense", "argmax"; got "tiled"')),
    ("fingerprint", _set(("target", "fingerprint"), "xyz", "target.fingerprint: must be 64 lowercase hex digits "
                                                           "(a sha256)")),
    ("weights format", _set(("weights_format",), "int3",
                            'weights_format: must be one of "int4", "int8", "fp16"; got "int3"')),
    ("isa version", _set(("isa_version",), "one", 'isa_version: "one" is not MAJOR.MINOR')),
    ("nan in a description", _set(("target", "description", "clock_mhz"), float("nan"),
                                  "is not valid JSON: NaN is not JSON")),
]
