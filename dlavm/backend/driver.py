"""Host C++ driver generator: a readable ``driver/<model>.h/.cc`` pair plus ``<model>_main.cc`` (for an LLM
artifact ``<model>_llm.cc``, ``dlavm::make_llm_model``, and ``<model>_generate.cc``).

The generated driver uses the C++ runtime (clib/include/dlavm: ``Device``,
``Artifact``, ``fp16.h``, ``sym_rt.h``) and does what the Python runtime
does, with every dynamic value computed by code exported from the sym
expressions (``dlavm.sym.to_cpp``): bind dims from input shapes (bounds
checked), convert inputs to fp16, patch each stream (dynamic fields,
guarded entries -> ``nop``), upload and run it, read the outputs. Host
fallback ops run by the C++ kernels of clib (``dlavm/host_ops.h``; which ops,
with which attributes: :data:`.cpp_host_ops.CPP_HOST_OPS`), with host constants of
the dtypes in ``CPP_CONST_DTYPES``; :func:`cpp_unsupported_host_ops` names each op
a model needs beyond that (once, with its step count), and :func:`generate_driver`
refuses such a model (the compiler reports it at compile time). ``main`` (:mod:`.driver_main`)
reads raw little-endian input files and writes raw output files so tests
can compare with the Python runtime bit for bit. The driver checks the
manifest fields it carries as constants (``kArtifactFacts``, checked by
``dlavm::Artifact::expect``) and each file's size before it touches a
buffer; stream writes are bounds-checked by ``dlavm::Stream``. Compiles with
``g++ -std=c++17 -O2 -Wall -Werror``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

from dlavm import sym
from dlavm.artifact import ConstRef, HostStep, Manifest, ToDeviceStep, ToHostStep, ValueRef
from dlavm.passes.kv_cache import BATCH_ENTRIES, ROWS_DIM

from .cpp_host_ops import CPP_DTYPES, CPP_HOST_OPS, HostCall, Operand, call_problem, emit_call
from .driver_main import generate_main, llm_model, run_main

#: dtypes of host constants the generated ``load_const`` reads, with their element size in bytes:
#: floats are held as float32, integers and bool as int64, both exactly.
CPP_CONST_DTYPES = {"float32": 4, "float16": 2, "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1,
                    "bool": 1}


class DriverUnsupportedError(ValueError):
    """The C++ driver cannot run this model (names every host op it lacks and why)."""


@dataclass(frozen=True)
class UnsupportedHostOp:
    """A host op the generated C++ driver cannot run, for one reason: ``count`` steps in ``entries``."""
    op: str
    reason: str
    count: int
    entries: tuple

    def __str__(self) -> str:
        where = ", ".join(f"'{e}'" for e in self.entries)
        steps = f"{self.count} step{'s' if self.count != 1 else ''}"
        return f"host op '{self.op}' ({steps} in entr{'ies' if len(self.entries) > 1 else 'y'} {where}): {self.reason}"


def _dtype_name(dtype: str) -> str:
    """numpy's name for a manifest dtype ('f2' and 'float16' both give 'float16')."""
    return np.dtype(dtype).name


def _host_call(step: HostStep, values: dict, consts: dict, cpp_args=None, attrs=None, render=None) -> HostCall:
    """``step`` as :mod:`.cpp_host_ops` sees it (``values``: the entry's value records; ``consts``: host
    constant name -> manifest record; ``cpp_args``: each operand's C++ expression when generating)."""
    ops = []
    for k, a in enumerate(step.args):
        cpp = cpp_args[k] if cpp_args else ""
        if isinstance(a, ValueRef):
            ops.append(Operand("value", _dtype_name(values[a.value].dtype), cpp=cpp))
        elif isinstance(a, ConstRef):
            ops.append(Operand("const", _dtype_name(consts[a.const].dtype if a.const in consts else a.dtype), cpp=cpp))
        else:
            ops.append(Operand("literal", literal=a.literal))
    return HostCall(step.op, tuple(ops), step.attrs if attrs is None else attrs,
                    _dtype_name(values[step.dst].dtype), render)


