"""Traversal, printing, structural equality and the pass manager."""
import os

from dlavm import sym
from dlavm.ir import (Call, Constant, Function, Module, Mutator, PassContext, PassManager,
                      TensorType, Var, Visitor, call, count_ops, function_pass, post_order,
                      print_function, structural_equal, structural_hash, users)

SEQ = sym.Var("seq", 1, 4096)


def mlp_fn(name="x"):
    x = Var(name, TensorType((1, SEQ, 64), "float32"))
    w1 = Constant("fc1.weight", TensorType((256, 64), "float32"))
    w2 = Constant("fc2.weight", TensorType((32, 256), "float32"))
    h = call("relu", call("linear", x, w1))
    return Function("forward", [x], call("linear", h, w2))


def test_post_order_deep_chain_has_no_recursion_limit():
    x = Var("x", TensorType((4,), "float32"))
    node = x
    for _ in range(60_000):
        node = call("neg", node)
    order = post_order(node)
    assert len(order) == 60_001 and order[0] is x and order[-1] is node
    fn = Function("f", [x], node)
    assert structural_hash(fn) == structural_hash(Function("f", [x], node))
    assert len(print_function(fn).splitlines()) == 60_003


def test_shared_nodes_visited_once_and_users():
    x = Var("x", TensorType((4,), "float32"))
    a = call("exp", x)
    b = call("add", a, a)
    assert post_order(b) == [x, a, b]
    assert users(b)[a] == [b, b]


def test_printer_is_readable_and_deterministic():
    text = print_function(mlp_fn())
    assert text.splitlines()[0] == "fn @forward(%x: f32[1, seq, 64]) -> f32[1, seq, 32] {"
    assert "%0 = linear(%x, @fc1.weight) : f32[1, seq, 256]" in text
    assert "%1 = relu(%0) : f32[1, seq, 256]" in text
    assert text.endswith("  return %2\n}")
    assert text == print_function(mlp_fn())


def test_structural_equality_ignores_names_but_not_structure():
    a, b = mlp_fn("x"), mlp_fn("y")
    assert structural_equal(a, b) and structural_hash(a) == structural_hash(b)
    x = Var("x", TensorType((1, SEQ, 64), "float32"))
    w1 = Constant("fc1.weight", TensorType((256, 64), "float32"))
    w2 = Constant("fc2.weight", TensorType((32, 256), "float32"))
    c = Function("forward", [x], call("linear", call("sigmoid", call("linear", x, w1)), w2))
    assert not structural_equal(a, c)
    # sharing matters: f(x) + f(x) with one node vs two equal nodes
    e1 = call("exp", x)
    e2 = call("exp", x)
    shared = Function("f", [x], call("add", e1, e1))
    unshared = Function("f", [x], call("add", e1, e2))
    assert not structural_equal(shared, unshared)


def test_visitor_counts_and_mutator_rewrites():
    fn = mlp_fn()

    class Flops(Visitor):
        total = 0

        def visit_call(self, node: Call):
            if node.op.name == "linear":
                o, i = node.args[1].type.shape
                self.total += 2 * int(o) * int(i)

    v = Flops()
    v.run(fn.body)
    assert v.total == 2 * (256 * 64 + 32 * 256)

    class ReluToSigmoid(Mutator):
        def visit_call(self, node):
            node = super().visit_call(node)
            if node.op.name == "relu":
                return call("sigmoid", node.args[0])
            return node

    out = ReluToSigmoid().mutate_function(fn)
    assert count_ops(out) == {"linear": 2, "sigmoid": 1}
    assert Mutator().mutate_function(fn) is fn  # identity keeps the very same graph


def test_pass_manager_times_dumps_and_verifies(tmp_path):
    @function_pass("relu-to-sigmoid")
    def relu_to_sigmoid(fn):
        """Replaces every relu by a sigmoid."""
        class M(Mutator):
            def visit_call(self, node):
                node = super().visit_call(node)
                return call("sigmoid", node.args[0]) if node.op.name == "relu" else node
        return M().mutate_function(fn)

    mod = Module()
    mod.add(mlp_fn())
    mod.params = {"fc1.weight": None, "fc2.weight": None}
    seen = []
    ctx = PassContext(dump_dir=str(tmp_path), on_progress=lambda *a: seen.append(a))
    out = PassManager([relu_to_sigmoid]).run(mod, ctx)
    assert count_ops(out["forward"]) == {"linear": 2, "sigmoid": 1}
    assert sorted(os.listdir(tmp_path)) == ["00-input.txt", "01-relu-to-sigmoid.txt"]
    assert "sigmoid(" in (tmp_path / "01-relu-to-sigmoid.txt").read_text()
    assert ctx.records[0].name == "relu-to-sigmoid" and ctx.records[0].seconds >= 0
    assert seen == [("relu-to-sigmoid", 1, 1)]


def test_pass_records_count_the_nodes_each_pass_got_and_gave():
    @function_pass("drop-relu")
    def drop_relu(fn):
        class M(Mutator):
            def visit_call(self, node):
                node = super().visit_call(node)
                return node.args[0] if node.op.name == "relu" else node
        return M().mutate_function(fn)

    @function_pass("keep")
    def keep(fn):
        return fn

    mod = Module()
    mod.add(mlp_fn())
    ctx = PassContext(verify=False)
    out = PassManager([keep, drop_relu, keep]).run(mod, ctx)
    counts = [(r.nodes_before, r.nodes_after) for r in ctx.records]
    n_in, n_out = len(post_order(mod["forward"].body)), len(post_order(out["forward"].body))
    assert counts == [(n_in, n_in), (n_in, n_out), (n_out, n_out)] and n_out == n_in - 1


def test_passes_run_with_the_garbage_collector_paused_and_it_restarts_after():
    import gc

    import pytest

    from dlavm.ir import paused_gc

    seen = []

    @function_pass("look")
    def look(fn):
        seen.append(gc.isenabled())
        return fn

    @function_pass("fail")
    def fail(fn):
        raise ValueError("boom")

    mod = Module()
    mod.add(mlp_fn())
    was = gc.isenabled()
    gc.enable()
    try:
        PassManager([look]).run(mod, PassContext(verify=False))
        assert seen == [False] and gc.isenabled()
        with pytest.raises(ValueError, match="boom"):  # restarted when a pass raises, too
            PassManager([look, fail]).run(mod, PassContext(verify=False))
        assert gc.isenabled()
        with paused_gc():  # nested regions: the collector restarts when the outermost closes
            PassManager([look]).run(mod, PassContext(verify=False))
            assert not gc.isenabled()
        assert gc.isenabled()
        gc.disable()  # a caller that disabled the collector keeps it disabled
        PassManager([look]).run(mod, PassContext(verify=False))
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()
        else:
            gc.disable()


def test_verify_rejects_free_variables_and_unknown_weights():
    import pytest

    from dlavm.ir import IRError, verify_module
    x = Var("x", TensorType((4,), "float32"))
    stray = Var("stray", TensorType((4,), "float32"))
    mod = Module()
    mod.add(Function("f", [x], call("add", x, stray)))
    with pytest.raises(IRError, match="uses %stray, which is not a parameter"):
        verify_module(mod)
    mod2 = Module()
    mod2.add(Function("f", [x], call("add", x, Constant("w", TensorType((4,), "float32")))))
    with pytest.raises(IRError, match="unknown weight @w"):
        verify_module(mod2)
