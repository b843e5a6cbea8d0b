"""The artifact manifest schema, version :data:`MANIFEST_VERSION`: frozen dataclasses, one per part.

Every field is declared with its JSON spec (:mod:`dlavm.artifact.spec`), so
one engine reads (:func:`dlavm.artifact.read_manifest`), writes
(:meth:`Manifest.to_json`) and documents (:func:`schema_markdown`, the table
in doc/backend.md, checked by a test) the same schema. Lists are tuples.

Versioning rule: a reader reads exactly its own version. Any change that a
reader of the previous version would misread or refuse (a field added,
removed, renamed, retyped or given a new meaning or range) increments
:data:`MANIFEST_VERSION` here and ``kArtifactVersion`` in
clib/include/dlavm/artifact.h together; the refusal table in
tests/artifact/ then fails until both readers agree again.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from dlavm.target.isa import INSN_WORDS

from .spec import (IDENT, NAME, Bool, Enum, Expr, HostJson, Int, Json, Keyed, ListOf, MapOf, Nullable, Record, RelPath,
                   Sha256, Tagged, Text, record_fields, spec_field)

FORMAT = "dlavm-artifact"
#: 2: instruction records (op tag, layer, weights) per stream entry; typed host-constant dtypes.
#: 3: the bundled tokenizer (``tokenizer``); host constants stored quantised (``HostConst.quant``); a non-finite
#: number in a host step's literal or attribute written ``{"$float": "-inf"}`` (:class:`.spec.HostJson`).
#: 4: where the model came from (``source``: the MODEL string and ``max_seq`` given to the compiler).
#: 5: loops of a stream (``Stream.loops``): a dynamic loop's body is stored once and re-launched per iteration.
MANIFEST_VERSION = 5
#: Device addresses are counted in bytes below 2**64; instruction address fields hold multiples of 32.
ADDRESS = Int(0, 2**64 - 1)
#: Bytes per element of each dtype (little-endian arrays).
DTYPE_BYTES = {"bool": 1, "int8": 1, "int16": 2, "int32": 4, "int64": 8, "uint8": 1, "uint16": 2, "uint32": 4,
               "uint64": 8, "float16": 2, "float32": 4, "float64": 8}
DTYPE = Enum(*DTYPE_BYTES)
DIM_MAX = 2**31 - 1
#: The largest bundled tokenizer.json and chat template (bytes); both readers refuse larger files.
TOKENIZER_MAX_BYTES = 64 << 20
CHAT_TEMPLATE_MAX_BYTES = 1 << 20
#: The longest MODEL string ``source.spec`` may hold (characters).
MODEL_SPEC_MAX_LEN = 4096
#: The kinds of MODEL string, as :func:`model_kind` tells them apart.
SOURCE_KINDS = ("recipe", "factory", "hf")


def model_kind(spec: str) -> str:
    """The kind of MODEL string ``spec`` by its form, as ``dlavm.models.load_model`` dispatches on it:
    ``hf:DIR`` is ``"hf"``, any other string with a ``:`` is a ``file.py:factory`` (``"factory"``), the
    rest a recipe name (no recipe name holds a ``:``)."""
    if spec.startswith("hf:"):
        return "hf"
    return "factory" if ":" in spec else "recipe"


@dataclass(frozen=True)
class TargetInfo:
    """The device the artifact was compiled for."""

    name: str = spec_field(NAME, "target name (`tiny`, `vcu128`, ...)")
    fingerprint: str = spec_field(Sha256(), "sha256 of the target description")
    description: dict = spec_field(Json(dict), "the full target description (doc/targets.md)")

    def load(self, reader=None):
        """The :class:`~dlavm.target.Target` described, checked against its fingerprint; refusals name
        ``reader``'s source (:class:`~dlavm.artifact.spec.Reader`)."""
        from dlavm.target.schema import target_from_dict
        from .spec import Reader
        r = reader or Reader("manifest")
        try:
            t = target_from_dict(json.loads(json.dumps(self.description)))
        except Exception as e:  # noqa: BLE001 - untrusted data: any failure of the target reader is a refusal
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            r.fail("target.description", f"not a valid target: {why}")
        if t.fingerprint() != self.fingerprint:
            r.fail("target.description", "does not match target.fingerprint")
        return t


