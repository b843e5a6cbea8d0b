"""The generated SystemVerilog package says what dlavm.target says (one source for compiler and RTL)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from dlavm.target import FIELD_NAMES, builtin_names, get_target, isa, pwl
from dlavm.target.schema import OPTIONAL_FIELDS
from hw_models.rtl import build
from hw_models.rtl.gen import package_text


def _params(text: str) -> dict[str, str]:
    return dict(re.findall(r"localparam \w+(?: \[[^\]]+\])? (\w+) = ([^;]+);", text))


@pytest.mark.parametrize("name", builtin_names())
def test_every_numeric_target_field_is_a_parameter_with_its_value(name):
    t = get_target(name)
    p = _params(package_text(t))
    for f in FIELD_NAMES:
        v = getattr(t, f)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or f in OPTIONAL_FIELDS:
            continue   # the HBM-model fields: the memory behind the ports is the harness's, not the core's
        key = f.upper()
        if isinstance(v, float):
            assert float(p[key + "_REAL"]) == v, f
        else:
            assert int(p[key].replace("64'd", "")) == v, f


def test_instruction_fields_sit_where_the_encoder_puts_them():
    """Every field's bit offset in the package, applied to an encoded instruction, reads back its value."""
    text = package_text(get_target("tiny"))
    p = _params(text)
    rng = np.random.default_rng(0)
    for op in isa.OPS:
        vals = {}
        for f in op.fields:
            if f.kind == "enum":
                vals[f.name] = f.choices[int(rng.integers(len(f.choices)))]
            elif f.kind == "flag":
                vals[f.name] = bool(rng.integers(2))
            elif f.kind == "addr":
                vals[f.name] = int(rng.integers(1 << 20)) * 32
            elif f.kind == "f32":
                vals[f.name] = float(np.float32(rng.standard_normal()))
            else:
                vals[f.name] = int(rng.integers(1 << 31))
        words = isa.encode(isa.make(op.mnemonic, **vals))
        bits = sum(w << (32 * i) for i, w in enumerate(words))
        assert int(p[f"OP_{op.mnemonic.upper()}"].replace("8'h", ""), 16) == op.opcode
        for f in op.fields:
            key = f"F_{op.mnemonic.upper()}_{f.name.upper()}"
            lo, width = int(p[key + "_LO"]), int(p[key + "_W"])
            raw = bits >> lo & ((1 << width) - 1)
            want = words[f.word] >> f.lo & f.mask
            assert raw == want, (op.mnemonic, f.name)


def test_the_softmax_exp_rom_is_the_built_in_table():
    text = package_text(get_target("tiny"))
    ent = np.ascontiguousarray(pwl.table("exp").entries, dtype="<f4").view("<u4").reshape(-1, 2)
    for fname, col in (("exp_slope", 0), ("exp_icpt", 1)):
        body = text[text.index(f"function automatic logic [31:0] {fname}"):]
        body = body[:body.index("endfunction")]
        rom = {int(i): int(v, 16) for i, v in re.findall(r"10'd(\d+): \w+ = 32'h([0-9A-F]+);", body)}
        assert [rom[i] for i in range(len(ent))] == [int(x) for x in ent[:, col]]


@pytest.mark.parametrize("name", builtin_names())
def test_the_package_is_lint_clean(name):
    build.lint("dlavm_pkg", [], target=name)