def _host_step_problem(step: HostStep, values: dict, consts: dict) -> str | None:
    """Why the C++ driver cannot run host ``step`` (None when it can). ``values``: the entry's
    value records; ``consts``: host constant name -> manifest record (absent: no data)."""
    for a in step.args:
        if isinstance(a, ConstRef) and a.const in consts:
            dt = _dtype_name(consts[a.const].dtype)
            if dt not in CPP_CONST_DTYPES:
                return (f"it reads a host constant of dtype {dt}, which the C++ driver does not hold exactly "
                        f"(it reads {', '.join(CPP_CONST_DTYPES)})")
    return call_problem(_host_call(step, values, consts))


def cpp_unsupported_host_ops(manifest: Manifest) -> list[UnsupportedHostOp]:
    """Each host op of ``manifest`` the generated C++ driver cannot run, once per op and reason, with the
    number of steps and the entries, in order of first appearance (empty: the driver runs every entry).
    Steps reading a host weight compiled shape-only are not listed: that model can only be profiled,
    whatever runs it."""
    consts = {c.name: c for c in manifest.host_consts}
    found: dict = {}
    for name, entry in manifest.entries.items():
        for step in entry.steps:
            if isinstance(step, HostStep):
                why = _host_step_problem(step, entry.values, consts)
                if why is not None:
                    count, entries = found.get((step.op, why), (0, ()))
                    found[(step.op, why)] = (count + 1, entries + ((name,) if name not in entries else ()))
    return [UnsupportedHostOp(op, why, count, entries) for (op, why), (count, entries) in found.items()]


def cpp_ident(name: str) -> str:
    """The C++ identifier of a model name (its driver's namespace ``dlavm_<ident>`` and file names)."""
    s = re.sub(r"\W", "_", name)
    return s if s and not s[0].isdigit() else "m_" + s


def _cpp(e, dims, names: dict | None = None) -> str:
    """C++ of ``e``: dims read from ``d``; ``names`` maps further variables (a loop's) to C++ names."""
    e = sym.as_expr(e)
    if e.is_const:
        return f"int64_t({e.value})"
    return sym.to_cpp(e, names={**{d.name: f"d.{d.name}" for d in dims}, **(names or {})})


def _shape(shape, dims) -> str:
    return "{" + ", ".join(_cpp(d, dims) for d in shape) + "}"


_HEADER = """// Generated by dlavm for model '{model}', target '{target}' (ISA {isa}). Do not edit.
// Host driver: binds dynamic dims, patches and runs the AUX streams of the artifact.
#pragma once
#include <cstdint>
#include <vector>

#include "dlavm/artifact.h"
#include "dlavm/device.h"
#include "dlavm/host_ops.h"
#include "dlavm/stream.h"

namespace {ns} {{

// Dynamic dims (bounds in comments; checked when bound from input shapes).
struct Dims {{
{dims}
}};

// A host tensor, row-major: float data in f (float16 and float32 values), or integer and bool data in i
// (shape, f, i, is_int, numel(); dlavm/host_ops.h).
using Tensor = dlavm::host::Tensor;

class Driver {{
 public:
  // `art` must stay alive; it is verified by Artifact::open. Refuses (dlavm::ArtifactError) an artifact
  // other than the one this driver was generated for (its streams, weight and constant files, addresses,
  // counts and shapes), so every size the driver relies on is the verified manifest's.
  Driver(dlavm::Device& dev, const dlavm::Artifact& art);
  // Copy the packed weights to their device addresses (once per device).
  void load_weights();
{decls}
 private:
  void run_range(size_t k, const dlavm::Stream& s, size_t lo, size_t hi);
  dlavm::Device& dev_;
  const dlavm::Artifact& art_;
  std::vector<dlavm::Stream> streams_;
  std::vector<Tensor> consts_;
}};

}}  // namespace {ns}
"""