@dataclass(frozen=True)
class Dim:
    """Bounds of a dynamic dim, ``lo <= hi``."""

    lo: int = spec_field(Int(0, DIM_MAX), "smallest value")
    hi: int = spec_field(Int(0, DIM_MAX), "largest value (the bound memory is planned for and patch placeholders hold)")


@dataclass(frozen=True)
class Buffer:
    """A buffer of a memory pool."""

    addr: int = spec_field(ADDRESS, "device byte address")
    size: int = spec_field(ADDRESS, "bytes")


@dataclass(frozen=True)
class Pool:
    """A memory pool: ``weights``, ``kv``, ``activations.<function>`` or ``streams``."""

    region: str = spec_field(Text(), "memory region (`hbm`, `ddr`, ...)")
    base: int = spec_field(ADDRESS, "first byte")
    used: int = spec_field(ADDRESS, "bytes in use")
    buffers: dict = spec_field(MapOf(NAME, Record(Buffer, as_list=True)), "buffer name -> [addr, size]")


@dataclass(frozen=True)
class WeightBlob:
    """Packed weight bytes the runtime preloads at ``addr``."""

    name: str = spec_field(NAME, "blob name; a buffer of `memory.weights`")
    file: str = spec_field(RelPath(), "the bytes; listed in `files`")
    addr: int = spec_field(ADDRESS, "device address (the buffer's)")
    nbytes: int = spec_field(ADDRESS, "size of the file")


@dataclass(frozen=True)
class HostQuant:
    """How a host constant's file encodes it when quantised: symmetric, ``value = q * scale``."""

    format: str = spec_field(Enum("int8", "int4"), "`int8`: one signed byte per element; `int4`: two signed "
                                                    "nibbles per byte, the low nibble first, rows padded to even")
    group: int = spec_field(Int(1, DIM_MAX), "elements of a row per scale (the last dim)")
    scales: str = spec_field(RelPath(), "float16 `[rows, ceil(cols / group)]`; listed in `files`")


@dataclass(frozen=True)
class HostConst:
    """A constant a host step reads (little-endian array)."""

    name: str = spec_field(NAME, "constant name")
    file: str = spec_field(RelPath(), "the bytes (as `quant` says when set); listed in `files`")
    dtype: str = spec_field(DTYPE, "element type the host step reads")
    shape: tuple = spec_field(ListOf(Int(0, DIM_MAX)), "dims")
    quant: HostQuant | None = spec_field(Nullable(Record(HostQuant)),
                                         "null: the file holds the array; else a float32 2-D array stored "
                                         "quantised, dequantised when loaded", default=None)


@dataclass(frozen=True)
class ValueInfo:
    """A value of an entry: a host array or a device tensor (``addr`` set)."""

    shape: tuple = spec_field(ListOf(Expr()), "dims as size expressions over the dims")
    dtype: str = spec_field(DTYPE, "element type")
    addr: int | None = spec_field(Nullable(ADDRESS), "device address, null for a host value")
    layout: str = spec_field(Enum("dense", "argmax"), "`argmax`: (index, value) int32 pairs")


@dataclass(frozen=True)
class EntryInput:
    """A parameter of an entry."""

    name: str = spec_field(NAME, "parameter name")
    value: str = spec_field(NAME, "value id; a key of the entry's `values`")
    shape: tuple = spec_field(ListOf(Expr()), "dims as size expressions")
    dtype: str = spec_field(DTYPE, "element type")


@dataclass(frozen=True)
class EntryOutput:
    """A result of an entry."""

    value: str = spec_field(NAME, "value id; a key of the entry's `values`")
    shape: tuple = spec_field(ListOf(Expr()), "dims as size expressions")
    dtype: str = spec_field(DTYPE, "element type")


@dataclass(frozen=True)
class ValueRef:
    """Operand: a value of the entry."""

    value: str = spec_field(NAME, "value id")


@dataclass(frozen=True)
class LiteralOperand:
    """Operand: a literal."""

    literal: Any = spec_field(HostJson(), "the value")


