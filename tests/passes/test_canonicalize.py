"""canonicalize removes identities and keeps values."""
import pytest
import torch

from dlavm import sym
from dlavm.models import import_model
from dlavm.ir import Function, Literal, Module, PassManager, TensorType, Var, call, count_ops, post_order
from dlavm.passes import canonicalize, rewrite
from dlavm.passes.canonicalize import RULES
from dlavm.passes.rewrite import RewriteError, Rule
from dlavm.reference import compare_with_torch, run_function

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


def test_a_permute_of_unit_axes_is_a_reshape_and_keeps_the_values():
    x = Var("x", TensorType((1, SEQ, 1, 8), "float32"))
    moved = _run(call("permute", x, dims=(1, 0, 3, 2)), x)          # only the 1s move: [SEQ, 1, 8, 1]
    assert moved.body.op.name == "reshape" and tuple(moved.body.type.shape) == (SEQ, 1, 8, 1)
    kept = _run(call("permute", x, dims=(0, 3, 2, 1)), x)           # SEQ and 8 swap: a real permute
    assert kept.body.op.name == "permute"
    t = torch.randn(1, 5, 1, 8)
    mod = Module()
    mod.add(Function("f", [x], call("permute", x, dims=(1, 0, 3, 2))))
    want = run_function(mod, "f", [t])
    got = run_function(Module({"f": moved}), "f", [t])
    assert torch.equal(got, want)


def test_a_permute_sinks_below_a_reshape_of_unit_axes_and_cancels():
    """nn.MultiheadAttention: [S, H, D] -permute-> [H, S, D] -reshape-> [1, H, S, D] -permute-> [1, S, H, D]."""
    x = Var("x", TensorType((SEQ, 4, 8), "float32"))
    body = call("permute", call("reshape", call("permute", x, dims=(1, 0, 2)), shape=(1, 4, SEQ, 8)),
                dims=(0, 2, 1, 3))
    out = _run(body, x)
    assert out.body.op.name == "reshape" and out.body.args[0] is x
    t = torch.randn(5, 4, 8)
    mod = Module()
    mod.add(Function("f", [x], body))
    assert torch.equal(run_function(Module({"f": out}), "f", [t]), run_function(mod, "f", [t]))


def test_every_rule_fires_somewhere():
    x = Var("x", TensorType((3, 4), "float32"))
    n = Var("n", TensorType((3, 4), "int64"))
    u = Var("u", TensorType((1, 3, 4), "float32"))
    cases = [call("add", x, 0), call("sub", x, 0), call("mul", 1, x), call("div", x, 1),
             call("div", n, 1, rounding_mode="floor"),
             call("reshape", x, shape=(3, 4)), call("reshape", call("reshape", x, shape=(12,)), shape=(4, 3)),
             call("expand", x, shape=(3, 4)), call("cast", x, dtype="float32"),
             call("permute", x, dims=(0, 1)), call("permute", call("permute", x, dims=(1, 0)), dims=(1, 0)),
             call("permute", u, dims=(1, 0, 2)),
             call("permute", call("reshape", x, shape=(1, 3, 4)), dims=(0, 2, 1))]
    fired: dict = {}
    for c in cases:
        rewrite(Function("f", [x, n, u], c), RULES, fired)
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


@pytest.mark.parametrize("mode, want", [("floor", [1.0, -2.0, 2.0, -1.0]), ("trunc", [1.0, -1.0, 2.0, -0.0])])
def test_rounding_div_by_one_is_kept_on_floats(mode, want):
    x = Var("x", TensorType((4,), "float32"))
    mod = Module()
    mod.add(Function("f", [x], call("div", x, 1, rounding_mode=mode)))
    out = PassManager([canonicalize]).run(mod)
    data = torch.tensor([1.5, -1.5, 2.7, -0.2])
    assert count_ops(out["f"]) == {"div": 1}
    assert torch.equal(run_function(out, "f", [data]), torch.tensor(want))
    assert torch.equal(run_function(out, "f", [data]), torch.div(data, 1, rounding_mode=mode))


def test_rounding_div_of_integers_by_one_is_dropped():
    n = Var("n", TensorType((4,), "int32"))
    assert _run(call("div", n, 1, rounding_mode="trunc"), n).body is n


def test_every_rule_says_which_attribute_values_it_holds_for():
    assert all(r.attrs is not None for r in RULES)
    with pytest.raises(RewriteError, match=r"rule 'div-by-one' does not say .*\['rounding_mode'\] of op 'div'"):
        Rule("div-by-one", "div", lambda node: node.args[0], attrs={})
    with pytest.raises(RewriteError, match=r"op 'cast' has no attribute\(s\) \['mode'\]"):
        Rule("cast-noop", "cast", lambda node: None, attrs={"dtype": None, "mode": None})


def test_engine_refuses_a_rule_that_changes_the_type():
    x = Var("x", TensorType((3, 1), "float32"))
    y = Var("y", TensorType((3, 4), "float32"))
    bad = Rule("drop-broadcast", "add", lambda node: node.args[0], attrs={})
    with pytest.raises(RewriteError, match=r"rule 'drop-broadcast' changed the type of a 'add'"):
        rewrite(Function("f", [x, y], call("add", x, y)), [bad])
