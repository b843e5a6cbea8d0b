"""Attention over query-row tiles (O(context) scratch, doc/memory.md) and the token loops the host
re-launches (doc/backend.md): the tiled forms give the untiled results bit for bit on the simulator."""
from __future__ import annotations

import numpy as np
import pytest

from dlavm.devops import attention
from dlavm.target import get_target

from dlavm.compiler import compile as dlavm_compile
from tests.backend.test_lower_ops import _example, _inputs

TARGET = get_target("tiny")


def test_row_tile_keeps_scratch_linear_in_the_context():
    # the Llama-2-7B shape at 4096 positions: 64 rows of 32 heads x 4096 fp32 scores + fp16 probabilities
    assert attention.row_tile(32, 4096, 4096) == 64
    assert 32 * 64 * 4096 * 6 <= attention.ATTENTION_SCRATCH_BYTES
    assert attention.row_tile(32, 512, 512) == 512          # fits whole: one instruction triple, as before
    assert attention.row_tile(4, 40, 40) == 40
    for heads, keys in ((32, 4096), (64, 8192), (1, 1 << 22), (128, 1 << 20)):
        t = attention.row_tile(heads, keys, 1 << 20)
        assert t >= 1 and (t == 1 or heads * t * keys * 6 <= attention.ATTENTION_SCRATCH_BYTES)
        assert t == 1 or heads * 2 * t * keys * 6 > attention.ATTENTION_SCRATCH_BYTES   # the largest power of 2


@pytest.mark.parametrize("case", ["gqa-causal=True", "gqa-causal=False"])
def test_tiled_attention_equals_the_untiled_bit_for_bit(case, monkeypatch, rng):
    mod = _example("dev.attention", case)
    whole = dlavm_compile(mod, target=TARGET)
    # 4 heads x 40 keys x 6 bytes = 960 bytes per row: a 3 KiB budget gives tiles of 2 rows
    monkeypatch.setattr(attention, "ATTENTION_SCRATCH_BYTES", 3 * 1024)
    tiled = dlavm_compile(mod, target=TARGET)
    (st,) = tiled.manifest.streams.values()
    assert len(st.loops) == 1 and st.loops[0].end - st.loops[0].start == 3   # mat_qk, softmax, mat_pv
    (st0,) = whole.manifest.streams.values()
    assert not st0.loops and st.count == st0.count
    scores = {n: b.size for n, b in tiled.manifest.memory["kv"].buffers.items() if n == "scratch.attn.scores"}
    assert scores == {"scratch.attn.scores": 4 * 2 * 40 * 4}
    a, b = whole.runtime(), tiled.runtime()
    for n in (1, 2, 3, 17, 40):
        q, k, v = _inputs(mod, n, rng)
        np.testing.assert_array_equal(a.run("forward", q, k, v)[0], b.run("forward", q, k, v)[0])
        launches = [x for x in b.launches("forward.0", {"seq": n}) if x[1] > x[0]]
        assert len(launches) == max(1, -(-n // 2))        # one launch per row tile


def test_llm_prefill_over_row_tiles_equals_the_untiled(monkeypatch):
    from dlavm.llm import compile_llm
    prompt = np.array([[3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46]], dtype=np.int64)
    whole = compile_llm("tiny-llama", target="tiny", weights="int8", max_seq=32)
    monkeypatch.setattr(attention, "ATTENTION_SCRATCH_BYTES", 4 * 32 * 6 * 4)   # tiles of 4 query rows
    tiled = compile_llm("tiny-llama", target="tiny", weights="int8", max_seq=32)
    assert sum(len(s.loops) for s in tiled.manifest.streams.values()) > \
        sum(len(s.loops) for s in whole.manifest.streams.values())
    outs = []
    for cm in (whole, tiled):
        rt = cm.runtime()
        n = prompt.shape[1]
        pre = rt.run("logits", prompt, dims={"ctx": n})[0]
        dec = rt.run("logits", prompt[:, :1], dims={"ctx": n + 1})[0]
        outs.append((pre, dec))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
