"""Device-level ops (``dev.*``): what the accelerator executes as units.

``legalize`` rewrites ATen-level graph ops into these; lowering turns each into
instructions of doc/isa.md. Their semantics are the ISA's at tensor level
(fp16 activations, fp32 accumulation, the rounding points of doc/isa.md §7),
so the reference executor can run a legalized graph and be compared with the
simulator. Shapes are token-major: ``M`` (tokens, possibly several leading
dims) first, channels last.
"""
from __future__ import annotations


from ..op import IRTypeError, attr, register_op
from ..types import TensorType, dtype_category
from .common import tensor

WEIGHT_FORMATS = ("int4", "int8", "fp16")
RESIDUAL = ("none", "add", "mul")
ELTWISE = ("add", "sub", "mul")
ACTIVATIONS = ("silu", "gelu", "sigmoid", "exp")


def _f16(t, op, what="input"):
    t = tensor(t, op, what)
    if t.dtype != "float16":
        raise IRTypeError(f"op '{op}': {what} must be float16 on the device, got {t}")
    return t


@register_op("dev.mvm", ("x", "weight", "*extra"),
             {"wfmt": attr("str", "int4"), "bias": attr("bool", False), "res": attr("str", "none"),
              "relu": attr("bool", False), "argmax": attr("bool", False)},
             doc="out = epilogue(x . W^T): x f16 [..., K], W [N, K] (float master weight, quantised to "
                 "wfmt when packed), extra = [bias f16 [N]] if bias, then [resid f16 [..., N]] if res; "
                 "out f16 [..., N], or int32 [...] row argmax")
def _mvm(types, attrs):
    x, w = _f16(types[0], "dev.mvm", "x"), tensor(types[1], "dev.mvm", "weight")
    if attrs["wfmt"] not in WEIGHT_FORMATS:
        raise IRTypeError(f"op 'dev.mvm': wfmt must be one of {WEIGHT_FORMATS}, got {attrs['wfmt']!r}")
    if attrs["res"] not in RESIDUAL:
        raise IRTypeError(f"op 'dev.mvm': res must be one of {RESIDUAL}, got {attrs['res']!r}")
    if w.ndim != 2 or x.shape[-1] != w.shape[1] or dtype_category(w.dtype) != "float":
        raise IRTypeError(f"op 'dev.mvm': x {x} does not match weight {w} ([N, K] float)")
    want = int(attrs["bias"]) + int(attrs["res"] != "none")
    if len(types) - 2 != want:
        raise IRTypeError(f"op 'dev.mvm': expected {want} extra inputs (bias, resid), got {len(types) - 2}")
    i = 2
    out_shape = x.shape[:-1] + (w.shape[0],)
    if attrs["bias"]:
        b = tensor(types[i], "dev.mvm", "bias")
        if b.shape != (w.shape[0],):
            raise IRTypeError(f"op 'dev.mvm': bias {b} must be [{w.shape[0]}]")
        i += 1
    if attrs["res"] != "none":
        r = _f16(types[i], "dev.mvm", "resid")
        if r.shape != out_shape:
            raise IRTypeError(f"op 'dev.mvm': resid {r} must have shape [{', '.join(map(str, out_shape))}]")
    if attrs["argmax"]:
        return TensorType(x.shape[:-1], "int32")
    return TensorType(out_shape, "float16")


def _norm(name, nparams):
    @register_op(name, ("x", "gamma") + (("beta",) if nparams == 2 else ()), {"eps": attr("float", 1e-5)},
                 doc=f"{name.split('.')[1]} over the last dim of x f16 [..., C]; parameters [C]; out f16")
    def rel(types, attrs, _n=name):
        x = _f16(types[0], _n)
        for p in types[1:]:
            p = tensor(p, _n, "parameter")
            if p.shape != (x.shape[-1],):
                raise IRTypeError(f"op '{_n}': parameter {p} must be [{x.shape[-1]}]")
        return TensorType(x.shape, "float16")


_norm("dev.rmsnorm", 1)
_norm("dev.layernorm", 2)


