"""Conformance of every registered device op, generated from the op registry (doc/device_ops.md).

For each ``dev.*`` op that has a spec, and each example graph the spec carries:

* the spec is complete: a reference kernel, examples that use the op, lowering rules whose
  instructions have an instruction model (``dlavm.target.insn_model``), a simulator unit
  (``hw_models.units``) and a section in doc/isa.md. An op missing any of these fails here with
  its name.
* the simulator runs the compiled example bit for bit like the spec's reference kernel, at size 1,
  at each tile edge of the target and its neighbours, and at the bound (the two are independent
  implementations of doc/isa.md: numerics are never shared);
* the compile report's cycle estimate agrees with the simulated busy cycles of the op, alone
  (``ALONE``) and inside whole models (``IN_MODEL``), within the tolerances stated below.

What an instruction touches in memory is checked against its declared accesses by
tests/hw_models/test_insn_conformance.py (bytes the simulator's memory model recorded).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

import dlavm.devops  # noqa: F401  (registers the specs)
from dlavm import sym
from dlavm.backend.report import op_rows
from dlavm.compiler import compile as dlavm_compile
from dlavm.compiler import profile
from dlavm.devops.examples import OpExample
from dlavm.devops.spec import DeviceOpSpec, Lowering
from dlavm.ir import Call, post_order
from dlavm.ir.op import list_ops
from dlavm.passes.quantize import bind_numerics
from dlavm.target import get_target
from dlavm.target.insn_model import INSN_MODELS
from hw_models.units import UNIT_OPS

torch = pytest.importorskip("torch")
from dlavm.reference.executor import run_function  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ISA_DOC = (ROOT / "doc" / "isa.md").read_text()

#: A ``tiny`` variant whose 1 KiB activation buffer makes a K = 32 mvm tile the tokens by 16, so the
#: tile edges (15/16/17, 31/32/33) fall inside the examples' bound of 40.
TARGET = get_target("tiny").replace(name="tiny-ops", act_buffer_bytes=1024)
#: The two ops the lowering handles as host <-> device copy steps rather than instructions.
TRANSFER_OPS = ("dev.to_device", "dev.to_host")

#: Simulated / estimated busy cycles of one op compiled alone, at the bound, on ``TARGET`` and
#: ``vcu128``. Below 1: the estimate takes every tile of a token loop at its full size (a remainder
#: tile of 8 rows is priced as 16). Above 1: the per-channel DMA setup and burst overheads the
#: estimate leaves out, which dominate the examples' small operands (measured 0.83 to 1.80).
ALONE = (0.75, 2.0)
#: The same ratio per op kind, summed over whole models (tiny-llama, tiny-gpt2), where operands
#: are large enough for bandwidth and compute to dominate (measured 1.00 to 1.20).
IN_MODEL = (0.9, 1.3)


def device_specs() -> list[DeviceOpSpec]:
    return [op.get_attr("spec") for op in list_ops() if op.get_attr("spec") is not None]


def spec_problems(spec: DeviceOpSpec) -> list[str]:
    """Why ``spec`` is incomplete (empty when it is complete); every line names the op."""
    out = []
    name = spec.name
    if not callable(spec.reference):
        out.append(f"{name}: no reference kernel")
    examples = tuple(spec.examples(np.random.default_rng(0))) if spec.examples else ()
    if not examples:
        out.append(f"{name}: no examples (DeviceOpSpec.examples) for the conformance suite")
    for ex in examples:
        used = {n.op.name for n in post_order([ex.module["forward"].body]) if isinstance(n, Call)}
        if name not in used:
            out.append(f"{name}: example '{ex.name}' does not use the op")
    if not spec.lowering and name not in TRANSFER_OPS:
        out.append(f"{name}: no lowering rule")
    for mnemonic in spec.emits:
        if mnemonic not in INSN_MODELS:
            out.append(f"{name}: instruction '{mnemonic}' has no model in dlavm/target/insn_model.py")
        if mnemonic not in UNIT_OPS:
            out.append(f"{name}: instruction '{mnemonic}' has no simulator unit in hw_models/units")
        if f"#### `{mnemonic}`" not in ISA_DOC:
            out.append(f"{name}: instruction '{mnemonic}' has no section in doc/isa.md")
    return out


def _cases():
    out = []
    for spec in device_specs():
        for ex in spec.examples(np.random.default_rng(0)) if spec.examples else ():
            out.append(pytest.param(spec.name, ex.name, id=f"{spec.name}:{ex.name}"))
    return out


def _example(op: str, name: str) -> OpExample:
    spec = next(s for s in device_specs() if s.name == op)
    return next(e for e in spec.examples(np.random.default_rng(0)) if e.name == name)


def _inputs(ex: OpExample, n: int, rng) -> list:
    env = {ex.dim: n}
    return [rng.standard_normal([sym.evaluate(d, env) for d in p.type.shape]).astype(np.float32)
            for p in ex.module["forward"].params]


def test_the_registry_holds_every_device_op():
    names = {s.name for s in device_specs()}
    assert {"dev.mvm", "dev.rmsnorm", "dev.layernorm", "dev.attention", "dev.rope", "dev.eltwise", "dev.act",
            "dev.softmax", *TRANSFER_OPS} <= names


@pytest.mark.parametrize("op", sorted(s.name for s in device_specs()))
def test_every_registered_device_op_has_a_complete_spec(op):
    spec = next(s for s in device_specs() if s.name == op)
    assert spec_problems(spec) == []


def test_an_incomplete_spec_is_reported_with_the_op_name():
    fake = DeviceOpSpec(name="dev.fake", inputs=("x",), attrs={}, type_rel=lambda t, a: t[0], doc="",
                        reference=None, lowering=(Lowering(lambda ctx, node: []),), emits=("fake_insn",))
    problems = spec_problems(fake)
    assert problems and all(p.startswith("dev.fake: ") for p in problems)
    text = "\n".join(problems)
    for why in ("no reference kernel", "no examples", "no model in dlavm/target/insn_model.py",
                "no simulator unit", "no section in doc/isa.md"):
        assert why in text


@pytest.mark.parametrize("op,name", _cases())
def test_simulator_matches_the_reference_kernel_bit_for_bit(op, name):
    ex = _example(op, name)
    mod = bind_numerics(ex.module, TARGET)
    cm = dlavm_compile(mod, target=TARGET)
    rng = np.random.default_rng(1)
    sizes = ex.sizes(TARGET)
    assert len(sizes) >= 2
    for n in sizes:
        xs = _inputs(ex, n, rng)
        got = cm.run(*xs)[0]
        want = run_function(mod, "forward", [torch.from_numpy(x) for x in xs])
        want = want.numpy() if hasattr(want, "numpy") else np.asarray(want)
        assert got.shape == want.shape, f"{op}:{name} at {ex.dim}={n}"
        np.testing.assert_array_equal(got, want, err_msg=f"{op}:{name} at {ex.dim}={n}")


def _estimated_and_simulated(cm, seq: int) -> tuple[dict, dict]:
    """Per op tag: the report's estimate and the simulator's busy cycles (timing-only run at ``seq``)."""
    est = {r[1]: r[4] for r in op_rows(cm.manifest, cm.build) if r[2] == "device"}
    p = profile(cm.manifest, cm._read, seq=seq, functional=False)
    return est, {tag: cyc for tag, cyc, _ in p["per_op"]}


@pytest.mark.parametrize("target", [TARGET, get_target("vcu128")], ids=["tiny-ops", "vcu128"])
@pytest.mark.parametrize("op,name", [c for c in _cases() if c.values[0] not in TRANSFER_OPS])
def test_report_estimate_is_close_to_the_simulated_cycles_of_the_op_alone(op, name, target):
    ex = _example(op, name)
    cm = dlavm_compile(bind_numerics(ex.module, target), target=target)
    bound = ex.sizes(target)[-1]
    est, sim = _estimated_and_simulated(cm, bound)
    tags = [t for t in est if t.startswith(op + "#")]
    assert tags, f"the report lists no {op}"
    for tag in tags:
        assert est[tag] > 0, f"{tag}: the estimate is 0"
        ratio = sim[tag] / est[tag]
        assert ALONE[0] <= ratio <= ALONE[1], f"{tag} on {target.name}: simulated {sim[tag]}, estimated {est[tag]}"


@pytest.mark.parametrize("model,target", [("tiny-llama", "tiny"), ("tiny-llama", "vcu128"), ("tiny-gpt2", "vcu128")])
def test_report_estimate_is_close_to_the_simulated_cycles_inside_a_model(model, target):
    cm = dlavm_compile(model, target=target, max_seq=64)
    est, sim = _estimated_and_simulated(cm, 64)
    kinds_est, kinds_sim = defaultdict(int), defaultdict(int)
    for tag, cyc in est.items():
        kinds_est[tag.split("#")[0]] += cyc
    for tag, cyc in sim.items():
        kinds_sim[tag.split("#")[0]] += cyc
    assert {"dev.mvm", "dev.attention"} <= set(kinds_est)
    for kind, e in kinds_est.items():
        ratio = kinds_sim[kind] / e
        assert IN_MODEL[0] <= ratio <= IN_MODEL[1], f"{kind} in {model} on {target}: simulated {kinds_sim[kind]}, estimated {e}"
