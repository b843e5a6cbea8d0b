"""Host C++ driver generator: a readable ``driver/<model>.h/.cc`` pair plus ``<model>_main.cc``.

The generated driver uses the C++ runtime (clib/include/dlavm: ``Device``,
``Artifact``, ``fp16.h``, ``sym_rt.h``) and does what the Python runtime
does, with every dynamic value computed by code exported from the sym
expressions (``dlavm.sym.to_cpp``): bind dims from input shapes (bounds
checked), convert inputs to fp16, patch each stream (dynamic fields,
guarded entries -> ``nop``), upload and run it, read the outputs. Host
fallback ops supported in C++: ``CPP_HOST_OPS``, with host constants of the
dtypes in ``CPP_CONST_DTYPES``; :func:`cpp_unsupported_host_ops` lists what
a model needs beyond that, and :func:`generate_driver` refuses such a model
(the compiler reports it at compile time). ``main`` reads
raw little-endian input files and writes raw output files so tests can
compare with the Python runtime bit for bit. Compiles with
``g++ -std=c++17 -O2 -Wall -Werror``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from dlavm import sym
from dlavm.artifact import ConstRef, HostStep, Manifest, ToDeviceStep, ToHostStep, ValueRef

CPP_HOST_OPS = ("embedding", "reshape", "arange")
#: dtypes of host constants the generated ``load_const`` reads, with their element size in bytes:
#: floats are held as float32, integers and bool as int64, both exactly.
CPP_CONST_DTYPES = {"float32": 4, "float16": 2, "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1,
                    "bool": 1}


class DriverUnsupportedError(ValueError):
    """The C++ driver cannot run this model (names every host op it lacks and why)."""


@dataclass(frozen=True)
class UnsupportedHostOp:
    """One host step of an entry that the generated C++ driver cannot run."""
    entry: str
    op: str
    reason: str

    def __str__(self) -> str:
        return f"entry '{self.entry}': host op '{self.op}': {self.reason}"


def _dtype_name(dtype: str) -> str:
    """numpy's name for a manifest dtype ('f2' and 'float16' both give 'float16')."""
    return np.dtype(dtype).name


def _host_step_problem(step: HostStep, values: dict, consts: dict) -> str | None:
    """Why the C++ driver cannot run host ``step`` (None when it can). ``values``: the entry's
    value records; ``consts``: host constant name -> manifest record (absent: no data)."""
    op = step.op
    if op not in CPP_HOST_OPS:
        return f"no C++ implementation (the C++ driver runs {', '.join(CPP_HOST_OPS)})"
    for a in step.args:
        if isinstance(a, ConstRef) and a.const in consts:
            dt = _dtype_name(consts[a.const].dtype)
            if dt not in CPP_CONST_DTYPES:
                return (f"host constant '{a.const}' has dtype {dt}, which the C++ driver does not hold exactly "
                        f"(it reads {', '.join(CPP_CONST_DTYPES)})")
    tensors = [a for a in step.args if isinstance(a, (ValueRef, ConstRef))]

    def dtype(a):
        return _dtype_name(values[a.value].dtype if isinstance(a, ValueRef) else
                           consts[a.const].dtype if a.const in consts else a.dtype)

    if op == "embedding":
        if len(step.args) != 2 or len(tensors) != 2:
            return "the C++ embedding takes a table tensor and an index tensor"
        if not np.issubdtype(np.dtype(dtype(tensors[0])), np.floating):
            return f"the C++ embedding needs a float table, not {dtype(tensors[0])}"
        if np.dtype(dtype(tensors[1])).kind not in "iub":
            return f"the C++ embedding needs integer indices, not {dtype(tensors[1])}"
    elif op == "reshape":
        if len(step.args) != 1 or len(tensors) != 1:
            return "the C++ reshape takes one tensor"
    elif op == "arange" and step.args:
        return "the C++ arange takes no tensor operands"
    return None


def cpp_unsupported_host_ops(manifest: Manifest) -> list[UnsupportedHostOp]:
    """Every host step of ``manifest`` the generated C++ driver cannot run, with the reason, in entry
    and step order (empty: the driver runs every entry). Steps reading a host weight compiled
    shape-only are not listed: that model can only be profiled, whatever runs it."""
    consts = {c.name: c for c in manifest.host_consts}
    out = []
    for name, entry in manifest.entries.items():
        for step in entry.steps:
            if isinstance(step, HostStep):
                why = _host_step_problem(step, entry.values, consts)
                if why is not None:
                    out.append(UnsupportedHostOp(name, step.op, why))
    return out


