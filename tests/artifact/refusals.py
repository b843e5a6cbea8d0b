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


#: The first step of the good artifact's entry: a host step (its literals and attributes may hold "$float" tags).
H = ("entries", "forward", "steps", 0)


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
    s["guards"] = [{"index": s["count"] + 5, "expr": "seq"}] + s["guards"]
    return f"streams.{STREAM}.guards[0].index: must be < the stream's count ({s['count']}), got {s['count'] + 5}"


def _loop_past(m, d):
    s = _s(m)
    lp = s["loops"][0]
    lp["end"] = s["count"] + 1
    return (f"streams.{STREAM}.loops[0].end: must be > start ({lp['start']}) and <= the stream's count "
            f"({s['count']}), got {s['count'] + 1}")


def _loops_overlap(m, d):
    s = _s(m)
    a, b = s["loops"][:2]
    b["start"] = a["end"] - 1
    return f"streams.{STREAM}.loops[1].start: must be >= the previous loop's end ({a['end']}), got {a['end'] - 1}"


def _loop_var_a_dim(m, d):
    _s(m)["loops"][0]["var"] = "seq"
    return f'streams.{STREAM}.loops[0].var: "seq" is a dim; a loop variable must not be'


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


def _tokenizer(**fields):
    """A tokenizer section naming ``tokenizer/tokenizer.json`` (not listed), with ``fields`` changed."""
    t = {"file": "tokenizer/tokenizer.json", "bos_id": 1, "eos_ids": [2], "add_bos": True, "chat_template": None}
    t.update(fields)
    return t


def _quant(fmt="int8", group=256, dtype=None):
    def mutate(m, d):
        c = m["host_consts"][0]
        c["quant"] = {"format": fmt, "group": group, "scales": "weights/scales.bin"}
        m["files"]["weights/scales.bin"] = "0" * 64
        if dtype is not None:
            c["dtype"] = dtype
            return (f"host_consts[0].quant: a quantised constant must be a float32 2-D array, got {dtype} of "
                    f"shape {c['shape']}")
        n = (d / c["file"]).stat().st_size
        rows, cols = c["shape"]
        return f"host_consts[0].file: holds {n} bytes, its {fmt} shape [{rows}, {cols}] needs {rows * cols}"
    return mutate


def _big_tokenizer(m, d):
    from dlavm.artifact import TOKENIZER_MAX_BYTES
    (d / "tokenizer").mkdir()
    with open(d / "tokenizer" / "tokenizer.json", "wb") as f:   # sparse: refused by its size, never read
        f.truncate(TOKENIZER_MAX_BYTES + 1)
    m["files"]["tokenizer/tokenizer.json"] = "0" * 64
    m["tokenizer"] = _tokenizer()
    return f"tokenizer.file: holds {TOKENIZER_MAX_BYTES + 1} bytes, more than the {TOKENIZER_MAX_BYTES} it may"

def _source(**fields):
    """A ``source`` section (the good artifact has none: it was compiled from a module) with ``fields`` changed."""
    src = {"kind": "recipe", "spec": "mlp", "max_seq": 16}
    src.update(fields)
    return src


