"""Properties of the memory plan: no live overlap for any intervals, and every actual tensor
of every in-bounds dynamic size lies inside its planned slot and its region (every DMA in range)."""
from hypothesis import given, settings
from hypothesis import strategies as st

from dlavm import sym
from dlavm.ir import Constant, Function, TensorType, Tuple, Var, call
from dlavm.passes.memory_arena import align_up
from dlavm.passes.memory_plan import Buffer, PlanError, check_plan, plan_buffers, plan_function
from dlavm.target import get_target

VCU128 = get_target("vcu128")


@st.composite
def interval_sets(draw):
    n = draw(st.integers(0, 40))
    bufs = []
    for i in range(n):
        s = draw(st.integers(0, 30))
        bufs.append(Buffer(f"b{i}", draw(st.integers(0, 5000)), s, s + draw(st.integers(0, 12))))
    return bufs, draw(st.sampled_from([1, 16, 32, 64]))


@settings(max_examples=150, deadline=None)
@given(interval_sets())
def test_plan_buffers_never_overlaps_live_buffers(case):
    bufs, alignment = case
    offsets, size = plan_buffers(bufs, alignment)
    assert plan_buffers(list(bufs), alignment) == (offsets, size)
    aligned = {b.name: align_up(b.size, alignment) for b in bufs}
    assert size <= sum(aligned.values())
    assert size >= max(aligned.values(), default=0)
    for b in bufs:
        assert offsets[b.name] % alignment == 0
        assert offsets[b.name] + aligned[b.name] <= size
    for i, a in enumerate(bufs):
        for b in bufs[i + 1:]:
            if a.size and b.size and a.live_with(b):
                oa, ob = offsets[a.name], offsets[b.name]
                assert oa + aligned[a.name] <= ob or ob + aligned[b.name] <= oa, (a, b, oa, ob)


@st.composite
def graphs(draw):
    """A random DAG over x [seq, C] with unary, binary, view, weight and size-changing ops."""
    hi = draw(st.integers(1, 96))
    seq = sym.Var("seq", 1, hi)
    c = draw(st.sampled_from([4, 8, 24]))
    x = Var("x", TensorType((seq, c), "float32"))
    vals = [x]
    for i in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(["unary", "binary", "view", "linear", "concat"]))
        a = vals[draw(st.integers(0, len(vals) - 1))]
        if kind == "unary":
            v = call(draw(st.sampled_from(["relu", "exp", "sigmoid"])), a)
        elif kind == "binary":
            b = [u for u in vals if u.type.shape == a.type.shape]
            v = call("add", a, b[draw(st.integers(0, len(b) - 1))])
        elif kind == "view":
            n = a.type.shape[0]
            v = call("reshape", a, shape=(n * a.type.shape[1],)) if a.type.ndim == 2 else a
            v = call("reshape", v, shape=(n, a.type.shape[1])) if a.type.ndim == 2 else v
        elif kind == "linear":
            d = draw(st.sampled_from([4, 16, 40]))
            v = call("linear", a, Constant(f"w{i}", TensorType((d, a.type.shape[1]), "float32")))
        else:
            v = call("concat", a, a, axis=0)   # dim 2*seq: its bound is 2*hi
        vals.append(v)
    outs = [vals[-1]] + ([vals[draw(st.integers(0, len(vals) - 1))]] if draw(st.booleans()) else [])
    body = Tuple(outs) if len(outs) > 1 else outs[0]
    return Function("f", [x], body), seq, draw(st.lists(st.integers(1, hi), min_size=1, max_size=4))


@settings(max_examples=80, deadline=None)
@given(graphs())
def test_every_tensor_of_every_size_stays_in_its_slot_and_region(case):
    fn, seq, sizes = case
    plan = plan_function(fn, VCU128)
    regions = {r.name: r for r in VCU128.figures.regions}
    keys = [k for k in plan.buffers if not isinstance(k, str)]
    for s in sizes:
        env = {seq: s}
        actual = {k: sym.evaluate(k.type.nbytes(), env) for k in keys}
        for k in keys:
            addr, b = plan.address(k), plan.buffers[k]
            pool = plan.pools[plan.pool_of[k]]
            assert actual[k] <= b.size
            assert pool.base <= addr and addr + actual[k] <= pool.base + pool.size
            assert regions[pool.region].contains(addr, actual[k])
        roots = [k for k in keys if k not in plan.aliases]
        for i, a in enumerate(roots):
            for b in roots[i + 1:]:
                if actual[a] and actual[b] and plan.buffers[a].live_with(plan.buffers[b]):
                    pa, pb = plan.address(a), plan.address(b)
                    assert pa + actual[a] <= pb or pb + actual[b] <= pa


@settings(max_examples=40, deadline=None)
@given(graphs(), st.data())
def test_checker_catches_any_collision_of_live_buffers(case, data):
    fn, _, _ = case
    plan = plan_function(fn, VCU128)
    roots = [k for k in plan.buffers if not isinstance(k, str) and k not in plan.aliases and plan.buffers[k].size]
    pairs = [(a, b) for a in roots for b in roots if a is not b and plan.buffers[a].live_with(plan.buffers[b])
             and plan.buffers[b].size <= plan.buffers[a].size]
    if not pairs:
        return
    a, b = data.draw(st.sampled_from(pairs))
    delta = plan.offsets[a] - plan.offsets[b]
    for k in [b] + [v for v, r in plan.aliases.items() if r is b]:  # move b with its views onto a
        plan.offsets[k] += delta
    try:
        check_plan(plan, VCU128)
    except PlanError as e:
        assert "overlap" in str(e)
    else:
        raise AssertionError("check_plan accepted two live buffers at one address")
