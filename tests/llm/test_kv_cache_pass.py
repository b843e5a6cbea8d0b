"""What the kv_cache pass guarantees on the device graph (dlavm/passes/kv_cache.py)."""
from dlavm import sym
from dlavm.ir import Call, post_order
from tests.llm.conftest import compiled

MAX_CTX = 40


def _calls(fn, op):
    return [n for n in post_order(fn.body) if isinstance(n, Call) and n.op.name == op]


def test_positions_start_at_past_and_attention_reads_the_cache():
    mod = compiled("tiny-llama", "int8", MAX_CTX, target="tiny").device_module
    assert set(mod.functions) == {"logits", "greedy"}
    seq, ctx = sym.Var("seq", 1, MAX_CTX), sym.Var("ctx", 1, MAX_CTX)
    for fn in mod.functions.values():
        atts = _calls(fn, "dev.attention")
        assert [a.attrs["cache"] for a in atts] == ["layer0", "layer1"]
        assert all(a.attrs["kv_len"] == ctx and a.attrs["capacity"] == MAX_CTX and a.attrs["pos0"] == ctx - seq
                   for a in atts)
        assert all(r.attrs["pos0"] == ctx - seq for r in _calls(fn, "dev.rope"))
    assert mod["greedy"].body.type.dtype == "int32" and _calls(mod["greedy"], "dev.mvm")[-1].attrs["argmax"]
    assert mod.attrs["llm"]["requires"] == ["seq <= ctx"]


def test_learned_positions_start_at_past():
    mod = compiled("tiny-gpt2", "int8", MAX_CTX, target="tiny").device_module
    (ar,) = _calls(mod["logits"], "arange")
    seq, ctx = sym.Var("seq", 1, MAX_CTX), sym.Var("ctx", 1, MAX_CTX)
    assert ar.attrs["start"] == ctx - seq and ar.attrs["end"] == ctx


def test_decode_attention_overlaps_softmax_with_the_next_heads():
    """Under ``seq == 1`` the attention is issued per head group; the second group's mat_qk does not
    wait for the SFU (the first group's softmax runs meanwhile: dlavm/task/deps.py same-guard rule)."""
    cm = compiled("tiny-llama", "int8", MAX_CTX, target="tiny")
    st = cm.build.streams["greedy.0"]
    guard = {g["index"]: g["expr"] for g in st.guards}
    qk = [i for i, ins in enumerate(st.insns) if ins.op == "mat_qk" and guard.get(i) == "seq == 1"]
    assert len(qk) == 4  # 2 layers x 2 head groups
    assert "sfu" in st.insns[qk[0]].wait and "sfu" not in st.insns[qk[1]].wait
