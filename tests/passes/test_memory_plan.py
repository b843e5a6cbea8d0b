"""Memory plan: lifetimes, reuse, views, persistent pools, and a checker that catches bad plans."""
import dataclasses

import pytest

from dlavm import sym
from dlavm.ir import Constant, Function, TensorType, Tuple, Var, call, post_order
from dlavm.passes.memory_plan import (Buffer, MemoryPlan, PlanError, PoolPlan, check_plan, plan_buffers,
                                      plan_function)
from dlavm.target import get_target

SEQ = sym.Var("seq", 1, 64)
VCU128 = get_target("vcu128")
TINY = get_target("tiny")


def _x(c=16, name="x"):
    return Var(name, TensorType((SEQ, c), "float32"))


def _fn(body, *params):
    return Function("f", list(params), body)


def _overlap(plan, a, b):
    pa, pb = plan.address(a), plan.address(b)
    return pa < pb + plan.buffers[b].size and pb < pa + plan.buffers[a].size


def test_a_chain_reuses_two_slots():
    x = _x()
    h = x
    for _ in range(6):
        h = call("relu", h)
    plan = plan_function(_fn(h, x), VCU128)
    slot = 64 * 16 * 4
    # at every step one value is read while the next is written: two slots suffice
    assert plan.pools["activations"].size == 2 * slot
    assert plan.pools["activations"].region == "ddr"
    assert plan.address(x) >= VCU128.figures.region("ddr").base


def test_plan_buffers_reuses_dead_slots_and_packs_holes():
    bufs = [Buffer("x", 100, 0, 1), Buffer("y", 80, 0, 3), Buffer("z", 70, 2, 3), Buffer("w", 20, 2, 3)]
    offsets, size = plan_buffers(bufs, alignment=4)
    # largest first: x at 0, y above it; z reuses x's dead slot; w takes the smallest hole (70..100)
    assert offsets == {"x": 0, "y": 100, "z": 0, "w": 72}
    assert size == 180
    again = plan_buffers(list(bufs), alignment=4)
    assert again == (offsets, size)              # deterministic


def test_outputs_are_never_reused_while_live():
    x = _x()
    early = call("relu", x)
    h = early
    for _ in range(5):
        h = call("sigmoid", h)
    fn = _fn(Tuple([early, h]), x)
    plan = plan_function(fn, VCU128)
    last = len(post_order(fn.body)) - 1
    assert plan.buffers[early].end == last
    for key, b in plan.buffers.items():
        if key is not early and plan.pool_of.get(key) == "activations" and key not in plan.aliases:
            assert not _overlap(plan, early, key), f"{b.name} reuses the output's slot"


def test_views_alias_their_input_and_extend_its_life():
    x = _x()
    a = call("relu", x)
    v = call("reshape", a, shape=(SEQ * 16,))
    b = call("sigmoid", call("exp", call("relu", x)))
    out = call("add", call("reshape", b, shape=(SEQ * 16,)), v)
    plan = plan_function(_fn(out, x), VCU128)
    assert v in plan.aliases and plan.aliases[v] is a
    assert plan.address(v) == plan.address(a)
    assert plan.buffers[a].end >= plan.buffers[v].end   # a lives as long as its view is used
    for key in plan.buffers:
        if key is not a and key not in plan.aliases and plan.pool_of[key] == "activations" \
                and plan.buffers[key].live_with(plan.buffers[a]):
            assert not _overlap(plan, a, key)


def test_custom_view_rule_is_honoured():
    x = _x()
    p = call("permute", call("relu", x), dims=(1, 0))
    plan = plan_function(_fn(call("sigmoid", p), x), VCU128,
                         is_view=lambda n: n.op.name in ("permute", "reshape"))
    assert p in plan.aliases


def test_parameters_live_from_the_first_step():
    x, y = _x(name="x"), _x(name="y")
    h = call("relu", x)
    for _ in range(4):
        h = call("relu", h)
    plan = plan_function(_fn(call("add", h, y), x, y), VCU128)
    assert plan.buffers[y].start == 0
    assert not _overlap(plan, x, y)


def test_weights_and_kv_are_persistent_pools_in_hbm():
    x = _x(16)
    w = Constant("fc.weight", TensorType((32, 16), "float32"))
    w_again = Constant("fc.weight", TensorType((32, 16), "float32"))  # tied: one slot
    out = call("add", call("linear", x, w), call("linear", x, w_again))
    plan = plan_function(_fn(out, x), VCU128, weights={"fc.weight": 300, "lm.scales": 64},
                         kv={"k0": 4096, "v0": 4096})
    hbm = VCU128.figures.region("hbm")
    assert plan.pools["weights"].region == "hbm" and plan.pools["kv"].region == "hbm"
    assert plan.buffers["fc.weight"].size == 300          # packed size wins over the type's 2048
    assert plan.address(w) == plan.address(w_again) == plan.address("fc.weight") == hbm.base
    assert plan.address("lm.scales") == hbm.base + 320    # next aligned slot
    assert plan.pools["kv"].base == plan.pools["weights"].base + plan.pools["weights"].size
    assert plan.address("v0") == plan.address("k0") + 4096
    assert x in plan.offsets and w not in plan.offsets


