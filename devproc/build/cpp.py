"""The C++ host program of a saved pipeline (doc/devproc.md, "The C++ host program").

:func:`generate_cpp` reads ``DIR/pipeline.json`` (verified whole by ``devproc.load``) and writes one
straight-line C++ program for it: the inputs from the command line, each constant file checked against the
size and sha256 it has now and pipeline.json records (opened inside DIR without following a link), each
model's artifact opened with ``dlavm::Artifact::open`` and run through its generated driver
(``DIR/models/<name>/driver/<model>.cc``), then one call of clib's ``dlavm::devproc`` op per node in trace
order, each wrapped so that an error names the node's ``loc`` and op, and the outputs written to
``OUTDIR/outputs.json`` with one file each. What the programs share (the command line, devices shared by
models, KV caches, the LLM ops on ``dlavm::generate``) is clib's (``dlavm/devproc.h``).

:func:`build_cpp` writes ``DIR/host/pipeline.cc`` and compiles it with the models' drivers against clib's
static library (``make -C clib``; with ``sanitize=True`` the AddressSanitizer + UBSan flavour,
``build-asan``) into ``DIR/host/pipeline`` (``pipeline-asan``).
"""
from __future__ import annotations

import fcntl
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dlavm.backend.driver import cpp_ident as _ident

from ..lang.errors import DevprocError
from ..lang.types import ImageType, KVCacheType, StringType, TensorType, TokenizerType

ROOT = Path(__file__).resolve().parents[2]
CLIB = ROOT / "clib"
CXXFLAGS = ["-std=c++17", "-Wall", "-Wextra", "-Werror"]

_DTYPE = {"bool": "kBool", "uint8": "kUInt8", "int32": "kInt32", "int64": "kInt64", "float16": "kFloat16",
          "float32": "kFloat32"}
_TYPE_REPR = {"bool": "Bool", "uint8": "UInt8", "int32": "Int32", "int64": "Int64", "float16": "Float16",
              "float32": "Float32"}


def cpp_str(s: str) -> str:
    """A C++ string literal of ``s``'s UTF-8 bytes: printable ASCII as is, every other byte an octal escape
    (three digits, so the next character never extends it)."""
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        if c in '"\\':
            out.append("\\" + c)
        elif 0x20 <= b < 0x7F and c != "?":
            out.append(c)
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def _num(v) -> str:
    """A finite float as a C++ double literal that reads back as the same double (Python's repr)."""
    r = repr(float(v))
    return r if ("." in r or "e" in r) else r + ".0"


def _dt(name: str) -> str:
    if name not in _DTYPE:
        raise DevprocError(f"dtype {name} is not one the C++ program holds ({', '.join(_DTYPE)})")
    return f"DType::{_DTYPE[name]}"