_SOURCE_HEAD = """// Generated by dlavm for model '{model}', target '{target}'. Do not edit.
#include "{model_file}.h"

#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "dlavm/fp16.h"
#include "dlavm/sym_rt.h"

namespace {ns} {{
namespace {{

struct Blob {{ const char* file; uint64_t addr; uint64_t nbytes; }};
const std::vector<Blob> kWeights = {{
{weights}
}};
struct StreamInfo {{ const char* file; uint64_t addr; uint32_t count; }};
const std::vector<StreamInfo> kStreams = {{
{streams}
}};
// The manifest fields this driver was generated for (Artifact::expect checks them): each stream's file,
// address, count and bytes (its sha256: the patches below are positions in those bytes), each weight
// blob's file, address and size, each host constant's file, dtype and shape.
const char* const kArtifactFacts = R"dlavm_json({facts})dlavm_json";

// Rewrite bits [lo, lo+width) of word `word` of entry `entry` with v (range- and bounds-checked).
[[maybe_unused]] void set_field(dlavm::Stream& s, size_t entry, int word, int lo, int width, int64_t v,
                                bool addr, const char* what) {{
  if (addr) v = dlavm_floordiv(v, 32);
  const uint64_t mask = width >= 32 ? 0xFFFFFFFFull : ((1ull << width) - 1);
  if (v < 0 || static_cast<uint64_t>(v) > mask)
    throw std::runtime_error(std::string("dynamic field ") + what + " = " + std::to_string(v) +
                             " does not fit its field");
  s.set_bits(entry, static_cast<size_t>(word), static_cast<unsigned>(lo), static_cast<unsigned>(width),
             static_cast<uint64_t>(v));
}}

[[maybe_unused]] int64_t product(const std::vector<int64_t>& shape) {{
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}}

[[maybe_unused]] void to_device(dlavm::Device& dev, uint64_t addr, const Tensor& t) {{
  std::vector<uint16_t> h(static_cast<size_t>(t.numel()));
  for (size_t k = 0; k < h.size(); ++k)
    h[k] = dlavm::float_to_fp16(t.is_int ? static_cast<float>(t.i[k]) : t.f[k]);
  dev.write_mem(addr, h.data(), h.size() * 2);
}}

// A device value read back as `dtype` (the Python runtime's astype: fp16 values, or argmax indices).
[[maybe_unused]] Tensor to_host(dlavm::Device& dev, uint64_t addr, std::vector<int64_t> shape, bool argmax,
                                dlavm::host::DType dtype) {{
  Tensor t;
  t.shape = std::move(shape);
  const size_t n = static_cast<size_t>(t.numel());
  if (argmax) {{
    std::vector<int32_t> rec(2 * n);
    dev.read_mem(addr, rec.data(), rec.size() * 4);
    t.is_int = true;
    for (size_t k = 0; k < n; ++k) t.i.push_back(rec[2 * k]);
  }} else {{
    std::vector<uint16_t> h(n);
    dev.read_mem(addr, h.data(), n * 2);
    for (size_t k = 0; k < n; ++k) t.f.push_back(dlavm::fp16_to_float(h[k]));
  }}
  return dlavm::host::cast(t, dtype);
}}


// The little-endian array of T in `raw`, each element widened to U.
template <typename T, typename U>
void widen(const std::vector<uint8_t>& raw, std::vector<U>& out) {{
  out.resize(raw.size() / sizeof(T));
  for (size_t k = 0; k < out.size(); ++k) {{
    T v;
    std::memcpy(&v, raw.data() + k * sizeof(T), sizeof(T));
    out[k] = static_cast<U>(v);
  }}
}}

// A host constant: `file` holds shape x dtype little-endian elements (numpy's dtype names); floats
// are kept as float32 (fp16 exactly), integers and bool as int64. A file of another size is refused.
[[maybe_unused]] Tensor load_const(const dlavm::Artifact& art, const char* file, const std::string& dtype,
                                   size_t elem_bytes, std::vector<int64_t> shape) {{
  Tensor t;
  t.shape = std::move(shape);
  const std::vector<uint8_t> raw = art.read_file(file);
  const size_t n = static_cast<size_t>(t.numel());
  if (raw.size() != n * elem_bytes)
    throw std::runtime_error(std::string("host constant ") + file + ": " + std::to_string(raw.size()) +
                             " bytes, but its shape and dtype " + dtype + " need " + std::to_string(n * elem_bytes));
  t.is_int = !(dtype == "float32" || dtype == "float16");
  if (dtype == "float32") widen<float>(raw, t.f);
  else if (dtype == "float16") {{
    std::vector<uint16_t> h;
    widen<uint16_t>(raw, h);
    for (uint16_t x : h) t.f.push_back(dlavm::fp16_to_float(x));
  }}
  else if (dtype == "int64") widen<int64_t>(raw, t.i);
  else if (dtype == "int32") widen<int32_t>(raw, t.i);
  else if (dtype == "int16") widen<int16_t>(raw, t.i);
  else if (dtype == "int8") widen<int8_t>(raw, t.i);
  else if (dtype == "uint8" || dtype == "bool") widen<uint8_t>(raw, t.i);
  else throw std::runtime_error(std::string("host constant ") + file + ": dtype " + dtype +
                                " is not supported by the C++ driver");
  return t;
}}

// A float32 [rows, cols] host constant stored quantised (HostConst.quant, dlavm/runtime/host_quant.py):
// `file` int8 (one byte per element) or int4 (two per byte, low nibble first, rows padded to even),
// `scales` fp16 [rows, ceil(cols / group)]; value = q * scale.
[[maybe_unused]] Tensor load_const_quant(const dlavm::Artifact& art, const char* file, const char* scales,
                                         bool int4, int64_t group, int64_t rows, int64_t cols) {{
  Tensor t;
  t.shape = {{rows, cols}};
  const std::vector<uint8_t> raw = art.read_file(file), sraw = art.read_file(scales);
  const int64_t row_bytes = int4 ? (cols + 1) / 2 : cols, groups = (cols + group - 1) / group;
  if (static_cast<int64_t>(raw.size()) != rows * row_bytes || static_cast<int64_t>(sraw.size()) != rows * groups * 2)
    throw std::runtime_error(std::string("host constant ") + file + ": its sizes do not match its shape");
  std::vector<uint16_t> h;
  widen<uint16_t>(sraw, h);
  t.f.resize(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {{
    for (int64_t c = 0; c < cols; ++c) {{
      int q;
      if (int4) {{
        const int nib = (raw[static_cast<size_t>(r * row_bytes + c / 2)] >> (4 * (c % 2))) & 0x0F;
        q = nib > 7 ? nib - 16 : nib;
      }} else {{
        q = static_cast<int8_t>(raw[static_cast<size_t>(r * row_bytes + c)]);
      }}
      t.f[static_cast<size_t>(r * cols + c)] =
          static_cast<float>(q) * dlavm::fp16_to_float(h[static_cast<size_t>(r * groups + c / group)]);
    }}
  }}
  return t;
}}

}}  // namespace

Driver::Driver(dlavm::Device& dev, const dlavm::Artifact& art) : dev_(dev), art_(art) {{
  art_.expect(dlavm::json::parse(kArtifactFacts), "this driver");
  dlavm::require_target(dev_, art_.manifest().at("target").at("name").as_string());  // as named at HELLO
  for (const StreamInfo& s : kStreams) {{
    streams_.emplace_back(art_.read_file(s.file));
    if (streams_.back().count() != s.count)
      throw std::runtime_error(std::string("stream ") + s.file + ": " + std::to_string(streams_.back().count()) +
                               " entries, the driver was generated for " + std::to_string(s.count));
  }}
{consts}
}}

void Driver::load_weights() {{
  for (const Blob& w : kWeights) {{
    const std::vector<uint8_t> bytes = art_.read_file(w.file);
    if (bytes.size() != w.nbytes)
      throw std::runtime_error(std::string("weight blob ") + w.file + ": " + std::to_string(bytes.size()) +
                               " bytes, the driver was generated for " + std::to_string(w.nbytes));
    dev_.write_mem(w.addr, bytes);
  }}
}}

// Entries [lo, hi) of stream k (patched as `s`) written to the device, run and waited for.
void Driver::run_range(size_t k, const dlavm::Stream& s, size_t lo, size_t hi) {{
  if (lo >= hi) return;
  if (hi > s.count() || hi > kStreams[k].count)
    throw std::runtime_error("stream launch [" + std::to_string(lo) + ", " + std::to_string(hi) +
                             ") past the stream's " + std::to_string(kStreams[k].count) + " entries");
  const uint64_t addr = kStreams[k].addr + lo * dlavm::kInsnBytes;
  dev_.write_mem(addr, s.bytes().data() + lo * dlavm::kInsnBytes, (hi - lo) * dlavm::kInsnBytes);
  dev_.run_stream(addr, static_cast<uint32_t>(hi - lo));
  dev_.wait();
}}
"""