def test_sizes_are_upper_bounds_and_unbounded_sizes_are_refused():
    x = _x(8)
    plan = plan_function(_fn(call("relu", x), x), VCU128)
    assert plan.buffers[x].size == 64 * 8 * 4
    free = sym.Var("n", 1, None)
    y = Var("y", TensorType((free, 8), "float32"))
    with pytest.raises(PlanError, match=r"%y .*no upper bound"):
        plan_function(_fn(call("relu", y), y), VCU128)


def test_size_of_overrides_the_type_size():
    x = _x(8)
    r = call("relu", x)
    plan = plan_function(_fn(r, x), VCU128, size_of=lambda n: n.type.numel() * 2)  # fp16 on the device
    assert plan.buffers[r].size == 64 * 8 * 2


def test_a_plan_too_big_for_its_region_is_refused():
    big = Var("big", TensorType((4096, 4096), "float32"))   # 64 MiB; tiny's DDR holds 4 MiB
    with pytest.raises(PlanError, match="does not fit region ddr"):
        plan_function(_fn(call("relu", big), big), TINY)


def _a_plan():
    x = _x()
    a = call("relu", x)
    b = call("exp", a)
    c = call("add", a, b)
    return plan_function(_fn(call("sigmoid", c), x), VCU128), a, b


def test_checker_names_two_overlapping_live_buffers():
    plan, a, b = _a_plan()
    check_plan(plan, VCU128)
    plan.offsets[b] = plan.offsets[a]
    with pytest.raises(PlanError, match=r"live buffers overlap: 'relu@\d+' \[0x[0-9a-f]+.*'exp@\d+' \[0x"):
        check_plan(plan, VCU128)


def test_checker_catches_a_buffer_past_its_pool_or_region_and_misalignment():
    plan, a, _ = _a_plan()
    good = dict(plan.offsets)
    plan.offsets[a] = plan.pools["activations"].size
    with pytest.raises(PlanError, match=r"'relu@\d+' .* outside pool 'activations'"):
        check_plan(plan, VCU128)
    plan.offsets.update(good)
    plan.offsets[a] += 4
    with pytest.raises(PlanError, match="not 32-byte aligned"):
        check_plan(plan, VCU128)
    plan.offsets.update(good)
    ddr = VCU128.figures.region("ddr")
    plan.pools["activations"] = dataclasses.replace(plan.pools["activations"], base=ddr.end - 32)
    with pytest.raises(PlanError, match="does not fit region ddr"):
        check_plan(plan, VCU128)


def test_checker_catches_overlapping_pools_and_bad_views():
    x = _x()
    v = call("reshape", call("relu", x), shape=(SEQ * 16,))
    w = Constant("w", TensorType((4, 4), "float32"))
    plan = plan_function(_fn(call("add", call("sigmoid", v), call("sum", w)), x), VCU128)
    plan.pools["kv"] = PoolPlan(plan.pools["weights"].base, 64, "hbm")
    with pytest.raises(PlanError, match=r"pools '(kv|weights)' .* and '(kv|weights)' .* overlap"):
        check_plan(plan, VCU128)
    plan.pools["kv"] = PoolPlan(plan.pools["weights"].base + plan.pools["weights"].size, 0, "hbm")
    plan.offsets[v] += 32
    with pytest.raises(PlanError, match="not inside the storage it aliases"):
        check_plan(plan, VCU128)


def test_checker_on_a_hand_built_plan():
    plan = MemoryPlan()
    plan.pools["activations"] = PoolPlan(VCU128.ddr_base, 128, "ddr")
    for k, (off, s, e) in {"p": (0, 0, 3), "q": (64, 2, 5), "r": (0, 4, 6)}.items():
        plan.offsets[k], plan.pool_of[k], plan.buffers[k] = off, "activations", Buffer(k, 64, s, e)
    check_plan(plan, VCU128)                  # p and r share bytes but never live together
    plan.buffers["r"] = Buffer("r", 64, 3, 6)  # now r starts while p is still live
    with pytest.raises(PlanError, match="'p' .* and 'r'"):
        check_plan(plan, VCU128)


def test_a_ten_thousand_node_chain_plans_into_a_few_live_tensors():
    # a 32-layer-sized chain with residual adds and weights: ~10,000 nodes (its planning time is
    # measured by bench/memory_plan.py, not asserted here: wall-clock limits fail under load)
    x = _x(64)
    h = x
    for i in range(2500):
        w = Constant(f"layer{i}.weight", TensorType((64, 64), "float32"))
        h = call("add", h, call("relu", call("linear", h, w)))
    fn = _fn(h, x)
    plan = plan_function(fn, VCU128)
    assert len(post_order(fn.body)) > 10_000
    assert plan.pools["activations"].size <= 4 * 64 * 64 * 4


def test_an_imported_model_plans_below_no_reuse():
    from dlavm.models import import_model
    fn = import_model("mlp", max_seq=32, keep_weights=False).module["forward"]
    plan = plan_function(fn, VCU128)
    acts = [b for k, b in plan.buffers.items() if plan.pool_of[k] == "activations" and k not in plan.aliases]
    assert 0 < plan.pools["activations"].size < sum(b.size for b in acts)
    assert plan.pools["weights"].size >= (64 * 256 + 256 + 256 * 32 + 32) * 4