class _Gen:
    def __init__(self, lib):
        self.lib, self.g = lib, lib.graph
        self.types = self.g.types()
        self.models: dict = {}     # const value id -> info
        self.lines: list = []

    # ------------------------------------------------------------------ models

    def model_info(self, c) -> dict:
        d = Path(self.lib.directory)
        art = self.lib.models[c.name]
        m = art.manifest
        mf = _ident(m.model)
        drv = d / c.record["artifact"] / "driver"
        if not (drv / f"{mf}.cc").is_file() or not (drv / f"{mf}.h").is_file():
            raise DevprocError(f"model '{c.name}': its artifact has no C++ driver ({c.record['artifact']}/driver/"
                               f"{mf}.cc): the C++ program cannot run it (its host ops need the Python runtime)")
        info = {"const": c.name, "value": c.value, "use": c.type.use, "ns": "dlavm_" + mf, "mf": mf,
                "artifact": c.record["artifact"], "cls": f"Model_{c.name}", "obj": f"model_{c.name}"}
        if c.type.use == "llm":
            llm = m.llm
            info.update(max_ctx=llm.max_ctx, vocab=llm.vocab, ctx_dim=llm.ctx_dim,
                        logits=_ident(llm.entries["logits"]), greedy=_ident(llm.entries["greedy"]))
        else:
            entry = m.entries["forward"]
            info["inputs"] = [inp.dtype for inp in entry.inputs]
        return info

    def model_class(self, i: dict) -> str:
        head = f"""// Model '{i['const']}': the artifact {i['artifact']} (use '{i['use']}'), run by its driver
// {i['ns']}::Driver.
class {i['cls']} {{
 public:
  {i['cls']}(dp::Devices& devs, const std::string& dir)
      : devs_(devs), art_(dlavm::Artifact::open(dir + "/{i['artifact']}")), drv_(devs.device("{i['const']}"), art_) {{}}
  // Its weights on its device (again when another model's were loaded there since).
  void ensure() {{
    if (devs_.claim("{i['const']}")) drv_.load_weights();
  }}
"""
        if i["use"] == "llm":
            body = f"""  dp::Llm llm() {{
    dp::Llm m;
    m.name = "{i['const']}";
    m.max_ctx = {i['max_ctx']};
    m.vocab = {i['vocab']};
    m.ensure = [this] {{ ensure(); }};
    m.run = [this](bool logits, const dlavm::host::Tensor& input, int64_t ctx) {{
      {i['ns']}::Dims state;
      state.{i['ctx_dim']} = ctx;
      std::vector<dlavm::host::Tensor> outs =
          logits ? drv_.{i['logits']}({{input}}, state) : drv_.{i['greedy']}({{input}}, state);
      if (outs.size() != 1) throw dp::DevprocError("an LLM entry returned " + std::to_string(outs.size()) + " outputs");
      return outs[0];
    }};
    return m;
  }}
"""
        else:
            n = len(i["inputs"])
            conv = "\n".join(f"    in.push_back(dp::to_host(dp::model_input(xs[{k}], {_dt(dt)}, {k})));"
                             for k, dt in enumerate(i["inputs"]))
            body = f"""  // Entry 'forward' on xs, each converted to the dtype the artifact takes.
  std::vector<dlavm::host::Tensor> forward(const std::vector<dp::Tensor>& xs) {{
    ensure();
    if (xs.size() != {n})
      throw dp::DevprocError("model '{i['const']}' takes {n} input(s), got " + std::to_string(xs.size()));
    std::vector<dlavm::host::Tensor> in;
{conv}
    return drv_.forward(in);
  }}
"""
        return head + body + f""" private:
  dp::Devices& devs_;
  dlavm::Artifact art_;
  {i['ns']}::Driver drv_;
}};
"""

    # ------------------------------------------------------------------ values and nodes

    def decl(self, vid: str) -> str:
        t = self.types[vid]
        if isinstance(t, StringType):
            return f"std::string {vid};"
        if isinstance(t, TensorType):
            return f"dp::Tensor {vid};"
        if isinstance(t, ImageType):
            return f"dp::Image {vid};"
        if isinstance(t, KVCacheType):
            return f"dp::KvCache {vid};"
        raise DevprocError(f"value {vid}: a {t!r} cannot be computed by a node")

    def node(self, k: int, n) -> list:
        a, ins, outs = n.attrs, n.inputs, n.outputs
        op = n.op
        lines = [f"  // nodes[{k}]: {op} ({n.loc})"]
        pre, call = [], None
        if op == "kv_cache":
            lines.append(f"  dp::KvCache {outs[0]};")
            return lines
        lines += [f"  {self.decl(v)}" for v in outs]
        if op == "string":
            call = f"{outs[0]} = dp::string({cpp_str(a['value'])});"
        elif op == "tokenize_encode":
            call = (f"{outs[0]} = dp::tokenize_encode({ins[0]}, {ins[1]}, "
                    f"{'true' if a['add_special_tokens'] else 'false'});")
        elif op == "tokenize_decode":
            call = (f"{outs[0]} = dp::tokenize_decode({ins[0]}, {ins[1]}, "
                    f"{'true' if a['skip_special_tokens'] else 'false'});")
        elif op == "to":
            call = f"{outs[0]} = dp::to({ins[0]}, {_dt(a['dtype'])});"
        elif op == "argmax":
            call = f"{outs[0]} = dp::argmax({ins[0]}, {int(a['dim'])}, {'true' if a['keepdim'] else 'false'});"
        elif op == "concat":
            call = f"{outs[0]} = dp::concat({{{', '.join(ins)}}}, {int(a['dim'])});"
        elif op == "transpose":
            call = f"{outs[0]} = dp::transpose({ins[0]}, {int(a['dim0'])}, {int(a['dim1'])});"
        elif op == "unsqueeze":
            call = f"{outs[0]} = dp::unsqueeze({ins[0]}, {int(a['dim'])});"
        elif op == "ones_like":
            call = f"{outs[0]} = dp::ones_like({ins[0]});"
        elif op == "mean_pool":
            call = f"{outs[0]} = dp::mean_pool({ins[0]}, {ins[1]});"
        elif op == "l2_normalize":
            call = f"{outs[0]} = dp::l2_normalize({ins[0]}, {int(a['dim'])}, {_num(a['eps'])});"
        elif op == "embed":
            call = f"{outs[0]} = dp::embed({ins[0]}, {ins[1]});"
        elif op == "load_image":
            call = f"{outs[0]} = dp::load_image({ins[0]});"
        elif op == "resize":
            call = (f"{outs[0]} = dp::resize({ins[0]}, {{{int(a['size'][0])}, {int(a['size'][1])}}}, "
                    f"{cpp_str(a['method'])});")
        elif op == "normalize":
            mean = ", ".join(_num(v) for v in a["mean"])
            std = ", ".join(_num(v) for v in a["std"])
            call = f"{outs[0]} = dp::normalize({ins[0]}, {{{mean}}}, {{{std}}});"
        elif op == "call":
            m = self.models[ins[0]]
            dts = ", ".join(_dt(t.dtype.name) for t in n.types)
            args = ", ".join(ins[1:])
            call = ("{\n      std::vector<dp::Tensor> r =\n"
                    f"          dp::model_outputs({m['obj']}.forward({{{args}}}), {{{dts}}}, \"{m['const']}\");\n"
                    + "".join(f"      {v} = std::move(r[{j}]);\n" for j, v in enumerate(outs)) + "    }")
        elif op in ("prefill", "decode"):
            m = self.models[ins[0]]
            call = f"{outs[0]} = dp::prefill({m['obj']}.llm(), devices, {ins[1]}, {ins[2]}, \"{op}\");"
        elif op == "decode_loop":
            m = self.models[ins[0]]
            eos = a["eos_id"]
            eos = [] if eos is None else eos if isinstance(eos, list) else [eos]
            pre = ["    dp::DecodeLoopAttrs attrs;",
                   f"    attrs.max_new_tokens = {int(a['max_new_tokens'])};",
                   f"    attrs.eos_ids = {{{', '.join(str(int(e)) for e in eos)}}};",
                   f"    attrs.temperature = {_num(a['temperature'])};",
                   f"    attrs.top_k = {int(a['top_k'])};",
                   f"    attrs.top_p = {_num(a['top_p'])};",
                   f"    attrs.seed = {int(a['seed'])}ull;"]
            emb = f"&{ins[3]}" if len(ins) > 3 else "nullptr"
            call = f"{outs[0]} = dp::decode_loop({m['obj']}.llm(), devices, {ins[1]}, {ins[2]}, {emb}, attrs);"
        else:
            raise DevprocError(f"nodes[{k}] ({n.loc}): op '{op}' has no C++ implementation")
        lines.append("  try {")
        lines += pre
        lines.append(f"    {call}")
        lines.append(f"  }} catch (const std::exception& e) {{\n    dp::node_error({cpp_str(n.loc)}, \"{op}\", e);"
                     "\n  }")
        return lines

    # ------------------------------------------------------------------ the program

    def program(self) -> str:
        g, d = self.g, Path(self.lib.directory)
        for c in g.consts:
            if c.type.kind == "model":
                self.models[c.value] = self.model_info(c)
        seen: dict = {}
        for i in self.models.values():
            if i["ns"] in seen:
                raise DevprocError(f"models '{seen[i['ns']]}' and '{i['const']}' have drivers of one name "
                                   f"({i['ns']}): the C++ program links both, so give the models different names "
                                   "(load_torch_model(..., name=...))")
            seen[i["ns"]] = i["const"]
        for v in _flat(g.result):
            if not isinstance(self.types[v], (StringType, TensorType, ImageType)):
                raise DevprocError(f"output {v}: a {self.types[v]!r} cannot be written by the C++ program")
        body = []
        names = ", ".join(f'"{i.name}"' for i in g.inputs)
        body.append(f"  dp::Inputs inputs(args, {{{names}}}, {cpp_str(g.name)});")
        for i in g.inputs:
            t = i.type
            if isinstance(t, StringType):
                body.append(f'  const std::string {i.value} = inputs.string("{i.name}");')
            elif isinstance(t, ImageType):
                body.append(f'  const dp::Image {i.value} = inputs.image("{i.name}");')
            else:
                rep = f"Tensor[devproc.{_TYPE_REPR[t.dtype.name]}, rank {t.rank}]"
                body.append(f'  const dp::Tensor {i.value} = inputs.tensor("{i.name}", {_dt(t.dtype.name)}, '
                            f'{t.rank}, "{rep}");')
        body.append("  // constants: each file's size and sha256 as recorded when this program was generated")
        for c in g.consts:
            if c.type.kind == "model":
                continue
            rel = c.record["file"]
            size = (d / rel).stat().st_size
            if isinstance(c.type, TokenizerType):
                body.append(f'  const dlavm::Tokenizer {c.value} = dp::load_tokenizer_const(dir, "{rel}", {size}ull, '
                            f'"{c.record["sha256"]}");')
            else:
                shape = ", ".join(str(int(s)) for s in c.record["shape"])
                body.append(f'  const dp::Tensor {c.value} = dp::load_tensor_const(dir, "{rel}", {size}ull, '
                            f'"{c.record["sha256"]}", {_dt(c.type.dtype.name)}, {{{shape}}});')
        mnames = ", ".join(f'"{i["const"]}"' for i in self.models.values())
        body.append(f"  dp::Devices devices(args, {{{mnames}}});")
        for i in self.models.values():
            body.append(f"  {i['cls']} {i['obj']}(devices, dir);")
        for i in self.models.values():   # as the Python runtime: every model's weights loaded once, in order
            body.append(f"  {i['obj']}.ensure();")
        for k, n in enumerate(g.nodes):
            body += self.node(k, n)
        body.append("  dp::Outputs out(args.out);")
        for v in _flat(g.result):   # in the order of the kernel's result, as python -m devproc.runtime
            body.append(f"  out.add({v});")
        body.append("  out.finish();")
        includes = "\n".join(f'#include "../{i["artifact"]}/driver/{i["mf"]}.h"' for i in self.models.values())
        classes = "\n".join(self.model_class(i) for i in self.models.values())
        ins_usage = " ".join(f"--input {i.name}={'TEXT' if isinstance(i.type, StringType) else '@FILE'}"
                             for i in g.inputs)
        usage = (f"usage: pipeline DIR --device URI [--device NAME=URI]... {ins_usage} --out OUTDIR\\n"
                 f"  runs the DevProc pipeline '{g.name}' saved in DIR; models: "
                 f"{', '.join(i['const'] for i in self.models.values()) or 'none'}\\n")
        return f"""// Generated by devproc for the pipeline '{g.name}' (pipeline.json). Do not edit: devproc.build_cpp
// writes it again. One call per node, in trace order; what every pipeline program shares is dlavm/devproc.h.
//
// {usage.split(chr(92))[0]}
#include <string>
#include <utility>
#include <vector>

#include "dlavm/artifact.h"
#include "dlavm/devproc.h"
{includes}

namespace dp = dlavm::devproc;
using dp::DType;

namespace {{

{classes}
void run(const dp::ProgramArgs& args) {{
  const std::string& dir = args.dir;
  static_cast<void>(dir);  // a pipeline without constants reads no file of DIR
{chr(10).join(body)}
}}

}}  // namespace

int main(int argc, char** argv) {{
  return dp::program_main(argc, argv, "{usage}", run);
}}
"""


