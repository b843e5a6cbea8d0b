"""canonicalize removes identities and keeps values."""
from dlavm import sym
from dlavm.frontend.api import import_model
from dlavm.ir import Function, Literal, Module, PassManager, TensorType, Var, call, count_ops, post_order
from dlavm.passes import canonicalize, rewrite
from dlavm.passes.canonicalize import RULES
from dlavm.reference import compare_with_torch

SEQ = sym.Var("seq", 1, 64)


def _run(body, *params):
    mod = Module()
    mod.add(Function("f", list(params), body))
    return PassManager([canonicalize]).run(mod)["f"]


def test_identities_disappear_but_type_changing_ones_stay():
    x = Var("x", TensorType((1, SEQ, 8), "float32"))
    i = Var("i", TensorType((1, SEQ, 8), "int64"))
    body = call("add", call("mul", call("add", x, 0), 1.0), call("cast", call("mul", i, 1.0), dtype="float32"))
    out = _run(body, x, i)
    # add(x, 0) and mul(., 1.0) on floats vanish; mul(int, 1.0) changes dtype and stays
    assert count_ops(out) == {"add": 1, "mul": 1}


def test_reshape_and_permute_chains_collapse():
    x = Var("x", TensorType((2, SEQ, 4), "float32"))
    r = call("reshape", call("reshape", x, shape=(2 * SEQ, 4)), shape=(2, SEQ, 2, 2))
    p = call("permute", call("permute", r, dims=(0, 2, 1, 3)), dims=(0, 2, 1, 3))
    out = _run(call("reshape", p, shape=(2, SEQ, 4)), x)
    assert out.body is x


def test_every_rule_fires_somewhere():
    x = Var("x", TensorType((3, 4), "float32"))
    cases = [call("add", x, 0), call("sub", x, 0), call("mul", 1, x), call("div", x, 1),
             call("reshape", x, shape=(3, 4)), call("reshape", call("reshape", x, shape=(12,)), shape=(4, 3)),
             call("expand", x, shape=(3, 4)), call("cast", x, dtype="float32"),
             call("permute", x, dims=(0, 1)), call("permute", call("permute", x, dims=(1, 0)), dims=(1, 0))]
    fired: dict = {}
    for c in cases:
        rewrite(Function("f", [x], c), RULES, fired)
    assert set(fired) == {r.name for r in RULES}


def test_tiny_llama_canonicalized_still_matches_torch():
    raw = import_model("tiny-llama", max_seq=64, canonicalize=False)
    res = import_model("tiny-llama", max_seq=64)
    n_raw, n = len(post_order(raw.module["forward"].body)), len(post_order(res.module["forward"].body))
    assert n < n_raw
    assert not any(isinstance(a, Literal) and a.value == 0 and not isinstance(a.value, bool)
                   for node in post_order(res.module["forward"].body) if getattr(node, "op", None)
                   and node.op.name == "add" for a in node.args)
    for seq in (1, 33, 64):
        assert compare_with_torch(res.module, "forward", res.spec.module,
                                  res.spec.make_inputs(seq=seq), {"seq": seq}).ok
