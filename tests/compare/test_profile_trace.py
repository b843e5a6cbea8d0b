"""``dlavm profile``: the trace names ops (tag, layer, weights in ``args``), marks prefill and decode as
separate spans, drops empty tracks and shows the host-fallback kernels' measured wall time; ``--json``
and ``--plot``."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import dlavm
from dlavm.artifact import HostStep
from dlavm.cli.errors import EXIT_BAD_INPUT
from dlavm.cli.main import main
from dlavm.compare.trace_plot import PlotError, require_matplotlib, roofline_points
from dlavm.compiler import format_profile, profile
from dlavm.runtime.profile_trace import HOST_PID, PHASE_TID, drop_empty_tracks

#: Two linears on the device around host-fallback work (a reduction, an amax, an expand, reshapes).
MODEL = '''
import torch
from torch import nn


class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 16)

    def forward(self, x):
        s = self.a(x).sum(dim=1, keepdim=True).reshape(1, 4, 4).amax(dim=-1)
        return self.b(s.reshape(1, 1, 4).expand(1, 4, 4).reshape(1, 1, 16))


def build():
    torch.manual_seed(0)
    return M().eval(), (torch.randn(1, 4, 16),)
'''


@pytest.fixture(scope="module")
def host_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("profile")
    (root / "m.py").write_text(MODEL)
    cm = dlavm.compile(f"{root / 'm.py'}:build", target="tiny")
    cm.save(root / "art", driver=False)
    return cm, root


@pytest.fixture(scope="module")
def llm():
    from dlavm.llm import compile_llm
    return compile_llm("tiny-llama", target="tiny", max_seq=16)


def _x(trace, pid=0):
    return [e for e in trace["traceEvents"] if e["ph"] == "X" and e.get("pid", 0) == pid]


def test_host_fallback_is_measured_and_shown_separately(host_model, tmp_path):
    cm, _ = host_model
    p = profile(cm.manifest, cm._read, 1, trace_path=str(tmp_path / "t.json"))
    steps = [s for s in cm.manifest.entries["forward"].steps if isinstance(s, HostStep)]
    assert p["host"]["steps"] == len(steps) == 5
    assert {op for op, _, _ in p["host"]["per_op"]} == {"sum", "reshape", "amax", "expand"}
    assert sum(n for _, _, n in p["host"]["per_op"]) == len(steps)
    assert p["host"]["seconds"] > 0 and p["host"]["seconds"] == pytest.approx(sum(s for _, s, _ in p["host"]["per_op"]))
    text = format_profile(p)
    assert "host fallback: 5 step(s)" in text and "not in the device cycles above" in text
    trace = json.loads((tmp_path / "t.json").read_text())
    host = _x(trace, HOST_PID)
    assert [e["name"] for e in host] == [s.op for s in steps]
    assert [e["args"]["value"] for e in host] == [s.dst for s in steps]
    assert all(e["dur"] > 0 and e["args"]["phase"] == "run" for e in host)


def test_trace_events_carry_tag_layer_and_weights(host_model, tmp_path):
    cm, _ = host_model
    profile(cm.manifest, cm._read, 1, trace_path=str(tmp_path / "t.json"))
    trace = json.loads((tmp_path / "t.json").read_text())
    insns = [e for e in _x(trace) if e.get("tid") != PHASE_TID and "insn" in e["args"]]
    records = [r for s in cm.manifest.streams.values() for r in s.insns]
    assert len(insns) == len(records) == 2
    for e, r in zip(sorted(insns, key=lambda e: e["args"]["index"]), records):
        assert e["name"] == e["args"]["tag"] == r.tag and e["args"]["insn"] == "mvm"
        assert e["args"]["weights"] == list(r.weights) and e["args"]["entry"] == "forward"
        assert e["args"]["macs"] > 0 and e["args"]["bytes"] > 0
    named = {(e.get("pid", 0), e["tid"]) for e in trace["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
    used = {(e.get("pid", 0), e["tid"]) for e in trace["traceEvents"] if e["ph"] != "M"}
    assert named == used  # no empty tracks: every named track has events, every track with events is named
    assert "dma" not in {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}


def test_drop_empty_tracks_keeps_only_tracks_with_events():
    events = [{"name": "thread_name", "ph": "M", "pid": 0, "tid": t, "args": {"name": str(t)}} for t in (0, 1, 2)]
    events += [{"name": "process_name", "ph": "M", "pid": 5, "tid": 0, "args": {"name": "p"}},
               {"name": "x", "ph": "X", "pid": 0, "tid": 1, "ts": 0, "dur": 1}]
    assert drop_empty_tracks(events) == [events[1], events[4]]


def test_prefill_and_decode_are_separate_marked_spans(llm, tmp_path):
    p = profile(llm.manifest, llm._read, 1, ctx=5, trace_path=str(tmp_path / "t.json"))
    assert [(ph["phase"], ph["tokens"], ph["kv"], ph["measured"]) for ph in p["phases"]] == [
        ("prefill", 4, 4, False), ("decode", 1, 5, True)]
    assert p["phase"] == "decode" and p["phases"][1]["cycles"] == p["cycles"]
    assert "phases: prefill 4 token(s) to KV length 4" in format_profile(p)
    trace = json.loads((tmp_path / "t.json").read_text())
    spans = [e for e in _x(trace) if e["tid"] == PHASE_TID]
    assert [(e["name"], e["args"]["phase"], e["args"]["tokens"]) for e in spans] == [
        ("prefill (4 tokens)", "prefill", 4), ("decode (1 token)", "decode", 1)]
    assert spans[0]["ts"] + spans[0]["dur"] <= spans[1]["ts"]
    insns = [e for e in _x(trace) if "insn" in e["args"]]
    for e in insns:  # each instruction lies in the span of the phase it is labelled with
        span = spans[0] if e["args"]["phase"] == "prefill" else spans[1]
        assert span["ts"] <= e["ts"] <= span["ts"] + span["dur"]
    assert {e["args"]["phase"] for e in insns} == {"prefill", "decode"}
    layers = {e["args"].get("layer") for e in insns}
    assert {0, 1} <= layers
    assert any(w.startswith("model.model.layers.0.") for e in insns for w in e["args"]["weights"])
    pre = profile(llm.manifest, llm._read, 3)
    assert [ph["phase"] for ph in pre["phases"]] == ["prefill"] and pre["phase"] == "prefill"


def test_cli_json_and_plot(host_model, tmp_path):
    require_matplotlib()
    _, root = host_model
    res = CliRunner().invoke(main, ["profile", str(root / "art"), "--json", "--plot", str(tmp_path / "p.png")])
    assert res.exit_code == 0, res.stderr
    p = json.loads(res.stdout)
    assert p["entry"] == "forward" and p["host"]["steps"] == 5 and len(p["ops"]) == 2
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for tag, intensity, gmacs in roofline_points(p):
        o = next(o for o in p["ops"] if o["tag"] == tag)
        # the same quotient as MACs / cycles x clock, up to the order of the float operations
        assert intensity == o["macs"] / o["bytes"]
        assert gmacs == pytest.approx(o["macs"] / o["cycles"] * p["clock_mhz"] / 1e3, rel=1e-12)
        assert gmacs <= p["peak_macs_per_cycle"] * p["clock_mhz"] / 1e3


def test_plot_without_matplotlib_is_one_line(host_model, tmp_path, monkeypatch):
    _, root = host_model
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # `import matplotlib` now fails
    with pytest.raises(PlotError, match="needs matplotlib"):
        require_matplotlib()
    res = CliRunner().invoke(main, ["profile", str(root / "art"), "--plot", str(tmp_path / "p.png")])
    assert res.exit_code == EXIT_BAD_INPUT and not (tmp_path / "p.png").exists()
    assert res.stderr.splitlines() == [res.stderr.strip()] and res.stderr.startswith("error: --plot needs matplotlib")