def _ident(name: str) -> str:
    s = re.sub(r"\W", "_", name)
    return s if s and not s[0].isdigit() else "m_" + s


def _cpp(e, dims) -> str:
    e = sym.as_expr(e)
    if e.is_const:
        return f"int64_t({e.value})"
    return sym.to_cpp(e, names={d.name: f"d.{d.name}" for d in dims})


def _shape(shape, dims) -> str:
    return "{" + ", ".join(_cpp(d, dims) for d in shape) + "}"


_HEADER = """// Generated by dlavm for model '{model}', target '{target}' (ISA {isa}). Do not edit.
// Host driver: binds dynamic dims, patches and runs the AUX streams of the artifact.
#pragma once
#include <cstdint>
#include <vector>

#include "dlavm/artifact.h"
#include "dlavm/device.h"

namespace {ns} {{

// Dynamic dims (bounds in comments; checked when bound from input shapes).
struct Dims {{
{dims}
}};

// A host tensor, row-major: float32 data in f, or integer data in i.
struct Tensor {{
  std::vector<int64_t> shape;
  std::vector<float> f;
  std::vector<int64_t> i;
  bool is_int = false;
  int64_t numel() const;
}};

class Driver {{
 public:
  // `art` must stay alive; it is verified by Artifact::open.
  Driver(dlavm::Device& dev, const dlavm::Artifact& art);
  // Copy the packed weights to their device addresses (once per device).
  void load_weights();
{decls}
 private:
  void run_stream(size_t k, std::vector<uint8_t>& bytes);
  dlavm::Device& dev_;
  const dlavm::Artifact& art_;
  std::vector<std::vector<uint8_t>> streams_;
  std::vector<Tensor> consts_;
}};

}}  // namespace {ns}
"""