SOURCE_SPEC = "is not a non-empty MODEL without control characters"

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
    ("loop end past the stream", _loop_past),
    ("loops overlap", _loops_overlap),
    ("loop variable is a dim", _loop_var_a_dim),
    ("loop start negative", _set(S + ("loops", 0, "start"), -1, f"streams.{STREAM}.loops[0].start: must be >= 0, "
                                                                f"got -1")),
    ("loop trips not text", _set(S + ("loops", 0, "trips"), 3, f"streams.{STREAM}.loops[0].trips: must be a "
                                                               f"string, got integer")),
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
    ("float tag unknown", _set(H + ("attrs", "value"), {"$float": "-infinity"},
                               'entries.forward.steps[0].attrs.value.$float: must be one of "inf", "-inf", "nan"; '
                               'got "-infinity"')),
    ("float tag not a string", _set(H + ("attrs", "value"), {"$float": 1.5},
                                    "entries.forward.steps[0].attrs.value.$float: must be a string, got number")),
    ("float tag with another key", _set(H + ("attrs", "value"), {"$float": "inf", "x": 1},
                                        'entries.forward.steps[0].attrs.value: a "$float" object must have no other '
                                        'key, got "x"')),
    ("float tag in a literal", _set(H + ("args", 0), {"literal": [1.0, {"$float": "NaN"}]},
                                    'entries.forward.steps[0].args[0].literal[1].$float: must be one of "inf", "-inf", '
                                    '"nan"; got "NaN"')),
    ("tokenizer not an object", _set(("tokenizer",), 5, "tokenizer: must be an object, got integer")),
    ("tokenizer field missing", _set(("tokenizer",), {"file": "tokenizer/tokenizer.json"},
                                     "tokenizer.bos_id: is required")),
    ("tokenizer unknown field", _set(("tokenizer",), _tokenizer(vocab=3),
                                     f"tokenizer.vocab: is not a field of manifest version {V}")),
    ("tokenizer file escaping", _set(("tokenizer",), _tokenizer(file="../tokenizer.json"),
                                     'tokenizer.file: path "../tokenizer.json" must be a relative path inside the '
                                     'artifact')),
    ("tokenizer eos id negative", _set(("tokenizer",), _tokenizer(eos_ids=[2, -1]),
                                       "tokenizer.eos_ids[1]: must be >= 0, got -1")),
    ("tokenizer bos id a string", _set(("tokenizer",), _tokenizer(bos_id="1"),
                                       "tokenizer.bos_id: must be an integer, got string")),
    ("tokenizer add_bos not a boolean", _set(("tokenizer",), _tokenizer(add_bos=1),
                                             "tokenizer.add_bos: must be a boolean, got integer")),
    ("tokenizer file unlisted", _set(("tokenizer",), _tokenizer(),
                                     'tokenizer.file: "tokenizer/tokenizer.json" is not listed in files')),
    ("tokenizer file named twice", _set(("tokenizer",), _tokenizer(file="weights/host.model.embed_tokens.weight.bin"),
                                        'tokenizer.file: "weights/host.model.embed_tokens.weight.bin" is already '
                                        'named by host_consts[0].file')),
    ("chat template unlisted", lambda m, d: (m.update(tokenizer=_tokenizer(
        file=m["host_consts"][0]["file"].replace("host.", "nohost."), chat_template="tokenizer/chat.jinja")),
        m["files"].update({m["host_consts"][0]["file"].replace("host.", "nohost."): "0" * 64}),
        'tokenizer.chat_template: "tokenizer/chat.jinja" is not listed in files')[2]),
    ("tokenizer too large", _big_tokenizer),
    ("no source", _set(("source",), ..., "source: is required")),
    ("source not an object", _set(("source",), "mlp", "source: must be an object, got string")),
    ("source unknown field", _set(("source",), _source(kwargs={}),
                                  f"source.kwargs: is not a field of manifest version {V}")),
    ("source field missing", _set(("source",), {"kind": "recipe", "spec": "mlp"}, "source.max_seq: is required")),
    ("source kind", _set(("source",), _source(kind="url"),
                         'source.kind: must be one of "recipe", "factory", "hf"; got "url"')),
    ("source spec not a string", _set(("source",), _source(spec=5), "source.spec: must be a string, got integer")),
    ("source spec empty", _set(("source",), _source(spec=""), f'source.spec: "" {SOURCE_SPEC}')),
    ("source spec with a newline", _set(("source",), _source(spec="mlp\nx"), f'source.spec: "mlp\\nx" {SOURCE_SPEC}')),
    ("source spec too long", _set(("source",), _source(spec="m" * 4097),
                                  "source.spec: must be at most 4096 characters, got 4097")),
    ("source max_seq zero", _set(("source",), _source(max_seq=0), "source.max_seq: must be >= 1, got 0")),
    ("source max_seq past a dim", _set(("source",), _source(max_seq=2**31),
                                       "source.max_seq: must be <= 2147483647, got 2147483648")),
    ("source max_seq a string", _set(("source",), _source(max_seq="16"),
                                     "source.max_seq: must be an integer, got string")),
    ("source factory posing as a recipe", _set(("source",), _source(spec="evil.py:build"),
                                               'source.kind: is "recipe", the spec "evil.py:build" is of kind '
                                               '"factory"')),
    ("source checkpoint posing as a factory", _set(("source",), _source(kind="factory", spec="hf:ckpt"),
                                                   'source.kind: is "factory", the spec "hf:ckpt" is of kind "hf"')),
    ("host const quant format", _set(("host_consts", 0, "quant"), {"format": "int2", "group": 1, "scales": "s.bin"},
                                     'host_consts[0].quant.format: must be one of "int8", "int4"; got "int2"')),
    ("host const quant group zero", _set(("host_consts", 0, "quant"), {"format": "int4", "group": 0,
                                                                       "scales": "s.bin"},
                                         "host_consts[0].quant.group: must be >= 1, got 0")),
    ("host const quant missing", _set(("host_consts", 0, "quant"), ..., "host_consts[0].quant: is required")),
    ("host const quant of a float16 array", _quant(dtype="float16")),
    ("host const quant file size", _quant()),
    ("corrupt file", _corrupt),
    ("missing file", _missing),
    ("stream file of another size", _stream_size),
    ("deep nesting", _deep),
]


