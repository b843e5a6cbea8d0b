"""END TO END over a real socket: a C++ driver (run_artifact.cc, written the
way generated drivers are) opens an artifact, loads weights into the
simulator server, patches the dynamic words of an AUX stream assembled by
dlavm.target.asm, runs it and reads the result. The output bytes, the cycle
count and the host-access trace (every write_reg/write_mem/read_mem) must
equal an in-process hw_models.Simulator run of the same driver steps."""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from clib_testing import CLIB, CXXFLAGS, ROOT, ServerThread, run_program, write_artifact
from dlavm.devlink import protocol, socket_client
from dlavm.artifact import (FORMAT, MANIFEST_VERSION, Buffer, Dim, Entry, EntryOutput, InsnRecord, Manifest, Patch,
                            Pool, Stream, StreamStep, TargetInfo, ToHostStep, ValueInfo, WeightBlob, open_artifact,
                            read_artifact_file)
from dlavm.target import asm, get_target, isa
from dlavm.target.layout import pack_int4, quantize_int4
from hw_models import Simulator
from hw_models.server import RecordingHAL

K, N, M_MAX = 160, 48, 4          # K not a multiple of the int4 group: padded rows


def _build_artifact(directory):
    t = get_target("tiny")
    hbm, ddr, sram = (t.figures.region(r).base for r in ("hbm", "ddr", "sram"))
    rng = np.random.default_rng(11)
    x = rng.standard_normal((M_MAX, K)).astype(np.float16)
    gamma = (1 + 0.1 * rng.standard_normal(K)).astype(np.float16)
    q, scales = quantize_int4(rng.standard_normal((N, K)).astype(np.float32), t.int4_group)
    w = pack_int4(q, t.int4_group)
    a_w, a_s, a_x, a_g = hbm, hbm + 0x10000, hbm + 0x18000, hbm + 0x19000   # preloaded: memory.weights
    a_h, a_y = sram + 0x2000, sram + 0x3000                                  # scratch: memory.activations.main
    text = "\n".join([
        f"rmsnorm src={a_x:#x} dst={a_h:#x} gamma={a_g:#x} rows={M_MAX} cols={K} eps=1e-5",
        f"mvm wfmt=int4 x={a_h:#x} w={a_w:#x} wscale={a_s:#x} out={a_y:#x} m={M_MAX} k={K} n={N} wait=sfu",
    ]) + "\n"
    stream = asm.assemble(text)
    assert len(stream) == 2 * isa.INSN_BYTES
    blobs = {"x": (x, a_x), "gamma": (gamma, a_g), "w": (w, a_w), "s": (scales, a_s)}
    files = {"streams/main.bin": stream, "streams/main.asm": text.encode(),
             **{f"weights/{n}.bin": data.tobytes() for n, (data, _) in blobs.items()}}
    rows, m = isa.op_format("rmsnorm").field("rows"), isa.op_format("mvm").field("m")
    y_shape = ("M", str(N))
    manifest = Manifest(   # a hand-made artifact in the real schema (doc/backend.md)
        format=FORMAT, version=MANIFEST_VERSION, isa_version=f"{isa.ISA_VERSION >> 16}.{isa.ISA_VERSION & 0xFFFF}",
        target=TargetInfo(t.name, t.fingerprint(), t.to_dict()), model="e2e", weights_format="int4",
        weights_complete=True, dims={"M": Dim(1, M_MAX)},
        memory={"weights": Pool("hbm", hbm, 0x20000, {n: Buffer(addr, data.nbytes) for n, (data, addr)
                                                      in blobs.items()}),
                "activations.main": Pool("sram", sram, 0x4000, {}),
                "streams": Pool("ddr", ddr, 2 * isa.INSN_BYTES, {})},
        weights=tuple(WeightBlob(n, f"weights/{n}.bin", addr, data.nbytes) for n, (data, addr) in blobs.items()),
        host_consts=(),
        entries={"main": Entry((), (), (), (EntryOutput("y", y_shape, "float16"),),
                               {"y_dev": ValueInfo(y_shape, "float16", a_y, "dense"),
                                "y": ValueInfo(y_shape, "float16", None, "dense")},
                               (StreamStep("main"), ToHostStep("y_dev", "y", "float16")))},
        streams={"main": Stream("streams/main.bin", "streams/main.asm", ddr, 2,
                                (Patch(0, "rows", rows.word, rows.lo, rows.width, "uint", "M"),
                                 Patch(1, "m", m.word, m.lo, m.width, "uint", "M")), (), (),
                                (InsnRecord("dev.rmsnorm#0", None, ("x", "gamma")),
                                 InsnRecord("dev.mvm#1", None, ("w", "s"))))},
        llm=None, host_ops=(), files={})
    return write_artifact(directory, files, manifest)