_SOURCE_HEAD = """// Generated by dlavm for model '{model}', target '{target}'. Do not edit.
#include "{model_file}.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "dlavm/fp16.h"
#include "dlavm/sym_rt.h"

namespace {ns} {{
namespace {{

struct Blob {{ const char* file; uint64_t addr; }};
const std::vector<Blob> kWeights = {{
{weights}
}};
struct StreamInfo {{ const char* file; uint64_t addr; uint32_t count; }};
const std::vector<StreamInfo> kStreams = {{
{streams}
}};

// Rewrite bits [lo, lo+width) of word `word` of entry `entry` with v (range-checked).
[[maybe_unused]] void set_field(std::vector<uint8_t>& s, size_t entry, int word, int lo, int width, int64_t v,
                                bool addr, const char* what) {{
  if (addr) v = dlavm_floordiv(v, 32);
  const uint64_t mask = width >= 32 ? 0xFFFFFFFFull : ((1ull << width) - 1);
  if (v < 0 || static_cast<uint64_t>(v) > mask)
    throw std::runtime_error(std::string("dynamic field ") + what + " = " + std::to_string(v) +
                             " does not fit its field");
  uint8_t* p = s.data() + entry * dlavm::kInsnBytes + 4 * word;
  uint32_t w;
  std::memcpy(&w, p, 4);
  w = static_cast<uint32_t>((w & ~(mask << lo)) | (static_cast<uint64_t>(v) << lo));
  std::memcpy(p, &w, 4);
}}

// Turn entry `entry` into a nop keeping its wait mask (an iteration past a loop's trip count).
[[maybe_unused]] void disable(std::vector<uint8_t>& s, size_t entry) {{
  uint8_t* p = s.data() + entry * dlavm::kInsnBytes;
  uint32_t w0;
  std::memcpy(&w0, p, 4);
  w0 &= 0xFF00u;
  std::memset(p, 0, dlavm::kInsnBytes);
  std::memcpy(p, &w0, 4);
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

[[maybe_unused]] Tensor to_host(dlavm::Device& dev, uint64_t addr, std::vector<int64_t> shape, bool argmax,
                                bool as_int) {{
  Tensor t;
  t.shape = std::move(shape);
  const size_t n = static_cast<size_t>(product(t.shape));
  t.is_int = as_int;
  if (argmax) {{
    std::vector<int32_t> rec(2 * n);
    dev.read_mem(addr, rec.data(), rec.size() * 4);
    for (size_t k = 0; k < n; ++k) t.i.push_back(rec[2 * k]);
    return t;
  }}
  std::vector<uint16_t> h(n);
  dev.read_mem(addr, h.data(), n * 2);
  for (size_t k = 0; k < n; ++k) {{
    const float v = dlavm::fp16_to_float(h[k]);
    if (as_int) t.i.push_back(static_cast<int64_t>(v)); else t.f.push_back(v);
  }}
  return t;
}}

[[maybe_unused]] Tensor embedding(const Tensor& table, const Tensor& ids) {{
  Tensor out;
  const int64_t dim = table.shape.back(), rows = table.shape.front();
  out.shape = ids.shape;
  out.shape.push_back(dim);
  for (int64_t id : ids.i) {{
    if (id < 0 || id >= rows) throw std::runtime_error("embedding index " + std::to_string(id) + " out of range");
    out.f.insert(out.f.end(), table.f.begin() + id * dim, table.f.begin() + (id + 1) * dim);
  }}
  return out;
}}

[[maybe_unused]] Tensor arange(int64_t start, int64_t end, int64_t step, bool is_int) {{
  Tensor out;
  out.is_int = is_int;
  for (int64_t v = start; v < end; v += step) {{
    if (is_int) out.i.push_back(v); else out.f.push_back(static_cast<float>(v));
  }}
  out.shape = {{static_cast<int64_t>(out.is_int ? out.i.size() : out.f.size())}};
  return out;
}}

[[maybe_unused]] Tensor reshape(Tensor t, std::vector<int64_t> shape) {{
  if (product(shape) != t.numel()) throw std::runtime_error("reshape: element count differs");
  t.shape = std::move(shape);
  return t;
}}

// Element k of a little-endian array of T at p, widened to U.
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

}}  // namespace

int64_t Tensor::numel() const {{ return product(shape); }}

Driver::Driver(dlavm::Device& dev, const dlavm::Artifact& art) : dev_(dev), art_(art) {{
  for (const StreamInfo& s : kStreams) streams_.push_back(art_.read_file(s.file));
{consts}
}}

void Driver::load_weights() {{
  for (const Blob& w : kWeights) dev_.write_mem(w.addr, art_.read_file(w.file));
}}

void Driver::run_stream(size_t k, std::vector<uint8_t>& bytes) {{
  dev_.write_mem(kStreams[k].addr, bytes);
  dev_.run_stream(kStreams[k].addr, kStreams[k].count);
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
    ns = "dlavm_" + _ident(model)
    mf = _ident(model)
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
        fname = _ident(lf.name)
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
    weights = ",\n".join(f'  {{"{w.file}", {w.addr:#x}ull}}' for w in m.weights)
    streams = ",\n".join(f'  {{"{m.streams[n].file}", {m.streams[n].addr:#x}ull, '
                         f'{m.streams[n].count}u}}' for n in stream_names)
    consts_txt = "\n".join(
        f'  consts_.push_back(load_const(art_, "{c.file}", "{_dtype_name(c.dtype)}", '
        f'{CPP_CONST_DTYPES[_dtype_name(c.dtype)]}, {{{", ".join(str(int(x)) for x in c.shape)}}}));'
        for c in consts)
    source = _SOURCE_HEAD.format(model=model, target=m.target.name, ns=ns, model_file=mf, weights=weights,
                                 streams=streams, consts=consts_txt) + "\n".join(bodies) + \
        f"\n}}  // namespace {ns}\n"
    files = {f"driver/{mf}.h": header.encode(), f"driver/{mf}.cc": source.encode()}
    if not build.lowered[0].state_dims:
        files[f"driver/{mf}_main.cc"] = _main(build.lowered[0], ns, mf, dims).encode()
    llm = m.llm
    if llm:
        files[f"driver/{mf}_generate.cc"] = _generate_main(llm, ns, mf).encode()
    return files


def _entry(lf, m, build, dims, sidx, cidx) -> str:
    name = _ident(lf.name)
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
    llm = m.llm
    if lf.state_dims and llm:
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
            as_int = "true" if not step.dtype.startswith("float") else "false"
            L.append(f"  Tensor {var[step.dst]} = to_host(dev_, {v['addr']:#x}ull, "
                     f"{_shape(lf.shapes[step.dst], dims)}, {'true' if v['layout'] == 'argmax' else 'false'}, "
                     f"{as_int});")
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
            # cpp_unsupported_host_ops refused every other form before generation started
            if step.op == "embedding":
                L.append(f"  Tensor {var[step.dst]} = embedding({args[0]}, {args[1]});")
            elif step.op == "arange":
                a = lf.host_attrs[step.dst]
                is_int = np.dtype(str(a.get("dtype", "int64"))).kind in "iub"
                L.append(f"  Tensor {var[step.dst]} = arange({_cpp(a['start'], dims)}, {_cpp(a['end'], dims)}, "
                         f"{int(a.get('step', 1))}, {'true' if is_int else 'false'});")
            else:
                L.append(f"  Tensor {var[step.dst]} = reshape({args[0]}, {_shape(lf.shapes[step.dst], dims)});")
        else:
            sname = step.stream
            st = build.streams[sname]
            k = sidx[sname]
            L.append(f"  {{  // stream {sname}: {len(st.insns)} entries")
            L.append(f"    std::vector<uint8_t> s = streams_[{k}];")
            guarded = {}
            for gi, g in enumerate(st.guards):
                guarded[g["index"]] = f"on{g['index']}"
                L.append(f"    const bool on{g['index']} = {_cpp(st.exprs[('guard', gi)], dims)} != 0;")
                L.append(f"    if (!on{g['index']}) disable(s, {g['index']});")
            for pi, p in enumerate(st.patches):
                cond = f"if ({guarded[p['index']]}) " if p["index"] in guarded else ""
                L.append(f"    {cond}set_field(s, {p['index']}, {p['word']}, {p['lo']}, {p['width']}, "
                         f"{_cpp(st.exprs[('patch', pi)], dims)}, {'true' if p['kind'] == 'addr' else 'false'}, "
                         f"\"{st.insns[p['index']].op}.{p['field']}\");")
            L.append(f"    run_stream({k}, s);")
            L.append("  }")
    outs = ", ".join(var[v] for v in lf.outputs)
    L.append(f"  return {{{outs}}};")
    L.append("}")
    return "\n".join(L) + "\n"


def _main(lf, ns, mf, dims) -> str:
    reads = []
    for k, (pname, vid) in enumerate(lf.inputs):
        dt = lf.values[vid]["dtype"]
        is_int = dt.startswith("int")
        reads.append(f"  {{  // input '{pname}' ({dt})\n"
                     f"    Tensor t;\n    t.shape = {_shape(lf.shapes[vid], dims)};\n"
                     f"    t.is_int = {'true' if is_int else 'false'};\n"
                     f"    read_raw(argv[3 + ndims + {k}], t);\n    inputs.push_back(std::move(t));\n  }}")
    dim_args = "\n".join(f"    if (key == \"{d.name}\") d.{d.name} = std::stoll(val);" for d in dims)
    n_in = len(lf.inputs)
    return f"""// Generated by dlavm. Usage: {mf}_main DEVICE_URI ARTIFACT_DIR DIM=VALUE... IN.bin... OUT_PREFIX