@dataclass(frozen=True)
class ConstRef:
    """Operand: a host constant."""

    const: str = spec_field(NAME, "a `host_consts` name (when `weights_complete`)")
    shape: tuple = spec_field(ListOf(Expr()), "dims")
    dtype: str = spec_field(DTYPE, "element type")


OPERAND = Keyed(value=ValueRef, literal=LiteralOperand, const=ConstRef)


@dataclass(frozen=True)
class HostStep:
    """Run a host-fallback op with numpy."""

    TAG: ClassVar[str] = "host"
    op: str = spec_field(NAME, "op name (a host kernel)")
    args: tuple = spec_field(ListOf(OPERAND), "operands")
    attrs: dict = spec_field(MapOf(NAME, HostJson()), "attributes; `{\"sym\": expr}` is a size expression")
    dst: str = spec_field(NAME, "value id written")


@dataclass(frozen=True)
class ToDeviceStep:
    """Write a host value to a device tensor as fp16."""

    TAG: ClassVar[str] = "to_device"
    src: Any = spec_field(OPERAND, "operand")
    dst: str = spec_field(NAME, "device value id")


@dataclass(frozen=True)
class ToHostStep:
    """Read a device tensor back."""

    TAG: ClassVar[str] = "to_host"
    src: str = spec_field(NAME, "device value id")
    dst: str = spec_field(NAME, "host value id")
    dtype: str = spec_field(DTYPE, "host element type")


@dataclass(frozen=True)
class StreamStep:
    """Patch, write and run an AUX stream."""

    TAG: ClassVar[str] = "stream"
    stream: str = spec_field(NAME, "a key of `streams`")


STEP = Tagged(HostStep, ToDeviceStep, ToHostStep, StreamStep)


@dataclass(frozen=True)
class Entry:
    """A callable function of the model."""

    state_dims: tuple = spec_field(ListOf(IDENT), "dims the caller passes (no input carries them); keys of `dims`")
    requires: tuple = spec_field(ListOf(Expr()), "conditions on the dims that must hold")
    inputs: tuple = spec_field(ListOf(Record(EntryInput)), "parameters in order")
    outputs: tuple = spec_field(ListOf(Record(EntryOutput)), "results in order")
    values: dict = spec_field(MapOf(NAME, Record(ValueInfo)), "value id -> value")
    steps: tuple = spec_field(ListOf(STEP), "what runs, in order")


@dataclass(frozen=True)
class Patch:
    """A dynamic field: bits ``[lo, lo + width)`` of ``word`` of entry ``index`` hold ``expr``."""

    index: int = spec_field(Int(0), "entry; < the stream's `count`")
    field: str = spec_field(IDENT, "instruction field name")
    word: int = spec_field(Int(0, INSN_WORDS - 1), "32-bit word of the entry")
    lo: int = spec_field(Int(0, 31), "lowest bit; `lo + width <= 32`")
    width: int = spec_field(Int(1, 32), "bits")
    kind: str = spec_field(Enum("uint", "addr"), "`addr`: the value is a byte address stored / 32")
    expr: str = spec_field(Expr(), "size expression over the dims")


@dataclass(frozen=True)
class Guard:
    """Entry ``index`` runs only while ``expr`` holds (else it becomes a `nop` keeping its wait)."""

    index: int = spec_field(Int(0), "entry; < the stream's `count`")
    expr: str = spec_field(Expr(), "condition over the dims")


@dataclass(frozen=True)
class Loop:
    """Entries ``[start, end)`` run ``trips`` times, ``var`` = 0, 1, ...: the host re-launches them re-patched
    for each iteration (doc/backend.md, "AUX streams")."""

    var: str = spec_field(IDENT, "iteration variable; not a dim; the loop's patches and guards may use it")
    start: int = spec_field(Int(0), "first entry; < `end`")
    end: int = spec_field(Int(1), "one past the last entry; <= the stream's `count`, <= the next loop's `start`")
    trips: str = spec_field(Expr(), "trip count, over the dims")


@dataclass(frozen=True)
class InsnRecord:
    """What an instruction belongs to, from the lowering (not from its comment)."""

    tag: str | None = spec_field(Nullable(NAME), "device op tag `dev.mvm#3` (op and node), null if none")
    layer: int | None = spec_field(Nullable(Int(0)), "model layer of the op, null outside layers")
    weights: tuple = spec_field(ListOf(NAME), "`memory.weights`/`memory.kv` buffers its address fields name")