def _run_in_process(directory, dims: dict[str, int]) -> tuple[bytes, list, int]:
    """run_artifact.cc's steps on an in-process simulator (numpy, no sockets)."""
    m = open_artifact(directory)
    log: list = []
    dev = RecordingHAL(Simulator("tiny"), log)
    for blob in m.weights:
        dev.write_mem(blob.addr, read_artifact_file(directory, m, blob.file))
    s = m.streams["main"]
    stream = bytearray(read_artifact_file(directory, m, s.file))
    for p in s.patches:
        off = p.index * isa.INSN_BYTES + 4 * p.word
        stream[off:off + 4] = dims[p.expr].to_bytes(4, "little")
    dev.write_mem(s.addr, bytes(stream))
    dev.run_stream(s.addr, s.count)
    dev.wait()
    entry = m.entries["main"]
    read_back = next(st for st in entry.steps if st.TAG == "to_host" and st.dst == entry.outputs[0].value)
    out = entry.values[read_back.src]
    y = dev.read_mem(out.addr, 2 * int(np.prod([dims.get(d) or int(d) for d in out.shape])))
    return y, log, dev.cycles()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return _build_artifact(tmp_path_factory.mktemp("e2e") / "art")


@pytest.mark.parametrize("m", [1, 3, M_MAX])
def test_cpp_driver_over_socket_is_bit_identical_to_in_process(cpp_programs, sim_server, artifact, tmp_path, m):
    out = tmp_path / "y.bin"
    res = run_program(cpp_programs["run_artifact"], sim_server.uri, artifact, out, f"M={m}")
    want, want_log, want_cycles = _run_in_process(artifact, {"M": m})
    got = out.read_bytes()
    assert len(got) == m * N * 2 and got == want
    y = np.frombuffer(got, np.float16).reshape(m, N)
    assert np.isfinite(y).all() and np.abs(y).max() > 0
    # Trace-level check: the same host accesses, in the same order, with the same bytes.
    assert sim_server.server.log == want_log
    assert [e[0] for e in want_log] == ["write_mem"] * 5 + ["write_reg"] * 4 + ["wait", "read_mem"] + ["read_reg"] * 3
    assert res.stdout.strip() == f"cycles {want_cycles}"


def test_a_bad_dynamic_size_fails_in_the_driver_with_the_simulators_message(cpp_programs, sim_server, artifact,
                                                                           tmp_path):
    res = run_program(cpp_programs["run_artifact"], sim_server.uri, artifact, tmp_path / "y.bin", "M=0",
                      check_rc=3)
    with pytest.raises(Exception) as info:
        _run_in_process(artifact, {"M": 0})
    assert type(info.value).__name__ == "IllegalInstructionError"
    assert res.stdout.strip() == f"DeviceError IllegalInstructionError: {info.value}"
    assert "aux stream entry 0" in res.stdout


def _device_call(cpp_programs, uri, *args, rc):
    return run_program(cpp_programs["rt_tool"], "device", uri, *args, check_rc=rc).stdout.strip()


def test_device_errors_reach_cpp_as_device_error(cpp_programs, sim_server):
    sram_end = 0x1800000000 + (1 << 20)
    got = _device_call(cpp_programs, sim_server.uri, "read", sram_end - 4, 8, rc=3)
    with pytest.raises(Exception) as info:
        Simulator("tiny").read_mem(sram_end - 4, 8)
    assert got == f"DeviceError AddressError: {info.value}"
    got = _device_call(cpp_programs, sim_server.uri, "write-reg", 0, 1, rc=3)
    assert got == "DeviceError UndefinedRegisterError: register ID (0x0) is read-only"
    assert _device_call(cpp_programs, sim_server.uri, "target", rc=0) == "tiny"