def generate_driver(build, model: str) -> dict:
    """``{relpath: bytes}`` of the driver files for ``build`` (see module docstring).

    Raises :class:`DriverUnsupportedError` naming every host op the C++ driver cannot run."""
    m = build.manifest
    unsupported = cpp_unsupported_host_ops(m)
    if unsupported:
        raise DriverUnsupportedError(f"model '{model}': the C++ driver cannot run "
                                     + "; ".join(map(str, unsupported)))
    ns = "dlavm_" + cpp_ident(model)
    mf = cpp_ident(model)
    dims = []
    for lf in build.lowered:
        for d in lf.dims:
            if d not in dims:
                dims.append(d)
    stream_names = list(m.streams)
    sidx = {n: i for i, n in enumerate(stream_names)}
    consts = list(m.host_consts)
    cidx = {c.name: i for i, c in enumerate(consts)}
    decls, bodies = [], []
    for lf in build.lowered:
        fname = cpp_ident(lf.name)
        if lf.state_dims:
            names = ", ".join(d.name for d in lf.state_dims)
            decls.append(f"  // Entry '{lf.name}': inputs in signature order; the state dims ({names}) are read from\n"
                         f"  // `state` (doc/llm.md); returns its outputs.\n"
                         f"  std::vector<Tensor> {fname}(const std::vector<Tensor>& inputs, const Dims& state);")
        else:
            decls.append(f"  // Entry '{lf.name}': inputs in signature order; returns its outputs.\n"
                         f"  std::vector<Tensor> {fname}(const std::vector<Tensor>& inputs);")
        bodies.append(_entry(lf, m, build, dims, sidx, cidx))
    dims_txt = "\n".join(f"  int64_t {d.name} = 0;  // [{d.lo}, {d.hi}]" for d in dims) or "  int unused = 0;"
    header = _HEADER.format(model=model, target=m.target.name, isa=m.isa_version, ns=ns,
                            dims=dims_txt, decls="\n".join(decls))
    weights = ",\n".join(f'  {{"{w.file}", {w.addr:#x}ull, {w.nbytes}ull}}' for w in m.weights)
    streams = ",\n".join(f'  {{"{m.streams[n].file}", {m.streams[n].addr:#x}ull, '
                         f'{m.streams[n].count}u}}' for n in stream_names)
    consts_txt = "\n".join(
        f'  consts_.push_back(load_const_quant(art_, "{c.file}", "{c.quant.scales}", '
        f'{"true" if c.quant.format == "int4" else "false"}, {c.quant.group}, {c.shape[0]}, {c.shape[1]}));'
        if c.quant is not None else
        f'  consts_.push_back(load_const(art_, "{c.file}", "{_dtype_name(c.dtype)}", '
        f'{CPP_CONST_DTYPES[_dtype_name(c.dtype)]}, {{{", ".join(str(int(x)) for x in c.shape)}}}));'
        for c in consts)
    source = _SOURCE_HEAD.format(model=model, target=m.target.name, ns=ns, model_file=mf, weights=weights,
                                 streams=streams, consts=consts_txt, facts=_artifact_facts(m)) + "\n".join(bodies) + \
        f"\n}}  // namespace {ns}\n"
    files = {f"driver/{mf}.h": header.encode(), f"driver/{mf}.cc": source.encode()}
    if not build.lowered[0].state_dims:
        lf = build.lowered[0]
        files[f"driver/{mf}_main.cc"] = run_main(lf, ns, mf, dims, _shape, cpp_ident(lf.name)).encode()
    llm = m.llm
    if llm:
        batched = all(e in m.entries for e in BATCH_ENTRIES.values()) and ROWS_DIM in m.dims
        files[f"driver/{mf}_llm.cc"] = llm_model(llm, ns, mf, cpp_ident(llm.entries["greedy"]),
                                                 cpp_ident(llm.entries["logits"]),
                                                 m.dims[ROWS_DIM].hi if batched else 1).encode()
        files[f"driver/{mf}_generate.cc"] = generate_main(llm, mf).encode()
    return files


