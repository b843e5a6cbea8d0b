"""``is_size_only`` memoised inside ``size_only_memo`` gives the answer of the plain definition: no
``Var`` among the nodes a node depends on.

The memo is what keeps legalize linear in the graph (every RoPE, eltwise and attention match asks);
a wrong memo would silently move ops between host and device, so every answer is checked against
the definition: on random graphs with questions interleaved with building, and on every node the
device pipeline asked about for real models.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlavm.ir import Constant, Literal, PassContext, PassManager, TensorType, Tuple, Var, call, post_order
from dlavm.ir.node import GetItem
from dlavm.passes import device_pipeline
from dlavm.passes.fold import _SIZE_ONLY_MEMO, is_size_only, size_only_memo

T = TensorType((4,), "float32")


def depends_on_no_input(node) -> bool:
    """The definition, walked afresh every time (no memo)."""
    return not any(isinstance(n, Var) for n in post_order(node))


#: a step: build a call of one or two earlier values, a tuple and one of its fields, a fresh leaf,
#: or ask about an earlier value (ints pick earlier values modulo how many there are)
STEPS = st.lists(st.one_of(
    st.tuples(st.just("unary"), st.sampled_from(["neg", "exp", "cast"]), st.integers(0, 10 ** 6)),
    st.tuples(st.just("binary"), st.sampled_from(["add", "mul"]), st.integers(0, 10 ** 6), st.integers(0, 10 ** 6)),
    st.tuples(st.just("tuple"), st.integers(0, 10 ** 6), st.integers(0, 10 ** 6)),
    st.tuples(st.just("leaf"), st.sampled_from(["var", "weight", "literal"])),
    st.tuples(st.just("ask"), st.integers(0, 10 ** 6)),
), min_size=1, max_size=60)


def _run(steps, seed_leaves):
    vals = list(seed_leaves)
    answers = []
    for step in steps:
        kind = step[0]
        pick = lambda i: vals[i % len(vals)]  # noqa: E731
        if kind == "unary":
            vals.append(call(step[1], pick(step[2]), dtype="float32") if step[1] == "cast"
                        else call(step[1], pick(step[2])))
        elif kind == "binary":
            vals.append(call(step[1], pick(step[2]), pick(step[3])))
        elif kind == "tuple":
            tup = Tuple([pick(step[1]), pick(step[2])])
            vals.append(GetItem(tup, step[1] % 2))
        elif kind == "leaf":
            vals.append({"var": lambda: Var(f"x{len(vals)}", T), "weight": lambda: Constant(f"w{len(vals)}", T),
                         "literal": lambda: Literal(float(len(vals)))}[step[1]]())
        else:
            node = pick(step[1])
            answers.append((node, is_size_only(node)))
    for node in vals:  # and every value at the end, in reverse order of building
        answers.append((node, is_size_only(node)))
    return answers


@settings(max_examples=300, deadline=None, derandomize=True)
@given(STEPS, st.sampled_from(["var", "weight", "both"]))
def test_memoised_answer_is_the_definition_on_random_graphs(steps, leaves):
    seed = {"var": [Var("x", T)], "weight": [Constant("w", T)], "both": [Var("x", T), Constant("w", T)]}[leaves]
    with size_only_memo() as memo:
        answers = _run(steps, seed)
        # every node the memo holds, asked or only walked through, has the definition's answer
        assert all(v == depends_on_no_input(n) for n, v in memo.items())
    assert all(got == depends_on_no_input(node) for node, got in answers)
    # outside any scope the same questions get the same answers, and nothing is remembered
    assert all(is_size_only(node) == got for node, got in answers)
    assert _SIZE_ONLY_MEMO.get() is None


def test_scopes_nest_on_one_memo_and_close_with_the_outermost():
    x, w = Var("x", T), Constant("w", T)
    shared = call("add", call("neg", w), Literal(1.0))
    with size_only_memo() as outer:
        with size_only_memo() as inner:
            assert inner is outer
            assert is_size_only(shared) and not is_size_only(call("mul", shared, x))
        assert shared in outer and w in outer and x in outer and outer[x] is False
    assert _SIZE_ONLY_MEMO.get() is None
    with size_only_memo() as fresh:
        assert fresh == {}


def test_a_long_chain_needs_no_recursion():
    x = Var("x", T)
    node = x
    for _ in range(50_000):
        node = call("neg", node)
    with size_only_memo() as memo:
        assert not is_size_only(node)
        assert len(memo) == 50_001


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-gpt2", "tiny-qwen2-pad"])
def test_every_answer_the_device_pipeline_got_is_the_definition(model):
    """RoPE tables and masks (size-only) beside activations (not): legalize, fuse and the host-op
    report ask about both; the outer scope keeps every answer the pipeline's passes were given."""
    pytest.importorskip("torch")
    from dlavm.models import import_model
    mod = import_model(model, max_seq=32).module
    with size_only_memo() as memo:
        PassManager(device_pipeline("int4")).run(mod, PassContext())
    assert any(memo.values()) and not all(memo.values())
    wrong = [n for n, v in memo.items() if v != depends_on_no_input(n)]
    assert not wrong, f"{len(wrong)} wrong memoised answers, e.g. {wrong[:3]}"