def test_bad_uris_and_absent_servers_are_clear_errors(cpp_programs):
    srv = ServerThread("tiny")
    dead = srv.uri
    srv.stop()
    assert _device_call(cpp_programs, dead, "target", rc=3).startswith(
        f"DeviceError ConnectionError: cannot connect to device server 127.0.0.1:{dead.rsplit(':', 1)[1]}")
    assert _device_call(cpp_programs, "board://0", "target", rc=3) == (
        "DeviceError UriError: unknown device URI scheme 'board' in 'board://0' (known: sim)")
    for bad in ("127.0.0.1:80", "sim://localhost", "sim://h:0", "sim://h:99999", "sim://h:1?x=2"):
        assert _device_call(cpp_programs, bad, "target", rc=3).startswith("DeviceError UriError: ")


def test_cpp_constants_match_the_isa_and_the_python_protocol(cpp_programs):
    rows = dict(line.split() for line in run_program(cpp_programs["rt_tool"], "constants").stdout.splitlines())
    got = {k: int(v) for k, v in rows.items()}
    for name in ("ID", "VERSION", "STATUS", "CYCLE_LO", "CYCLE_HI", "RESULT_IDX", "RESULT_VAL", "RETIRED", "INSN0",
                 "INSN_PUSH", "AUX_BASE_LO", "AUX_BASE_HI", "AUX_COUNT", "AUX_START"):
        assert got[name] == isa.reg(name), name
    assert (got["DEVICE_ID"], got["ISA_VERSION"], got["INSN_BYTES"]) == (isa.DEVICE_ID, isa.ISA_VERSION,
                                                                         isa.INSN_BYTES)
    assert (got["MAGIC"], got["PROTOCOL_VERSION"], got["DEFAULT_MAX_MESSAGE"]) == (
        protocol.MAGIC, protocol.PROTOCOL_VERSION, protocol.DEFAULT_MAX_MESSAGE)
    assert {k[3:]: v for k, v in got.items() if k.startswith("op.")} == {o.name: o.value for o in protocol.Op}
    assert {k[7:]: v for k, v in got.items() if k.startswith("status.")} == {
        s.name: s.value for s in protocol.Status}


def test_patch_device_word_rewrites_one_field_of_a_stream_in_device_memory(cpp_programs, sim_server):
    ddr = 0x1000000000
    prog = [isa.make("nop"), isa.make("eltwise", fn="add", a=0x1800000000, b=0x1800000000, dst=0x1800000040,
                                      count=8)]
    word = isa.op_format("eltwise").field_offset("count") // 4
    with socket_client.SocketDevice("127.0.0.1", sim_server.port) as dev:   # one client at a time
        dev.write_mem(ddr, isa.encode_stream(prog))
    assert _device_call(cpp_programs, sim_server.uri, "patch-word", ddr, 1, word, 24, rc=0) == "ok"
    with socket_client.SocketDevice("127.0.0.1", sim_server.port) as dev:
        listing = asm.disassemble(dev.read_mem(ddr, 2 * isa.INSN_BYTES)).splitlines()
    assert "count=24" in listing[1] and listing[0].startswith("nop")
    assert sim_server.server.log[1][:3] == ["write_mem", ddr + isa.INSN_BYTES + 4 * word, 4]


def test_the_driver_example_in_the_docs_compiles(clib_lib, tmp_path):
    doc = (ROOT / "doc" / "runtime_cpp.md").read_text()
    snippet = re.search(r"```cpp\n(#include \"dlavm/artifact.h\".*?)```", doc, re.S).group(1)
    prelude = ("#include <cstdio>\n#include <string>\n#include <vector>\n"
               "constexpr uint64_t kWeightsAddr = 0, kStreamAddr = 1ull << 36, kOutAddr = 3ull << 35;\n"
               "constexpr size_t kRmsnormRowsWord = 5, kMvmMWord = 8, kOutRowBytes = 96;\n")
    src = tmp_path / "doc_driver.cc"
    src.write_text(prelude + snippet)
    res = subprocess.run(["g++", *CXXFLAGS, f"-I{CLIB / 'include'}", "-fsyntax-only", str(src)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