def _stream_patches(st, dims, k: int) -> list:
    """C++ lines patching stream ``st`` (index ``k``) for the dims with every loop at its first trip, and
    defining ``patch_loop<j>(t)``, which restores loop j's entries and re-patches them for trip ``t``."""
    loop_of = {}
    for j, lp in enumerate(st.loops):
        loop_of.update((i, j) for i in range(lp["start"], lp["end"]))
    lvars = {lp["var"]: f"lv_{lp['var']}" for lp in st.loops}

    def cpp(e):
        return _cpp(e, dims, lvars)

    body: dict = {}   # loop (or None) -> lines
    guarded = {}
    for gi, g in enumerate(st.guards):
        j = loop_of.get(g["index"])
        guarded[g["index"]] = f"on{g['index']}"
        body.setdefault(j, []).append(f"const bool on{g['index']} = {cpp(st.exprs[('guard', gi)])} != 0;")
        body[j].append(f"if (!on{g['index']}) s.disable({g['index']});")
    for pi, p in enumerate(st.patches):
        j = loop_of.get(p["index"])
        cond = f"if ({guarded[p['index']]}) " if p["index"] in guarded else ""
        body.setdefault(j, []).append(
            f"{cond}set_field(s, {p['index']}, {p['word']}, {p['lo']}, {p['width']}, "
            f"{cpp(st.exprs[('patch', pi)])}, {'true' if p['kind'] == 'addr' else 'false'}, "
            f"\"{st.insns[p['index']].op}.{p['field']}\");")
    L = [f"    {line}" for line in body.get(None, [])]
    for j, lp in enumerate(st.loops):
        v = lvars[lp["var"]]
        L.append(f"    auto patch_loop{j} = [&](int64_t {v}) {{")
        L.append(f"      s.copy_entries(streams_[{k}], {lp['start']}, {lp['end']});")
        L += [f"      {line}" for line in body.get(j, [])]
        L.append(f"      (void){v};")
        L.append("    };")
        L.append(f"    patch_loop{j}(0);")
    return L