@dataclass(frozen=True)
class Stream:
    """An AUX stream: ``count`` 64-byte entries, placed at ``addr``."""

    file: str = spec_field(RelPath(), "the entries (`count * 64` bytes); listed in `files`")
    asm: str = spec_field(RelPath(), "readable listing; listed in `files`")
    addr: int = spec_field(Int(0, 2**64 - 1, 32), "device address")
    count: int = spec_field(Int(0, 2**24), "entries")
    patches: tuple = spec_field(ListOf(Record(Patch)), "dynamic fields")
    guards: tuple = spec_field(ListOf(Record(Guard)), "guarded entries")
    loops: tuple = spec_field(ListOf(Record(Loop)), "re-launched entry ranges, in order, disjoint")
    insns: tuple = spec_field(ListOf(Record(InsnRecord)), "one record per entry (`count` of them)")


@dataclass(frozen=True)
class LlmInfo:
    """How the generate loop drives an LLM artifact (doc/llm.md)."""

    seq_dim: str = spec_field(IDENT, "the new-token dim; a key of `dims`")
    ctx_dim: str = spec_field(IDENT, "the KV-length state dim; a key of `dims`")
    max_ctx: int = spec_field(Int(1, DIM_MAX), "KV cache capacity")
    vocab: int = spec_field(Int(1), "vocabulary size")
    input: str = spec_field(NAME, "the token-id parameter")
    entries: dict = spec_field(MapOf(Enum("logits", "greedy"), NAME), "role -> a key of `entries`")
    caches: tuple = spec_field(ListOf(Json()), "per attention layer, its KV cache")
    requires: tuple = spec_field(ListOf(Expr()), "conditions on the dims")


@dataclass(frozen=True)
class TokenizerInfo:
    """The model's tokenizer, bundled so that `dlavm generate` encodes and decodes text (doc/llm.md)."""

    file: str = spec_field(RelPath(), "a HF `tokenizer.json` of at most 64 MiB; listed in `files`")
    bos_id: int | None = spec_field(Nullable(Int(0, DIM_MAX)), "beginning-of-sequence token, null if none")
    eos_ids: tuple = spec_field(ListOf(Int(0, DIM_MAX)), "end-of-sequence tokens: generation stops at any")
    add_bos: bool = spec_field(Bool(), "a prompt starts with `bos_id` (the tokenizer config's `add_bos_token`)")
    chat_template: str | None = spec_field(Nullable(RelPath()),
                                           "the Jinja chat template (UTF-8, at most 1 MiB; listed in `files`), "
                                           "null if none")


@dataclass(frozen=True)
class ModelSource:
    """Where the model came from: the MODEL string given to the compiler (doc/cli.md, doc/models.md)."""

    kind: str = spec_field(Enum(*SOURCE_KINDS), "`recipe`, `factory` (`file.py:factory`) or `hf` (`hf:DIR`); "
                                                "the form of `spec` (`hf:` first, else a `:`, else a recipe)")
    spec: str = spec_field(Text(r"[^\x00-\x1f]+", "a non-empty MODEL without control characters",
                                MODEL_SPEC_MAX_LEN, "MODEL string"),
                           f"the MODEL as the user gave it (a relative path stays relative), at most "
                           f"{MODEL_SPEC_MAX_LEN} characters")
    max_seq: int | None = spec_field(Nullable(Int(1, DIM_MAX)), "the `max_seq` keyword argument given to the "
                                                               "recipe or factory, null if none")


@dataclass(frozen=True)
class HostOp:
    """A host-fallback op and why it is not on the device."""

    op: str = spec_field(NAME, "op name")
    node: str = spec_field(Text(), "where in the model")
    reason: str = spec_field(Text(), "why it runs on the host")
    function: str = spec_field(Text(), "function of the module")