def _expr(field, value, rule):
    return _set(P + (field,), value, f"streams.{STREAM}.patches[0].{field}: {rule}")


#: Rules only the Python reader applies (fields the C++ runtime does not read).
PYTHON = [
    ("expression syntax", _expr("expr", "seq +", "malformed size expression 'seq +': unexpected end of text")),
    ("expression call", _expr("expr", "open(seq)", "size expression 'open(seq)' calls 'open'; only min and max "
                                                   "may be called")),
    ("expression quote", _expr("expr", "__import__('os')", "malformed size expression \"__import__('os')\": "
                                                           "unexpected character \"'\"")),
    ("expression attribute", _expr("expr", "seq.real", "malformed size expression 'seq.real': unexpected "
                                                       "character '.'")),
    ("expression power", _expr("expr", "9**9**9", "malformed size expression '9**9**9': '**' (exponentiation) "
                                                  "is not allowed")),
    ("expression literal past int64", _expr("expr", "seq + 9223372036854775808",
                                            "size expression 'seq + 9223372036854775808': a literal is outside "
                                            "int64")),
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


# --- an artifact is untrusted input: rules on the manifest's checksum, the files and the memory map ---------

def unsealed(mutate):
    """Mark a mutation whose manifest the test must not reseal (``manifest.sha256`` is left as written)."""
    mutate.unsealed = True
    return mutate


@unsealed
def _edited_after_sealing(m, d):
    m["model"] = m["model"] + "x"
    return "manifest.json: does not match manifest.sha256 (recorded "


@unsealed
def _no_sum(m, d):
    (d / "manifest.sha256").unlink()
    return "manifest.sha256: not found (the writer records the sha256 of manifest.json there)"


@unsealed
def _bad_sum(m, d):
    (d / "manifest.sha256").write_text("0" * 63 + "  manifest.json\n")
    return 'manifest.sha256: must be the one line "<64 lowercase hex digits>  manifest.json"'


def _first(m, prefix):
    return next(rel for rel in m["files"] if rel.startswith(prefix))


def _link_out(m, d):
    rel = m["weights"][0]["file"]
    outside = d.parent / "outside.bin"
    outside.write_bytes((d / rel).read_bytes())    # same bytes, same sha256: only the link is wrong
    (d / rel).unlink()
    (d / rel).symlink_to(outside)
    return f'file "{rel}": "{rel}" is a symbolic link; an artifact holds regular files only'


def _dir_link_out(m, d):
    import shutil
    rel = _first(m, "weights/")
    shutil.move(str(d / "weights"), str(d.parent / "weights_outside"))
    (d / "weights").symlink_to(d.parent / "weights_outside")
    return f'file "{rel}": "weights" is a symbolic link; an artifact holds regular files only'


def _link_to_dev_zero(m, d):
    rel = m["host_consts"][0]["file"]
    (d / rel).unlink()
    (d / rel).symlink_to("/dev/zero")
    return f'file "{rel}": "{rel}" is a symbolic link; an artifact holds regular files only'


def _fifo(m, d):
    import os
    rel = _s(m)["asm"]
    (d / rel).unlink()
    os.mkfifo(d / rel)    # opening it for reading must not block
    return f'file "{rel}" is not a regular file'


def _directory(m, d):
    rel = _s(m)["asm"]
    (d / rel).unlink()
    (d / rel).mkdir()
    return f'file "{rel}" is not a regular file'


def _named_twice(m, d):
    m["weights"][1]["file"] = m["weights"][0]["file"]
    return f'weights[1].file: "{m["weights"][0]["file"]}" is already named by weights[0].file'


def _weight_size(m, d):
    w = m["weights"][0]
    n = w["nbytes"]
    w["nbytes"] = n - 32
    return f"weights[0].file: holds {n} bytes, its nbytes is {n - 32}"


def _host_const_size(m, d):
    c = m["host_consts"][0]
    n = (d / c["file"]).stat().st_size
    c["shape"][0] += 1
    import numpy as np
    want = np.dtype(c["dtype"]).itemsize * int(np.prod(c["shape"]))
    return f"host_consts[0].file: holds {n} bytes, its {c['dtype']} shape {c['shape']} needs {want}"


def _patched_insn(m, d):
    """(patch 0, the instruction format of its entry) read from the stream file."""
    from dlavm.target.isa import INSN_BYTES, OPS_BY_CODE
    s = _s(m)
    p = s["patches"][0]
    return p, OPS_BY_CODE[(d / s["file"]).read_bytes()[p["index"] * INSN_BYTES]]


def _patch_word(m, d):
    p, fmt = _patched_insn(m, d)
    f = fmt.field(p["field"])
    p["word"] = f.word + 1
    return f"streams.{STREAM}.patches[0].word: {fmt.mnemonic}.{f.name} has word {f.word}, got {f.word + 1}"


def _patch_field(m, d):
    p, fmt = _patched_insn(m, d)
    p["field"] = "nosuch"
    return f'streams.{STREAM}.patches[0].field: "nosuch" is not a field of {fmt.mnemonic} (entry {p["index"]})'


def _patch_kind(m, d):
    p, fmt = _patched_insn(m, d)
    f = fmt.field(p["field"])
    other = "uint" if f.kind == "addr" else "addr"
    p["kind"] = other
    return f'streams.{STREAM}.patches[0].kind: {fmt.mnemonic}.{f.name} has kind "{f.kind}", got "{other}"'


def _pool_outside(m, d):
    pool = m["memory"]["weights"]
    pool["base"] = 2**40
    return f"memory.weights: [{2**40}, {2**40 + pool['used']}) is outside the target's hbm region"


def _pools_overlap(m, d):
    w, kv = m["memory"]["weights"], m["memory"]["kv"]
    shift = kv["base"] - w["base"]
    kv["base"] = w["base"]
    for b in kv["buffers"].values():
        b[0] -= shift
    return f"memory.kv: [{w['base']}, {w['base'] + kv['used']}) overlaps memory.weights [{w['base']}, "


def _buffers_overlap(m, d):
    bufs = m["memory"]["kv"]["buffers"]
    (n0, b0), (n1, b1) = sorted(bufs.items(), key=lambda kv: kv[1][0])[:2]
    b1[0] = b0[0] + 32
    return f'memory.kv.buffers.{n1}: [{b1[0]}, {b1[0] + b1[1]}) overlaps buffer "{n0}" [{b0[0]}, {b0[0] + b0[1]})'


def _buffer_outside(m, d):
    pool = m["memory"]["kv"]
    name, b = next(iter(pool["buffers"].items()))
    b[0] = pool["base"] + pool["used"]
    return f"memory.kv.buffers.{name}: [{b[0]}, {b[0] + b[1]}) is outside the pool"


def _stream_at_zero(m, d):
    s = _s(m)
    s["addr"] = 0
    return f"streams.{STREAM}.addr: [0, {s['count'] * 64}) is outside memory.streams"


def _blob_past_buffer(m, d):
    w = m["weights"][0]
    size = m["memory"]["weights"]["buffers"][w["name"]][1]
    w["nbytes"] = size + 32
    return f"weights[0].nbytes: must be <= its buffer's size ({size}), got {size + 32}"


def _value_nowhere(m, d):
    vals = m["entries"]["forward"]["values"]
    vid = next(k for k, v in vals.items() if v["addr"] is not None)
    vals[vid]["addr"] = 0
    return f"entries.forward.values.{vid}.addr: 0 is in no activations or kv pool"


def _blob_missing(m, d):
    w = m["weights"].pop(0)
    return f"memory.weights.buffers.{w['name']}: has no blob in weights (weights_complete is true)"


def _blob_twice(m, d):
    m["weights"][1]["name"] = m["weights"][0]["name"]
    m["weights"][1]["addr"] = m["weights"][0]["addr"]
    return f'weights[1].name: "{m["weights"][0]["name"]}" already has a blob (weights[0])'


def _output_unwritten(m, d):
    e = m["entries"]["forward"]
    out = e["outputs"][0]["value"]
    i = next(i for i, s in enumerate(e["steps"]) if s.get("dst") == out)
    e["steps"][i]["dst"] = e["outputs"][0]["value"] + "_other"
    e["values"][out + "_other"] = e["values"][out]
    return f'entries.forward.outputs[0].value: "{out}" is not written by any step'


def _read_before_written(m, d):
    e = m["entries"]["forward"]
    i, st = next((i, s) for i, s in enumerate(e["steps"]) if s["kind"] == "host"
                 and any("value" in a for a in s["args"]))
    j = next(j for j, a in enumerate(st["args"]) if "value" in a)
    st["args"][j]["value"] = st["dst"]
    return f'entries.forward.steps[{i}].args[{j}].value: "{st["dst"]}" is read before any step writes it'


def _to_host_of_host_value(m, d):
    e = m["entries"]["forward"]
    i, st = next((i, s) for i, s in enumerate(e["steps"]) if s["kind"] == "to_host")
    e["values"][st["src"]]["addr"] = None
    return f'entries.forward.steps[{i}].src: "{st["src"]}" is a host value (no addr)'


@unsealed
def _manifest_link(m, d):
    (d.parent / "manifest_outside.json").write_bytes((d / "manifest.json").read_bytes())
    (d / "manifest.json").unlink()
    (d / "manifest.json").symlink_to(d.parent / "manifest_outside.json")
    return 'file "manifest.json": "manifest.json" is a symbolic link; an artifact holds regular files only'


@unsealed
def _long_sum(m, d):
    (d / "manifest.sha256").write_text("0" * 2000)
    return 'file "manifest.sha256" holds 2000 bytes, more than the 1024 it may'


def _folder_is_a_file(m, d):
    import shutil
    rel = _first(m, "weights/")
    shutil.rmtree(d / "weights")
    (d / "weights").write_bytes(b"not a folder")
    return f'file "{rel}": "weights" is not a directory'


#: (name, mutation, C++): rules an artifact from an untrusted source is checked against. Python applies every
#: row; C++ (``dlavm::Artifact::open``) must refuse the rows marked True with the same message. A mutation
#: marked :func:`unsealed` leaves ``manifest.sha256`` as the writer wrote it; every other one is resealed, so
#: the rule itself (not the checksum) refuses it.
UNTRUSTED = [
    ("manifest edited after sealing", _edited_after_sealing, True),
    ("manifest.sha256 missing", _no_sum, True),
    ("manifest.sha256 malformed", _bad_sum, True),
    ("files lists manifest.sha256", _set(("files", "manifest.sha256"), "0" * 64,
                                         'files: path "manifest.sha256" must be a relative path inside the '
                                         'artifact'), True),
    ("file is a link out of the artifact", _link_out, True),
    ("folder is a link out of the artifact", _dir_link_out, True),
    ("file is a link to /dev/zero", _link_to_dev_zero, True),
    ("file is a FIFO", _fifo, True),
    ("file is a directory", _directory, True),
    ("file named twice", _named_twice, True),
    ("weight file of another size", _weight_size, True),
    ("host constant file of another size", _host_const_size, True),
    ("patch word is not its field's", _patch_word, True),
    ("patch field is not its instruction's", _patch_field, True),
    ("patch kind is not its field's", _patch_kind, True),
    ("manifest.json is a link", _manifest_link, True),
    ("manifest.sha256 too long", _long_sum, True),
    ("folder on a path is a file", _folder_is_a_file, True),
    # False (Python only): the C++ runtime reads no memory map, value, step operand (it checks only the form of
    # a "$float" tag) or target description from the manifest. A generated driver carries the addresses, sizes
    # and steps it was generated for as constants (checked by this reader when it was generated) and refuses a
    # manifest whose streams, weight blobs or host constants differ from them (Artifact::expect,
    # tests/clib/test_cpp_driver_untrusted.py).
    ("pool outside its region", _pool_outside, False),
    ("pool region unknown", _set(("memory", "kv", "region"), "flash",
                                 'memory.kv.region: "flash" is not a memory region of the target ('), False),
    ("pools overlap", _pools_overlap, False),
    ("buffers overlap", _buffers_overlap, False),
    ("buffer outside its pool", _buffer_outside, False),
    ("stream outside memory.streams", _stream_at_zero, False),
    ("weight blob past its buffer", _blob_past_buffer, False),
    ("device value in no pool", _value_nowhere, False),
    ("weight buffer without a blob", _blob_missing, False),
    ("weight buffer with two blobs", _blob_twice, False),
    ("output never written", _output_unwritten, False),
    ("value read before it is written", _read_before_written, False),
    ("device read of a host value", _to_host_of_host_value, False),
    ("target description invalid", _set(("target", "description", "hbm_channels"), "x",
                                        "target.description: not a valid target: "), False),
    ("target fingerprint of another description", _set(("target", "fingerprint"), "0" * 64,
                                                        "target.description: does not match target.fingerprint"),
     False),
]