def _flat(result) -> list:
    """The value ids of a kernel's result (a value id or nested tuples of them), in order."""
    return [v for r in result for v in _flat(r)] if isinstance(result, (tuple, list)) else [result]


def generate_cpp(lib_dir) -> str:
    """The C++ host program of the saved pipeline at ``lib_dir`` (verified first, ``devproc.load``).
    DevprocError for a pipeline it cannot run: a model saved without its C++ driver, two models whose drivers
    share a name, an output that is not a String, tensor or image."""
    from ..runtime.library import load
    return _Gen(load(lib_dir)).program()


def _make_clib(sanitize: bool) -> Path:
    build = CLIB / ("build-asan" if sanitize else "build")
    build.mkdir(exist_ok=True)
    with open(build / ".make.lock", "w") as lock:   # the lock tests/clib takes too
        fcntl.flock(lock, fcntl.LOCK_EX)
        res = subprocess.run(["make", "-C", str(CLIB), *(["asan"] if sanitize else ["lib"])], capture_output=True,
                             text=True, timeout=1800)
    if res.returncode != 0:
        tail = (res.stdout + res.stderr).strip().splitlines()[-1:] or ["?"]
        raise DevprocError(f"building clib failed: {tail[0]}")
    return build / "libdlavm_rt.a"