// Reads raw little-endian inputs (float32, or int64 for integer inputs), runs entry '{lf.name}',
// writes OUT_PREFIX<i>.bin (float32, or int64) per output and prints the device cycles.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>

#include "{mf}.h"

using namespace {ns};

static void read_raw(const char* path, Tensor& t) {{
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(std::string("cannot open ") + path);
  const size_t n = static_cast<size_t>(t.numel());
  if (t.is_int) {{ t.i.resize(n); f.read(reinterpret_cast<char*>(t.i.data()), static_cast<std::streamsize>(n * 8)); }}
  else {{ t.f.resize(n); f.read(reinterpret_cast<char*>(t.f.data()), static_cast<std::streamsize>(n * 4)); }}
  if (!f) throw std::runtime_error(std::string("input file too short: ") + path);
}}

int main(int argc, char** argv) {{
  try {{
    const int ndims = {len(dims)};
    if (argc != 3 + ndims + {n_in} + 1) {{
      std::cerr << "usage: " << argv[0] << " DEVICE_URI ARTIFACT_DIR DIM=VALUE... IN.bin... OUT_PREFIX\\n";
      return 2;
    }}
    Dims d;
    for (int k = 0; k < ndims; ++k) {{
      const std::string arg = argv[3 + k];
      const size_t eq = arg.find('=');
      const std::string key = arg.substr(0, eq), val = arg.substr(eq + 1);
{dim_args}
    }}
    dlavm::Artifact art = dlavm::Artifact::open(argv[2]);
    auto dev = dlavm::open_device(argv[1]);
    Driver drv(*dev, art);
    drv.load_weights();
    std::vector<Tensor> inputs;
{chr(10).join(reads)}
    const uint64_t c0 = dev->cycles();
    std::vector<Tensor> outs = drv.{_ident(lf.name)}(inputs);
    const uint64_t c1 = dev->cycles();
    for (size_t k = 0; k < outs.size(); ++k) {{
      const std::string path = std::string(argv[3 + ndims + {n_in}]) + std::to_string(k) + ".bin";
      std::ofstream f(path, std::ios::binary);
      if (outs[k].is_int) f.write(reinterpret_cast<const char*>(outs[k].i.data()),
                                  static_cast<std::streamsize>(outs[k].i.size() * 8));
      else f.write(reinterpret_cast<const char*>(outs[k].f.data()),
                   static_cast<std::streamsize>(outs[k].f.size() * 4));
    }}
    std::printf("cycles %llu\\n", static_cast<unsigned long long>(c1 - c0));
    return 0;
  }} catch (const std::exception& e) {{
    std::cerr << "error: " << e.what() << "\\n";
    return 1;
  }}
}}
"""


def _generate_main(llm, ns, mf) -> str:
    """``<model>_generate``: the greedy generation loop of doc/llm.md in C++ (prefill, then one decode
    call per token), printing each token id as it is produced."""
    cd, entry = llm.ctx_dim, _ident(llm.entries["greedy"])
    return f"""// Generated by dlavm. Usage: {mf}_generate DEVICE_URI ARTIFACT_DIR PROMPT_IDS.bin MAX_NEW [EOS_ID]
