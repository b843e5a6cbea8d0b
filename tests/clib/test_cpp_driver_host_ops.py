"""Host ops and host constants in the generated C++ driver.

* Every op of ``CPP_HOST_OPS`` (clib's ``dlavm::host`` kernels) runs in one generated driver, built
  in both flavours (release and ASan/UBSan), on the simulator server, and gives the Python runtime's
  outputs: bit for bit, except the ops of ``TOLERANCE`` (libm's float32 transcendentals against numpy's
  own, and sums accumulated in double against numpy's pairwise float32), within the stated tolerance.
  ``CASES`` must cover every op of the table, so a new op is tested or this test fails.
* The example user models (encoder, classifier, CNN) compile with their driver and the C++ run
  equals the Python run.
* Every dtype ``load_const`` reads gives the Python runtime's outputs bit for bit, a constant file of
  the wrong size or an artifact other than the one the driver was generated for is refused, and a model
  whose host ops the C++ driver cannot run says so, once per op, when it is compiled (report) and saved
  (refusal)."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from dlavm import sym
from dlavm.artifact import MANIFEST_SUM, manifest_sum_text
from dlavm.artifact import HostStep
from dlavm.backend.cpp_host_ops import CPP_HOST_OPS
from dlavm.backend.driver import CPP_CONST_DTYPES, cpp_unsupported_host_ops
from dlavm.compiler import CompileError, compile as dlavm_compile, load
from dlavm.ir import Constant, Function, Literal, Module, TensorType, Tuple, Var, call
from clib_build import FLAVOURS, ROOT, build_clib, compile_programs
from tests.driver_support import sim_server

pytestmark = [pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed"),
              # the op table's float16 exp overflows to inf, as it should (numpy warns)
              pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")]

ROWS, DIM, VOCAB = 4, 32, 9
INT_DTYPES = [d for d in CPP_CONST_DTYPES if d not in ("float32", "float16", "bool")]


def host_const_model(rng, table_dtypes=("float32", "float16")) -> Module:
    """x [ROWS, DIM] + the sum over every integer dtype of embedding(table, indices), each index vector
    a host constant of that dtype, each table a host constant of a float dtype (alternating), + a bool
    host constant [ROWS * DIM] reshaped to [ROWS, DIM]: one host constant of every dtype load_const reads."""
    x = Var("x", TensorType((sym.const(ROWS), sym.const(DIM)), "float32"))
    params, acc = {}, call("dev.to_device", x)
    for k, idt in enumerate(INT_DTYPES):
        tdt = table_dtypes[k % len(table_dtypes)]
        table = Constant(f"table{k}_{tdt}", TensorType((sym.const(VOCAB), sym.const(DIM)), tdt))
        idx = Constant(f"idx{k}_{idt}", TensorType((sym.const(ROWS),), idt))
        params[table.name] = rng.standard_normal((VOCAB, DIM)).astype(tdt)
        params[idx.name] = rng.integers(0, VOCAB, ROWS).astype(idt)
        acc = call("dev.eltwise", acc, call("dev.to_device", call("embedding", table, idx)), fn="add")
    mask = Constant("mask_bool", TensorType((sym.const(ROWS * DIM),), "bool"))
    params[mask.name] = rng.integers(0, 2, ROWS * DIM).astype(bool)
    flags = call("reshape", mask, shape=(sym.const(ROWS), sym.const(DIM)))
    acc = call("dev.eltwise", acc, call("dev.to_device", flags), fn="add")
    return Module({"forward": Function("forward", [x], call("dev.to_host", acc))}, params)


def host_f64_model() -> Module:
    """to_host(x + x), then two host ``exp``s cast to float64 (a dtype the Python runtime holds and the
    C++ driver does not) and a ``sub`` of the two: three steps the C++ driver cannot run, of two ops."""
    x = Var("x", TensorType((sym.const(ROWS), sym.const(DIM)), "float32"))
    h = call("dev.to_device", x)
    y = call("dev.to_host", call("dev.eltwise", h, h, fn="add"))
    a, b = call("cast", call("exp", y), dtype="float64"), call("cast", call("exp", y), dtype="float64")
    return Module({"forward": Function("forward", [x], Tuple([a, call("sub", a, b)]))}, {})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sim_server(tmp_path_factory.mktemp("srv")) as (uri, _):
        yield uri


@pytest.fixture(scope="module", params=FLAVOURS)
def const_artifact(request, tmp_path_factory):
    """The artifact of host_const_model with its generated driver built in each flavour (the asan one
    turns a read past a host constant's buffer into a failure)."""
    cm = dlavm_compile(host_const_model(np.random.default_rng(5)), target="tiny")
    art = cm.save(tmp_path_factory.mktemp(f"consts_{request.param}") / "art")
    d = art / "driver"
    exe = compile_programs({"model_main": [d / "model.cc", d / "model_main.cc"]}, art.parent / "bin", request.param,
                           build_clib(request.param), includes=(d,))["model_main"]
    return art, exe


def _run(exe, uri, art, tmp_path, x):
    x.astype(np.float32).tofile(tmp_path / "x.bin")
    return subprocess.run([str(exe), uri, str(art), str(tmp_path / "x.bin"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)


def test_host_constants_of_every_supported_dtype_match_the_python_runtime(const_artifact, server, tmp_path):
    art, exe = const_artifact
    dtypes = {np.dtype(c["dtype"]).name for c in json.loads((art / "manifest.json").read_text())["host_consts"]}
    assert dtypes == set(CPP_CONST_DTYPES)      # the model really stores one constant of each dtype
    x = np.random.default_rng(1).standard_normal((ROWS, DIM)).astype(np.float32)
    res = _run(exe, server, art, tmp_path, x)
    assert res.returncode == 0, res.stderr
    got = np.fromfile(tmp_path / "out0.bin", np.float32)
    want = load(art).run(x)[0]
    np.testing.assert_array_equal(got, want.reshape(-1))


def _reseal(art, manifest):
    text = json.dumps(manifest)
    (art / "manifest.json").write_text(text)
    (art / MANIFEST_SUM).write_text(manifest_sum_text(text.encode()))


def _short_const(src, tmp_path):
    """A copy of ``src`` whose float16 constant file is one element short, listed with its new sha256."""
    art = tmp_path / "art"
    shutil.copytree(src, art)
    manifest = json.loads((art / "manifest.json").read_text())
    i, const = next((i, c) for i, c in enumerate(manifest["host_consts"]) if np.dtype(c["dtype"]).name == "float16")
    data = (art / const["file"]).read_bytes()[:-2]
    (art / const["file"]).write_bytes(data)
    manifest["files"][const["file"]] = hashlib.sha256(data).hexdigest()
    return art, manifest, i, const


def test_a_host_constant_file_of_the_wrong_size_is_refused(const_artifact, server, tmp_path):
    """Shorter than its shape: refused by Artifact::open (the Python reader's rule and message), before
    the driver reads it."""
    src, exe = const_artifact
    art, manifest, i, const = _short_const(src, tmp_path)
    _reseal(art, manifest)
    res = _run(exe, server, art, tmp_path, np.zeros((ROWS, DIM), np.float32))
    need = VOCAB * DIM * 2
    assert res.returncode == 1
    assert res.stderr.strip() == (f"error: artifact {art}: manifest.json: host_consts[{i}].file: holds {need - 2} "
                                  f"bytes, its float16 shape [{VOCAB}, {DIM}] needs {need}")


def test_an_artifact_the_driver_was_not_generated_for_is_refused(const_artifact, server, tmp_path):
    """A consistent artifact (the shape says one row less, the file holds one row less) that is not the one
    the driver carries as constants: refused by the driver, naming the field, before any buffer is used."""
    src, exe = const_artifact
    art, manifest, i, const = _short_const(src, tmp_path)
    data = (art / const["file"]).read_bytes()[:-(DIM * 2 - 2)]
    (art / const["file"]).write_bytes(data)
    manifest["files"][const["file"]] = hashlib.sha256(data).hexdigest()
    const["shape"][0] -= 1
    _reseal(art, manifest)
    res = _run(exe, server, art, tmp_path, np.zeros((ROWS, DIM), np.float32))
    assert res.returncode == 1
    assert res.stderr.strip() == (f"error: artifact {art}: manifest.json: host_consts[{i}].shape[0]: is {VOCAB - 1}, "
                                  f"this driver was generated for {VOCAB}")


def test_a_model_the_cpp_driver_cannot_run_says_so_at_compile_time(tmp_path):
    cm = dlavm_compile(host_f64_model(), target="tiny", name="expmodel")
    why = ("host op 'cast' (2 steps in entry 'forward'): a result of dtype float64, which the C++ driver "
           "does not hold exactly")
    assert [str(u) for u in cpp_unsupported_host_ops(cm.manifest)] == [
        why, "host op 'sub' (1 step in entry 'forward'): an operand of dtype float64, which the C++ driver "
             "does not hold exactly"]
    assert f"C++ driver: unavailable: {why}; host op 'sub'" in cm.report()
    with pytest.raises(CompileError, match=re.escape(f"cannot save 'expmodel' with its C++ driver: {why}")):
        cm.save(tmp_path / "with_driver")
    assert not (tmp_path / "with_driver").exists()
    art = cm.save(tmp_path / "no_driver", driver=False)
    assert not (art / "driver").exists()
    x = np.random.default_rng(2).standard_normal((ROWS, DIM)).astype(np.float32)
    np.testing.assert_allclose(load(art).run(x)[0], np.exp(2 * x.astype(np.float16).astype(np.float32)),
                               rtol=2e-3)


def test_each_reason_the_cpp_driver_cannot_run_a_step_is_named():
    """An attribute value the C++ kernel does not honour or ignores, a literal it cannot take, an op without
    a C++ kernel, a user host op: each a one-line reason (the step counts: the test above)."""
    from dlavm.backend.cpp_host_ops import HostCall, Operand, call_problem
    call_ok = HostCall("div", (Operand("value", "float32"), Operand("literal", literal=2.0)),
                       {"rounding_mode": "floor"}, "float32")
    assert call_problem(call_ok) is None
    assert call_problem(HostCall("div", call_ok.args, {"rounding_mode": "ceil"}, "float32")) == (
        "attribute rounding_mode='ceil' (the C++ kernel supports None, 'floor', 'trunc')")
    assert call_problem(HostCall("div", call_ok.args, {"rounding_mode": None, "alpha": 2}, "float32")) == (
        "attribute alpha=2 (the C++ kernel ignores this attribute)")
    assert call_problem(HostCall("add", (Operand("value", "int64"), Operand("literal", literal=0.5)), {},
                                 "int64")) == "a float literal (0.5) with an int64 result"
    assert call_problem(HostCall("frobnicate", (), {}, "float32")).startswith("no C++ kernel (doc/runtime_cpp.md")
    assert call_problem(HostCall("mylib::xyz", (), {}, "float32")) == (
        "a user host op (@dlavm.host_op) has a numpy implementation only, no C++ kernel")


def test_a_supported_model_reports_the_driver_available_and_a_float64_constant_is_not(tmp_path):
    cm = dlavm_compile(host_const_model(np.random.default_rng(0)), target="tiny")
    assert cpp_unsupported_host_ops(cm.manifest) == [] and "C++ driver: available" in cm.report()
    cm64 = dlavm_compile(host_const_model(np.random.default_rng(0), table_dtypes=("float64",)), target="tiny")
    (problem,) = cpp_unsupported_host_ops(cm64.manifest)    # one line for the op, however many steps
    assert (problem.op, problem.count, problem.entries) == ("embedding", len(INT_DTYPES), ("forward",))
    assert problem.reason.startswith("it reads a host constant of dtype float64, which the C++ driver does not "
                                     "hold exactly")


# --- every op of the C++ table against the Python runtime ------------------------------------------

def _t(name, shape, dtype="float32"):
    return Var(name, TensorType(tuple(sym.const(d) for d in shape), dtype))


#: the inputs of the op-table model, with their values (deterministic)
def _op_inputs(rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32) * 2
    x[0, 0, :] = [0.0, -0.0, 1.5, -2.5]          # zeros of both signs, halves (rounding modes)
    vals = {
        "x": x,
        "y": rng.uniform(0.5, 2.0, (3, 4)).astype(np.float32),
        "n": rng.integers(-7, 8, (2, 3, 4)).astype(np.int64),
        "m": (rng.integers(1, 5, (3, 4)) * rng.choice([-1, 1], (3, 4))).astype(np.int64),
        "ids": np.array([0, 2, 1, -1, 2], np.int64),
        "img": rng.standard_normal((1, 4, 6, 6)).astype(np.float32),
        "wimg": rng.standard_normal((6, 2, 3, 3)).astype(np.float32),
        "q": rng.standard_normal((1, 4, 5, 8)).astype(np.float32),
        "kv": rng.standard_normal((1, 2, 5, 8)).astype(np.float32),
    }
    return {k: _t(k, v.shape, str(v.dtype)) for k, v in vals.items()}, vals


FLOAT_UNARY = ("exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "sin", "cos", "erf", "silu", "reciprocal")
ANY_UNARY = ("neg", "abs", "relu", "sign", "floor", "ceil")
ARITH = ("add", "sub", "mul", "maximum", "minimum", "pow", "floor_divide", "remainder")
PREDICATES = ("lt", "le", "gt", "ge", "eq", "ne")
REDUCTIONS = ("sum", "mean", "prod", "amax", "amin")


def _cases(v):
    """op -> the nodes computing it from the inputs ``v`` (a dict of Vars plus derived host values)."""
    x, y, n, m, ids = v["x"], v["y"], v["n"], v["m"], v["ids"]
    h = call("cast", x, dtype="float16")
    b = call("gt", x, 0.0)
    c = {op: [call(op, x), call(op, h)] for op in FLOAT_UNARY}
    c.update({op: [call(op, x), call(op, n), call(op, h)] for op in ANY_UNARY})
    c["bitwise_not"] = [call("bitwise_not", n), call("bitwise_not", b)]
    c["gelu"] = [call("gelu", x, approximate="none"), call("gelu", x, approximate="tanh")]
    c.update({op: [call(op, x, y), call(op, n, call("abs", m) if op == "pow" else m), call(op, h, h)] for op in ARITH})
    c["add"] += [call("add", x, 0.5), call("add", n, 3), call("add", h, 0.1), call("add", b, b)]
    c["pow"] += [call("pow", y, 2.0), call("pow", y, -0.5)]
    c["div"] = [call("div", x, y), call("div", x, y, rounding_mode="floor"), call("div", x, y, rounding_mode="trunc"),
                call("div", n, m, rounding_mode="floor"), call("div", n, m, rounding_mode="trunc"), call("div", n, m)]
    c.update({op: [call(op, n, m), call(op, b, b)] for op in ("bitwise_and", "bitwise_or", "bitwise_xor")})
    c.update({op: [call(op, x, y), call(op, n, m), call(op, x, 0.1), call(op, h, 0.1), call(op, n, 0.5)]
              for op in PREDICATES})
    c.update({op: [call(op, b, call("gt", y, 1.0)), call(op, n, x)]
              for op in ("logical_and", "logical_or", "logical_xor")})
    c["logical_not"] = [call("logical_not", b), call("logical_not", n)]
    c["where"] = [call("where", b, x, y), call("where", b, x, Literal(-1e30)), call("where", b, n, m),
                  call("where", b, h, 0.1)]
    c["clamp"] = [call("clamp", x, min=-0.5, max=0.5), call("clamp", x, min=0.0), call("clamp", n, max=2),
                  call("clamp", h, min=-1.0, max=1.0)]
    c["cast"] = [h, call("cast", x, dtype="int32"), call("cast", n, dtype="float32"), call("cast", n, dtype="bool"),
                 call("cast", n, dtype="int8"), call("cast", b, dtype="float32"), call("cast", n, dtype="uint8")]
    c.update({op: [call(op, x, axes=(1,)), call(op, x), call(op, x, axes=(-1, 0), keepdim=True),
                   call(op, h, axes=(0,))] + ([call(op, n, axes=(2,))] if op != "mean" else [])
              for op in REDUCTIONS})
    c["any"] = [call("any", b, axes=(1,)), call("any", n)]
    c["all"] = [call("all", b, axes=(0, 2), keepdim=True), call("all", n, axes=(1,))]
    c["cumsum"] = [call("cumsum", x, axis=1), call("cumsum", n, axis=-1), call("cumsum", h, axis=2)]
    c["softmax"] = [call("softmax", x, axis=-1), call("softmax", x, axis=0)]
    c["log_softmax"] = [call("log_softmax", x, axis=1)]
    c["argmax"] = [call("argmax", x, axis=1, keepdim=True), call("argmax", n, axis=-1)]
    c["layer_norm"] = [call("layer_norm", x, y, call("mul", y, 0.5), ndim=2, eps=1e-5), call("layer_norm", x, ndim=1)]
    c["rms_norm"] = [call("rms_norm", x, ndim=1, eps=1e-6), call("rms_norm", x, call("sum", y, axes=(0,)), ndim=1)]
    c["linear"] = [call("linear", x, y), call("linear", x, y, call("sum", y, axes=(1,)))]
    c["matmul"] = [call("matmul", x, call("permute", y, dims=(1, 0))),
                   call("matmul", x, call("permute", x, dims=(0, 2, 1)))]
    c["attention"] = [call("attention", v["q"], v["kv"], v["kv"], causal=True),
                      call("attention", v["q"], v["kv"], v["kv"],
                           call("gt", call("slice", v["q"], axis=3, start=0, end=5), 0.0), scale=0.3)]
    c["conv2d"] = [call("conv2d", v["img"], v["wimg"], call("sum", v["wimg"], axes=(1, 2, 3)), stride=(2, 1),
                        padding=(1, 1), dilation=(1, 2), groups=2)]
    c["im2col"] = [call("im2col", v["img"], kernel=(3, 3), stride=(2, 1), padding=(1, 1), dilation=(1, 2)),
                   call("im2col", v["img"], kernel=(2, 3)),
                   call("im2col", call("cast", v["img"], dtype="float16"), kernel=(3, 3), padding=(1, 1))]
    c["max_pool2d"] = [call("max_pool2d", v["img"], kernel=(3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True),
                       call("max_pool2d", v["img"], kernel=(2, 2), stride=(2, 2))]
    c["avg_pool2d"] = [call("avg_pool2d", v["img"], kernel=(3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True,
                            count_include_pad=False),
                       call("avg_pool2d", v["img"], kernel=(3, 3), stride=(2, 2), padding=(1, 1))]
    c["reshape"] = [call("reshape", x, shape=(sym.const(6), sym.const(4))), call("reshape", n, shape=(sym.const(24),))]
    c["permute"] = [call("permute", x, dims=(2, 0, 1)), call("permute", n, dims=(1, 2, 0))]
    c["expand"] = [call("expand", y, shape=(sym.const(2), sym.const(3), sym.const(4)))]
    c["slice"] = [call("slice", x, axis=2, start=1, end=4, step=2), call("slice", n, axis=0, start=1, end=2)]
    c["concat"] = [call("concat", x, x, axis=1), call("concat", n, n, n, axis=-1)]
    c["take"] = [call("take", x, ids, axis=1), call("take", n, ids, axis=2)]
    c["gather"] = [call("gather", x, call("slice", call("remainder", call("abs", n), 3), axis=2, start=0, end=3),
                        axis=1),
                   call("gather", n, call("slice", call("remainder", n, 2), axis=0, start=0, end=1), axis=0)]
    c["argsort"] = [call("argsort", x, axis=1), call("argsort", call("floor", x), axis=-1, descending=True),
                    call("argsort", call("remainder", n, 3), axis=0),
                    call("argsort", call("sqrt", x), axis=2, descending=True)]
    c["embedding"] = [call("embedding", y, ids), call("embedding", m, ids)]
    c["index"] = [call("index", x, ids, axes=(2,)),
                  call("index", x, call("slice", ids, axis=0, start=0, end=1),
                       call("slice", ids, axis=0, start=1, end=3), axes=(0, 2))]
    c["arange"] = [call("arange", start=0, end=7, step=2, dtype="float32"), call("arange", end=5)]
    c["full"] = [call("full", shape=(sym.const(2), sym.const(3)), value=0.1, dtype="float16"),
                 call("full", shape=(sym.const(2),), value=3, dtype="int32")]
    c["shape_value"] = [call("shape_value", value=7), call("shape_value", value=7, dtype="float32")]
    return c


#: per op, (rtol, atol) where the C++ result may differ from numpy's: float32 libm against numpy's own
#: transcendentals (a few ulp), double accumulation against numpy's pairwise float32 sums, float64
#: matrix products in another summation order; one float16 ulp (1e-3) covers their float16 cases.
#: Every other op is compared bit for bit.
TOLERANCE = {**{op: (1e-6, 1e-6) for op in ("exp", "log", "tanh", "sigmoid", "sin", "cos", "silu", "pow", "gelu",
                                            "erf")},
             **{op: (1e-5, 1e-6) for op in ("sum", "mean", "prod", "softmax", "log_softmax", "cumsum")},
             **{op: (1e-6, 1e-6) for op in ("layer_norm", "rms_norm", "linear", "matmul", "attention", "conv2d",
                                            "avg_pool2d")}}
F16_TOLERANCE = (1e-3, 1e-3)


@pytest.fixture(scope="module")
def op_table_artifact(tmp_path_factory):
    """One module computing every case of ``_cases`` (after one device round trip, so the module is a
    device graph and every case stays a host step), saved with its driver, and the Python runtime's
    outputs."""
    v, vals = _op_inputs(np.random.default_rng(11))
    xd = call("dev.to_device", v["x"])
    derived = dict(v, x=call("dev.to_host", call("dev.eltwise", xd, xd, fn="add")))
    ops, outs = [], []
    for op, nodes in _cases(derived).items():
        ops += [op] * len(nodes)
        outs += nodes
    mod = Module({"forward": Function("forward", list(v.values()), Tuple(outs))}, {})
    cm = dlavm_compile(mod, target="tiny", name="ops")
    art = cm.save(tmp_path_factory.mktemp("ops") / "art")
    want = load(art).run(*vals.values())
    return art, vals, ops, want, cm


_OP_TABLE_EXES: dict = {}   # flavour -> executable: each built once per module, whatever the test order


@pytest.fixture(scope="module", params=FLAVOURS)
def op_table_exe(request, op_table_artifact):
    art = op_table_artifact[0]
    if (art, request.param) not in _OP_TABLE_EXES:
        d = art / "driver"
        _OP_TABLE_EXES[art, request.param] = compile_programs(
            {"ops_main": [d / "ops.cc", d / "ops_main.cc"]}, art.parent / f"bin_{request.param}", request.param,
            build_clib(request.param), includes=(d,))["ops_main"]
    return _OP_TABLE_EXES[art, request.param]


def test_the_cpp_table_honours_the_attributes_of_the_python_kernels():
    """Every op in both tables declares the same attributes with the same values (float64 aside: the C++
    driver holds floats as float32), so a model the Python runtime runs is refused by the C++ table only
    for a reason the compile names."""
    from dlavm.backend.cpp_host_ops import ANY as CPP_ANY
    from dlavm.runtime.host_kernels import ANY as PY_ANY, KERNELS
    for op in set(KERNELS) & set(CPP_HOST_OPS):
        py, cpp = KERNELS[op].attrs, CPP_HOST_OPS[op].attrs
        assert set(py) == set(cpp), op
        for name, want in py.items():
            got = cpp[name]
            assert (got is CPP_ANY) == (want is PY_ANY), (op, name)
            if want is not PY_ANY:
                assert set(got) == set(want) - {"float64"}, (op, name)


def _run_op_table(exe, server, art, vals, tmp_path):
    for k, a in enumerate(vals.values()):
        a.astype(np.int64 if a.dtype.kind == "i" else np.float32).tofile(tmp_path / f"in{k}.bin")
    return subprocess.run([str(exe), server, str(art), *(str(tmp_path / f"in{k}.bin") for k in range(len(vals))),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300)


def test_every_cpp_host_op_has_a_case_and_each_case_is_a_host_step(op_table_artifact):
    art, _, ops, _, cm = op_table_artifact
    assert set(ops) == set(CPP_HOST_OPS)
    steps = [s.op for s in cm.manifest.entries["forward"].steps if isinstance(s, HostStep)]
    assert set(steps) == set(CPP_HOST_OPS)
    assert cpp_unsupported_host_ops(cm.manifest) == []


def test_every_cpp_host_op_matches_the_python_runtime(op_table_artifact, op_table_exe, server, tmp_path):
    art, vals, ops, want, cm = op_table_artifact
    res = _run_op_table(op_table_exe, server, art, vals, tmp_path)
    assert res.returncode == 0, res.stderr
    bad = []
    for k, (op, w) in enumerate(zip(ops, want)):
        got = np.fromfile(tmp_path / f"out{k}.bin", np.float32 if w.dtype.kind == "f" else np.int64)
        w = np.asarray(w).reshape(-1)
        if w.dtype.kind == "f":
            rtol, atol = F16_TOLERANCE if w.dtype == np.float16 and op in TOLERANCE else TOLERANCE.get(op, (0, 0))
            w = w.astype(np.float32)
            ok = got.shape == w.shape and (np.array_equal(got, w, equal_nan=True) if (rtol, atol) == (0, 0) else
                                           np.allclose(got, w, rtol=rtol, atol=atol, equal_nan=True))
            if ok and (rtol, atol) == (0, 0):   # bit for bit: the signs of zeros too
                ok = np.array_equal(np.signbit(got), np.signbit(w))
        else:
            ok = got.shape == w.shape and np.array_equal(got, w.astype(np.int64))
        if not ok:
            bad.append(f"output {k} ({op}, {w.dtype}): got {got[:8]} want {w[:8]}")
    assert not bad, "\n".join(bad)


# --- the example user models end to end ---------------------------------------------------------------

EXAMPLES = ROOT / "examples" / "models"
#: the C++ run equals the Python run within this (log_softmax: libm against numpy, a few float32 ulp)
EXAMPLE_RTOL = 1e-5


@pytest.mark.parametrize("model", ["encoder", "classifier", "cnn"])
def test_an_example_model_runs_in_cpp_as_in_python(model, server, tmp_path):
    cm = dlavm_compile(f"{EXAMPLES / model}.py:build", target="tiny", name=model)
    assert cpp_unsupported_host_ops(cm.manifest) == [], cm.report()
    art = cm.save(tmp_path / "art")
    d = art / "driver"
    exe = compile_programs({"main": [d / f"{model}.cc", d / f"{model}_main.cc"]}, tmp_path / "bin", "release",
                           build_clib("release"), includes=(d,))["main"]
    (spec,) = cm.manifest.entries[cm.entries[0]].inputs
    dims = {name: min(7, b.hi) for name, b in cm.manifest.dims.items()}
    x = np.random.default_rng(3).standard_normal([dims.get(s, None) or int(s) for s in spec.shape]).astype(np.float32)
    x.tofile(tmp_path / "x.bin")
    res = subprocess.run([str(exe), server, str(art), *(f"{k}={v}" for k, v in dims.items()), str(tmp_path / "x.bin"),
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    want = load(art).run(x)
    for k, w in enumerate(want):
        got = np.fromfile(tmp_path / f"out{k}.bin", np.float32).reshape(w.shape)
        np.testing.assert_allclose(got, w, rtol=EXAMPLE_RTOL, atol=EXAMPLE_RTOL)


# --- malformed operands are refused, never read out of bounds -----------------------------------------

def test_the_host_kernels_refuse_malformed_operands_naming_the_op(cpp_programs):
    """tests/clib/host_ops_refusals.cc: storage that does not hold its shape, negative and huge sizes,
    shapes that do not agree, indices outside their axis: each one error line naming the op (built with
    the sanitizers too, where an out-of-bounds access would fail the run)."""
    res = subprocess.run([str(cpp_programs["host_ops_refusals"])], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = dict(line.split(": ", 1) for line in res.stdout.splitlines())
    assert len(lines) == 37 and not any(k.startswith("NO THROW") for k in lines)
    assert lines["short storage"] == "exp: an operand of shape [2, 3] holds 5 elements"
    assert lines["huge shape"] == "full: shape [1048576, 1048576] has more than 2^31 elements"
    assert lines["embedding index"] == "embedding: index 3 is out of bounds for an axis of size 3"
    assert lines["take nan index"] == "take: index -9223372036854775808 is out of bounds for an axis of size 3"
    assert lines["broadcast"] == "add: shapes [2, 3] and [4] do not broadcast"
    assert lines["im2col kernel"] == "im2col: the kernel does not fit the padded input [1, 1, 2, 2]"
    for name, message in lines.items():
        assert message.split(": ", 1)[0] in {*CPP_HOST_OPS, "gelu_tanh", "frobnicate"}, (name, message)


def test_an_index_out_of_range_is_the_same_error_in_cpp_and_python(op_table_artifact, op_table_exe, server, tmp_path):
    """The op table's ``ids`` input with an index past its axis: the first step reading it (``take``)
    refuses it in both runtimes, with the same step named."""
    art, vals, _, _, cm = op_table_artifact
    vals = dict(vals, ids=np.array([0, 2, 1, -1, 9], np.int64))
    step = next(s for s in cm.manifest.entries["forward"].steps if isinstance(s, HostStep) and s.op == "take")
    where = f"entry 'forward': host op 'take' (writing {step.dst}) cannot run: "
    with pytest.raises(Exception, match=re.escape(where) + ".*index 9 is out of bounds"):
        load(art).run(*vals.values())
    res = _run_op_table(op_table_exe, server, art, vals, tmp_path)
    assert res.returncode == 1
    assert res.stderr.strip() == f"error: {where}take: index 9 is out of bounds for an axis of size 3"