@dataclass(frozen=True)
class Manifest:
    """An artifact's ``manifest.json``."""

    format: str = spec_field(Enum(FORMAT), "file format")
    version: int = spec_field(Int(0), f"schema version; this reader reads {MANIFEST_VERSION}")
    isa_version: str = spec_field(Text(r"[0-9]+\.[0-9]+", "MAJOR.MINOR", 32, "`MAJOR.MINOR`"),
                                  "ISA the streams are encoded for")
    target: TargetInfo = spec_field(Record(TargetInfo), "the device")
    model: str = spec_field(Text(), "model name")
    weights_format: str = spec_field(Enum("int4", "int8", "fp16"), "default weight format")
    weights_complete: bool = spec_field(Bool(), "false: shape-only (timing runs only)")
    dims: dict = spec_field(MapOf(IDENT, Record(Dim, as_list=True)), "dim -> [lo, hi]")
    memory: dict = spec_field(MapOf(NAME, Record(Pool)), "pool name -> pool")
    weights: tuple = spec_field(ListOf(Record(WeightBlob)), "preloaded weight blobs")
    host_consts: tuple = spec_field(ListOf(Record(HostConst)), "host constants")
    entries: dict = spec_field(MapOf(NAME, Record(Entry)), "entry name -> entry")
    streams: dict = spec_field(MapOf(NAME, Record(Stream)), "stream name -> stream")
    llm: LlmInfo | None = spec_field(Nullable(Record(LlmInfo)), "generate-loop data, null for other models")
    host_ops: tuple = spec_field(ListOf(Record(HostOp)), "host-fallback ops")
    files: dict = spec_field(MapOf(RelPath(), Sha256()), "every file of the artifact -> its sha256")
    tokenizer: TokenizerInfo | None = spec_field(Nullable(Record(TokenizerInfo)),
                                                 "the bundled tokenizer, null if none", default=None)
    source: ModelSource | None = spec_field(Nullable(Record(ModelSource)),
                                            "the MODEL string compiled, null for a model given as an object "
                                            "(`run --check` and `generate --verify` rebuild it from here)",
                                            default=None)

    def to_json(self) -> dict:
        """The manifest as JSON data (what ``manifest.json`` holds)."""
        return Record(Manifest).encode(self)

    def dumps(self) -> str:
        """The text of ``manifest.json``."""
        return json.dumps(self.to_json(), indent=1) + "\n"


#: Every record of the schema, in the order the doc lists them.
RECORDS = (Manifest, TargetInfo, Dim, Pool, Buffer, WeightBlob, HostConst, HostQuant, Entry, EntryInput, EntryOutput,
           ValueInfo, HostStep, ToDeviceStep, ToHostStep, StreamStep, ValueRef, LiteralOperand, ConstRef,
           Stream, Patch, Guard, Loop, InsnRecord, LlmInfo, TokenizerInfo, ModelSource, HostOp)


def schema_markdown() -> str:
    """The schema as markdown tables (one per record), as doc/backend.md shows it."""
    out = []
    for cls in RECORDS:
        tag = f" (`\"kind\": \"{cls.TAG}\"`)" if getattr(cls, "TAG", None) else ""
        out.append(f"**`{cls.__name__}`**{tag}: {(cls.__doc__ or '').strip().splitlines()[0] if cls.__doc__ else ''}")
        out.append("")
        out.append("| field | JSON | meaning |")
        out.append("|---|---|---|")
        for name, spec, doc in record_fields(cls):
            out.append(f"| `{name}` | {spec.doc.replace('|', '/')} | {doc.replace('|', '/')} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


__all__ = ["FORMAT", "MANIFEST_VERSION", "DTYPE_BYTES", "Manifest", "TargetInfo", "Dim", "Pool", "Buffer", "WeightBlob",
           "HostConst", "Entry", "EntryInput", "EntryOutput", "ValueInfo", "HostStep", "ToDeviceStep",
           "ToHostStep", "StreamStep", "ValueRef", "LiteralOperand", "ConstRef", "Stream", "Patch", "Guard", "Loop",
           "InsnRecord", "LlmInfo", "TokenizerInfo", "HostQuant", "HostOp", "ModelSource", "model_kind",
           "SOURCE_KINDS", "MODEL_SPEC_MAX_LEN", "RECORDS", "schema_markdown",
           "TOKENIZER_MAX_BYTES", "CHAT_TEMPLATE_MAX_BYTES"]
