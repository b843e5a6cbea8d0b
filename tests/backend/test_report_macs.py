"""The compile report's MAC figures: each op's multiply-accumulates at the bound and the device fraction."""
from __future__ import annotations

import numpy as np
import pytest

from dlavm import sym
from dlavm.backend.report import device_mac_fraction, op_rows
from dlavm.compiler import compile as dlavm_compile
from dlavm.ir import Constant, Function, Module, TensorType, Var, call
from dlavm.target import get_target
from dlavm.task.lower import host_macs
from tests.e2e import device_graphs as G

# a small activation buffer: K=32 mvms split into a 32-token tile and a remainder tile of 8 at seq=40
TARGET = get_target("tiny").replace(name="tiny-smallbuf", act_buffer_bytes=2048)
SEQ = sym.Var("seq", 1, 40)


def test_device_macs_count_remainder_tiles_as_they_are():
    mod, _, _ = G.mlp(np.random.default_rng(0), SEQ, 128)  # D=32, I=48: two mvms, both tiled
    cm = dlavm_compile(mod, target=TARGET)
    rows = op_rows(cm.manifest, cm.build)
    mvm = [r for r in rows if r[1].startswith("dev.mvm")]
    assert [r[3] for r in mvm] == [2, 2]  # two tiles each
    assert [r[6] for r in mvm] == [40 * 32 * 48, 40 * 48 * 32]  # 32 + 8 tokens, not 2 x 32
    assert device_mac_fraction(rows) == {"forward": (2 * 40 * 32 * 48,) * 2, None: (2 * 40 * 32 * 48,) * 2}
    text = cm.report()
    assert "MACs (bound)" in text and "device MACs (bound): 122,880 of 122,880 (100.0%)" in text


def _host_then_device():
    """x [seq, 16] @ A [16, 32] on the host, then a device mvm [24, 32]."""
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((16, 32)).astype(np.float32),
              "w": rng.standard_normal((24, 32)).astype(np.float32)}
    x = Var("x", TensorType((SEQ, sym.const(16)), "float32"))
    a = Constant("a", TensorType((sym.const(16), sym.const(32)), "float32"))
    w = Constant("w", TensorType((sym.const(24), sym.const(32)), "float32"))
    h = call("matmul", x, a)
    y = call("dev.to_host", call("dev.mvm", call("dev.to_device", h), w, wfmt="fp16"))
    return Module({"forward": Function("forward", [x], y)}, params), h


def test_host_macs_and_the_fraction_line():
    mod, h = _host_then_device()
    assert host_macs(h) == 40 * 16 * 32
    cm = dlavm_compile(mod, target=TARGET)
    rows = op_rows(cm.manifest, cm.build)
    by_op = {r[1].split("#")[0]: r[6] for r in rows}
    assert by_op["matmul"] == 40 * 16 * 32 and by_op["dev.mvm"] == 40 * 32 * 24
    assert by_op["dev.to_device"] == by_op["dev.to_host"] == 0
    dev, tot = 40 * 32 * 24, 40 * 32 * 24 + 40 * 16 * 32
    assert device_mac_fraction(rows)[None] == (dev, tot)
    assert f"device MACs (bound): {dev:,} of {tot:,} ({100 * dev / tot:.1f}%)" in cm.report()


@pytest.mark.parametrize("op, args, attrs, want", [
    ("conv2d", [(2, 3, 9, 9), (4, 3, 3, 3)], {"stride": (2, 2), "padding": (1, 1)}, 2 * 4 * 5 * 5 * 3 * 3 * 3),
    ("conv2d", [(1, 4, 6, 6), (4, 2, 3, 3)], {"groups": 2}, 1 * 4 * 4 * 4 * 2 * 3 * 3),
    ("linear", [(3, 5, 8), (6, 8)], {}, 3 * 5 * 6 * 8),
    ("matmul", [(2, 1, 5, 8), (3, 8, 7)], {}, 2 * 3 * 5 * 7 * 8),
    ("attention", [(1, 4, 5, 16), (1, 2, 9, 16), (1, 2, 9, 8)], {}, 4 * 5 * 9 * 16 + 4 * 5 * 9 * 8),
    ("add", [(3, 5), (3, 5)], {}, 0),
])
def test_host_macs_per_op(op, args, attrs, want):
    vs = [Var(f"a{i}", TensorType(tuple(sym.const(d) for d in s), "float32")) for i, s in enumerate(args)]
    assert host_macs(call(op, *vs, **attrs)) == want