@register_op("dev.attention", ("q", "k", "v"),
             {"causal": attr("bool", True), "scale": attr("float"), "pos0": attr("?sym", None),
              "cache": attr("?str", None), "kv_len": attr("?sym", None), "capacity": attr("int", 0)},
             doc="q f16 [M, H, D], k/v f16 [L, HKV, D] (HKV divides H); softmax(q k^T * scale) v with "
                 "query i at position pos0 + i (default L - M) seeing keys <= its position when causal; "
                 "out f16 [M, H, D]. With ``cache`` (a persistent KV cache of ``capacity`` positions, "
                 "doc/llm.md): k/v are the M new tokens, appended at kv_len - M, and the queries attend "
                 "to the cache's keys [0, kv_len)")
def _attention(types, attrs):
    q, k, v = (_f16(t, "dev.attention", n) for t, n in zip(types, "qkv"))
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3:
        raise IRTypeError(f"op 'dev.attention': q, k, v must be [tokens, heads, dim], got {q}, {k}, {v}")
    if k.shape != v.shape or q.shape[2] != k.shape[2]:
        raise IRTypeError(f"op 'dev.attention': k {k} and v {v} must match, and q {q} must share the head dim")
    h, hkv = q.shape[1], k.shape[1]
    if attrs["cache"] is not None and (attrs["kv_len"] is None or attrs["capacity"] < 1):
        raise IRTypeError("op 'dev.attention': a cached attention needs kv_len and a positive capacity")
    if not (h.is_const and hkv.is_const and h.value % hkv.value == 0):
        raise IRTypeError(f"op 'dev.attention': q heads {h} must be a multiple of kv heads {hkv}")
    return TensorType(q.shape, "float16")


@register_op("dev.rope", ("x", "table"), {"pos0": attr("sym", 0), "interleaved": attr("bool", False)},
             doc="rotary embedding of x f16 [M, H, D] at positions pos0.. with table f32 [P, D] "
                 "(D/2 cosines then D/2 sines per position); out f16")
def _rope(types, attrs):
    x, t = _f16(types[0], "dev.rope"), tensor(types[1], "dev.rope", "table")
    if x.ndim != 3 or t.ndim != 2 or t.shape[1] != x.shape[2] or t.dtype != "float32":
        raise IRTypeError(f"op 'dev.rope': x {x} must be [M, H, D] and table {t} f32 [P, D]")
    return TensorType(x.shape, "float16")


@register_op("dev.eltwise", ("a", "b"), {"fn": attr("str")}, doc="a fn b for same-shape f16 tensors")
def _eltwise(types, attrs):
    a, b = _f16(types[0], "dev.eltwise", "a"), _f16(types[1], "dev.eltwise", "b")
    if attrs["fn"] not in ELTWISE:
        raise IRTypeError(f"op 'dev.eltwise': fn must be one of {ELTWISE}, got {attrs['fn']!r}")
    if a.shape != b.shape:
        raise IRTypeError(f"op 'dev.eltwise': shapes differ: {a} vs {b}")
    return TensorType(a.shape, "float16")


@register_op("dev.act", ("x",), {"fn": attr("str")}, doc="piecewise-linear activation (doc/isa.md §7.6)")
def _act(types, attrs):
    x = _f16(types[0], "dev.act")
    if attrs["fn"] not in ACTIVATIONS:
        raise IRTypeError(f"op 'dev.act': fn must be one of {ACTIVATIONS}, got {attrs['fn']!r}")
    return TensorType(x.shape, "float16")


@register_op("dev.softmax", ("x",), {"causal": attr("bool", False), "pos0": attr("sym", 0)},
             doc="row softmax over the last dim of x f16 [..., L]; out f16")
def _softmax(types, attrs):
    return TensorType(_f16(types[0], "dev.softmax").shape, "float16")


@register_op("dev.to_device", ("x",), doc="host float tensor -> device f16 (one fp16 rounding)")
def _to_device(types, attrs):
    x = tensor(types[0], "dev.to_device")
    return TensorType(x.shape, "float16")


@register_op("dev.to_host", ("x",), {"dtype": attr("dtype", "float32")},
             doc="device tensor -> host tensor of ``dtype`` (exact widening)")
def _to_host(types, attrs):
    x = tensor(types[0], "dev.to_host")
    return TensorType(x.shape, attrs["dtype"])


DEVICE_OPS = ("dev.mvm", "dev.rmsnorm", "dev.layernorm", "dev.attention", "dev.rope", "dev.eltwise",
              "dev.act", "dev.softmax", "dev.to_device", "dev.to_host")