// Greedy generation (doc/llm.md): PROMPT_IDS.bin holds the prompt as raw little-endian int64 token ids.
// Prefill runs the prompt (past = 0); each decode call runs the last token (seq = 1) against the
// device KV cache; the loop stops after MAX_NEW tokens, at EOS_ID, or when the cache ({llm.max_ctx}
// positions) is full. Prints one token id per line as it is produced, then the reason it stopped.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>

#include "{mf}.h"

using namespace {ns};

int main(int argc, char** argv) {{
  try {{
    if (argc != 5 && argc != 6) {{
      std::cerr << "usage: " << argv[0] << " DEVICE_URI ARTIFACT_DIR PROMPT_IDS.bin MAX_NEW [EOS_ID]\\n";
      return 2;
    }}
    const int64_t kMaxCtx = {llm.max_ctx};
    std::ifstream f(argv[3], std::ios::binary | std::ios::ate);
    if (!f) throw std::runtime_error(std::string("cannot open ") + argv[3]);
    const std::streamsize nbytes = f.tellg();
    f.seekg(0);
    std::vector<int64_t> prompt(static_cast<size_t>(nbytes / 8));
    f.read(reinterpret_cast<char*>(prompt.data()), static_cast<std::streamsize>(prompt.size() * 8));
    const int64_t max_new = std::stoll(argv[4]);
    const bool has_eos = argc == 6;
    const int64_t eos = has_eos ? std::stoll(argv[5]) : -1;
    if (prompt.empty()) throw std::runtime_error("the prompt is empty");
    if (static_cast<int64_t>(prompt.size()) > kMaxCtx)
      throw std::runtime_error("the prompt has " + std::to_string(prompt.size()) +
                               " tokens but the model's maximum context is " + std::to_string(kMaxCtx));
    dlavm::Artifact art = dlavm::Artifact::open(argv[2]);
    auto dev = dlavm::open_device(argv[1]);
    Driver drv(*dev, art);
    drv.load_weights();
    std::vector<int64_t> ids = prompt;
    int64_t past = 0, produced = 0;
    std::string reason = "max_new_tokens";
    while (produced < max_new) {{
      if (past + static_cast<int64_t>(ids.size()) > kMaxCtx) {{ reason = "context"; break; }}
      Tensor t;
      t.shape = {{1, static_cast<int64_t>(ids.size())}};
      t.is_int = true;
      t.i = ids;
      Dims state;
      state.{cd} = past + static_cast<int64_t>(ids.size());
      std::vector<Tensor> outs = drv.{entry}({{t}}, state);
      past = state.{cd};
      const int64_t tok = outs[0].i.back();
      ++produced;
      std::printf("%lld\\n", static_cast<long long>(tok));
      std::fflush(stdout);
      if (has_eos && tok == eos) {{ reason = "eos"; break; }}
      ids.assign(1, tok);
    }}
    std::printf("stop %s\\n", reason.c_str());
    return 0;
  }} catch (const std::exception& e) {{
    std::cerr << "error: " << e.what() << "\\n";
    return 1;
  }}
}}
"""


__all__ = ["generate_driver", "cpp_unsupported_host_ops", "CPP_HOST_OPS", "CPP_CONST_DTYPES",
           "DriverUnsupportedError", "UnsupportedHostOp"]