def _artifact_facts(m: Manifest) -> str:
    """The JSON text of the manifest fields the generated driver carries as constants (``kArtifactFacts``)."""
    facts = {
        "streams": {n: {"file": s.file, "addr": s.addr, "count": s.count} for n, s in m.streams.items()},
        "weights": [{"file": w.file, "addr": w.addr, "nbytes": w.nbytes} for w in m.weights],
        "host_consts": [{"name": c.name, "file": c.file, "dtype": c.dtype, "shape": list(c.shape),
                         "quant": None if c.quant is None else {"format": c.quant.format, "group": c.quant.group,
                                                                "scales": c.quant.scales}}
                        for c in m.host_consts],
        "files": {s.file: m.files[s.file] for s in m.streams.values()},
    }
    text = json.dumps(facts, separators=(",", ":"))
    if ")dlavm_json" in text:   # cannot end the raw string early: names are checked, but say why if it did
        raise DriverUnsupportedError("a file or stream name contains ')dlavm_json'")
    return text


def _entry(lf, m, build, dims, sidx, cidx) -> str:
    name = cpp_ident(lf.name)
    vals = lf.values
    var = {vid: f"v_{vid}" for vid in vals}
    sig = "const std::vector<Tensor>& inputs, const Dims& state" if lf.state_dims else \
        "const std::vector<Tensor>& inputs"
    L = [f"std::vector<Tensor> Driver::{name}({sig}) {{",
         f"  if (inputs.size() != {len(lf.inputs)}) throw std::runtime_error(\"entry '{lf.name}' takes "
         f"{len(lf.inputs)} inputs\");",
         "  Dims d;"]
    bound = set()
    for k, (pname, vid) in enumerate(lf.inputs):
        for j, e in enumerate(lf.shapes[vid]):
            if e.kind == "var" and e.name not in bound:
                bound.add(e.name)
                L.append(f"  d.{e.name} = inputs[{k}].shape.at({j});")
                L.append(f"  if (d.{e.name} < {e.lo} || d.{e.name} > {e.hi})\n"
                         f"    throw std::runtime_error(\"input '{pname}': dim {e.name}=\" + "
                         f"std::to_string(d.{e.name}) + \" is outside [{e.lo}, {e.hi}]\");")
    for e in lf.state_dims:
        L.append(f"  d.{e.name} = state.{e.name};")
        L.append(f"  if (d.{e.name} < {e.lo} || d.{e.name} > {e.hi})\n"
                 f"    throw std::runtime_error(\"dim {e.name}=\" + std::to_string(d.{e.name}) + "
                 f"\" is outside [{e.lo}, {e.hi}]\");")
    consts_by_name = {c.name: c for c in m.host_consts}
    llm = m.llm
    if lf.state_dims and llm and m.entries[lf.name].requires:   # not a batched-decode entry's (none)
        sd, cd = llm.seq_dim, llm.ctx_dim
        L.append(f"  if (d.{sd} > d.{cd}) throw std::runtime_error(\"{sd} <= {cd} does not hold: {sd}=\" + "
                 f"std::to_string(d.{sd}) + \", {cd}=\" + std::to_string(d.{cd}));")
    for k, (pname, vid) in enumerate(lf.inputs):
        L.append(f"  if (inputs[{k}].shape != std::vector<int64_t>{_shape(lf.shapes[vid], dims)}) "
                 f"throw std::runtime_error(\"input '{pname}' has the wrong shape\");")
        L.append(f"  const Tensor& {var[vid]} = inputs[{k}];")
    for step in m.entries[lf.name].steps:
        if isinstance(step, ToDeviceStep):
            src = step.src
            ref = var[src.value] if isinstance(src, ValueRef) else f"consts_[{cidx[src.const]}]"
            L.append(f"  to_device(dev_, {vals[step.dst]['addr']:#x}ull, {ref});")
        elif isinstance(step, ToHostStep):
            v = vals[step.src]
            L.append(f"  Tensor {var[step.dst]} = to_host(dev_, {v['addr']:#x}ull, "
                     f"{_shape(lf.shapes[step.dst], dims)}, {'true' if v['layout'] == 'argmax' else 'false'}, "
                     f"dlavm::host::DType::{CPP_DTYPES[_dtype_name(step.dtype)]});")
        elif isinstance(step, HostStep):
            args = []
            for a in step.args:
                if isinstance(a, ValueRef):
                    args.append(var[a.value])
                elif isinstance(a, ConstRef) and a.const not in cidx:  # a shape-only model: no weight data
                    return (f"std::vector<Tensor> Driver::{name}({sig.replace(' inputs', '').replace(' state', '')}) {{\n"
                            f"  throw std::runtime_error(\"entry '{lf.name}': the artifact has no data for host "
                            f"weight '{a.const}' (compiled shape-only); it can only be profiled\");\n}}\n")
                elif isinstance(a, ConstRef):
                    args.append(f"consts_[{cidx[a.const]}]")
                else:
                    args.append(None)
            # cpp_unsupported_host_ops refused every step call_problem refuses before generation started
            call = _host_call(step, m.entries[lf.name].values, consts_by_name, args, lf.host_attrs[step.dst],
                              lambda e: _cpp(e, dims))
            if L[-1] == "  host_step = nullptr;":   # host steps in a row: the next label replaces it
                L.pop()
            L.append(f"  host_step = \"host op '{step.op}' (writing {step.dst})\";")
            L.append(f"  Tensor {var[step.dst]} = {emit_call(call)};")
            L.append("  host_step = nullptr;")
        else:
            sname = step.stream
            st = build.streams[sname]
            k = sidx[sname]
            L.append(f"  {{  // stream {sname}: {len(st.insns)} entries, {len(st.loops)} loops")
            L.append(f"    dlavm::Stream s = streams_[{k}];")
            L += _stream_patches(st, dims, k)
            L.append("    size_t lo = 0;  // first entry of the next launch (doc/backend.md, AUX streams)")
            for j, lp in enumerate(st.loops):
                L.append(f"    {{  // loop {lp['var']}: entries [{lp['start']}, {lp['end']})")
                L.append(f"      const int64_t n = {_cpp(st.exprs[('loop', j)], dims)};")
                L.append(f"      if (n < 0 || n > {1 << 24}) throw std::runtime_error(\"stream {sname} loop {j}: "
                         f"trip count \" + std::to_string(n) + \" outside [0, {1 << 24}]\");")
                L.append("      if (n >= 2) {")
                L.append(f"        run_range({k}, s, lo, {lp['end']});")
                L.append(f"        for (int64_t t = 1; t < n - 1; ++t) {{ patch_loop{j}(t); "
                         f"run_range({k}, s, {lp['start']}, {lp['end']}); }}")
                L.append(f"        patch_loop{j}(n - 1);")
                L.append(f"        lo = {lp['start']};")
                L.append("      }")
                L.append("    }")
            L.append(f"    run_range({k}, s, lo, {len(st.insns)});")
            L.append("  }")
    outs = ", ".join(var[v] for v in lf.outputs)
    L.append(f"  return {{{outs}}};")
    if any(isinstance(s, HostStep) for s in m.entries[lf.name].steps):
        # a host kernel's error names its step, as the Python runtime does; any other error passes unchanged
        start = L.index("  Dims d;")
        L[start:] = (["  const char* host_step = nullptr;  // the host step running, for its error message", "  try {"]
                     + ["  " + line for line in L[start:]]
                     + ["  } catch (const std::exception& e) {",
                        "    if (host_step == nullptr) throw;",
                        f"    throw std::runtime_error(std::string(\"entry '{lf.name}': \") + host_step + "
                        f"\" cannot run: \" + e.what());",
                        "  }"])
    L.append("}")
    return "\n".join(L) + "\n"


__all__ = ["generate_driver", "cpp_unsupported_host_ops", "CPP_HOST_OPS", "CPP_CONST_DTYPES",
           "DriverUnsupportedError", "UnsupportedHostOp"]