def _sanitize_flags() -> list:
    res = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(CLIB), "print-sanitize-flags"],
                         capture_output=True, text=True, timeout=60, check=True)
    return res.stdout.split()


def build_cpp(lib_dir, sanitize: bool = False) -> Path:
    """Write ``DIR/host/pipeline.cc`` and compile it with the models' drivers and clib into
    ``DIR/host/pipeline`` (``pipeline-asan`` with ``sanitize``); returns the executable."""
    from ..runtime.library import load
    d = Path(lib_dir)
    saved = load(d)         # verified once: the program and the driver sources below come from it
    source = _Gen(saved).program()
    host = d / "host"
    host.mkdir(exist_ok=True)
    (host / "pipeline.cc").write_text(source)
    lib = _make_clib(sanitize)
    flags = CXXFLAGS + (["-O1", *_sanitize_flags()] if sanitize else ["-O2"])
    obj = host / ("obj-asan" if sanitize else "obj")
    obj.mkdir(exist_ok=True)
    sources = [host / "pipeline.cc"]
    sources += [d / c.record["artifact"] / "driver" / f"{_ident(saved.models[c.name].manifest.model)}.cc"
                for c in saved.graph.consts if c.type.kind == "model"]

    def compile_one(k_src):
        k, src = k_src
        o = obj / f"{k}_{src.stem}.o"
        res = subprocess.run(["g++", *flags, f"-I{CLIB / 'include'}", "-c", str(src), "-o", str(o)],
                             capture_output=True, text=True, timeout=1800)
        if res.returncode != 0:
            raise DevprocError(f"compiling {src.relative_to(d)} failed: "
                               + next((ln for ln in res.stderr.splitlines() if "error" in ln), res.stderr[:300]))
        return o

    with ThreadPoolExecutor(max_workers=max(1, min(len(sources), os.cpu_count() or 1))) as pool:
        objs = list(pool.map(compile_one, enumerate(sources)))
    exe = host / ("pipeline-asan" if sanitize else "pipeline")
    res = subprocess.run(["g++", *flags, *map(str, objs), str(lib), "-pthread", "-o", str(exe)],
                         capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        raise DevprocError(f"linking {exe.relative_to(d)} failed: {res.stderr.strip().splitlines()[-1:]}")
    return exe
