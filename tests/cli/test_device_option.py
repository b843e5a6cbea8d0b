"""`run`, `generate` and `profile` on a device server (`--device sim://HOST:PORT`, a real socket on 127.0.0.1),
with the same results as on the in-process simulator; a device of another target is refused at the
handshake, by the Python runtime and by the generated C++ driver, before anything is written to it."""
from __future__ import annotations

import shutil
import subprocess
import threading

import numpy as np
import pytest
from click.testing import CliRunner

from dlavm.cli.errors import EXIT_BAD_INPUT
from dlavm.cli.main import main
from dlavm.devlink.socket_client import SocketDevice, TargetMismatchError


class _Server:
    """A hw_models.server.SimServer on 127.0.0.1 (port chosen by the OS), served from a thread."""

    def __init__(self, target: str, **options):
        from hw_models.server import SimServer
        self.server = SimServer(target, "127.0.0.1", 0, **options)
        self.uri = f"sim://127.0.0.1:{self.server.port}"
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def tiny_server():
    srv = _Server("tiny")
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def vcu128_server():
    srv = _Server("vcu128", record=True)
    yield srv
    srv.close()


def _ok(argv) -> str:
    res = CliRunner().invoke(main, [str(a) for a in argv])
    assert res.exit_code == 0, res.stderr
    return res.output


def _refused(argv) -> str:
    res = CliRunner().invoke(main, [str(a) for a in argv])
    assert res.exit_code == EXIT_BAD_INPUT, (res.exit_code, res.stderr)
    assert res.stderr.splitlines() == [res.stderr.strip()] and res.stderr.startswith("error: ")
    return res.stderr


def test_run_on_a_device_server_equals_the_in_process_simulator(bad_input_paths, tiny_server):
    mlp = bad_input_paths["mlp"]
    here = _ok(["run", mlp, "--seq", "3"])
    there = _ok(["run", mlp, "--seq", "3", "--device", tiny_server.uri])
    assert there == here and "cycles" in there


def test_generate_on_a_device_server_gives_the_same_tokens(bad_input_paths, tiny_server):
    llm = bad_input_paths["llm"]
    argv = ["generate", llm, "--prompt-ids", "1,2,3", "--max-new-tokens", "4"]
    tokens = _ok(argv).splitlines()[0]
    assert _ok(argv + ["--device", tiny_server.uri]).splitlines()[0] == tokens and len(tokens.split()) == 4


def test_profile_on_a_device_server_measures_the_same_cycles(bad_input_paths, tiny_server):
    mlp = bad_input_paths["mlp"]
    here = _ok(["profile", mlp, "--seq", "2"]).splitlines()[0]
    there = _ok(["profile", mlp, "--seq", "2", "--device", tiny_server.uri]).splitlines()[0]
    assert here == there and " cycles = " in there


@pytest.mark.parametrize("cmd", [("run", "{mlp}", "--seq", "2"), ("profile", "{mlp}"),
                                 ("generate", "{llm}", "--prompt-ids", "1", "--max-new-tokens", "1")],
                         ids=lambda c: c[0])
def test_a_device_of_another_target_is_refused(cmd, bad_input_paths, vcu128_server):
    argv = [a.format(**{k: str(v) for k, v in bad_input_paths.items()}) for a in cmd]
    err = _refused(argv + ["--device", vcu128_server.uri])
    port = vcu128_server.uri.rsplit(":", 1)[1]
    assert (f"the artifact was compiled for target 'tiny' but the device at 127.0.0.1:{port} implements "
            "'vcu128'") in err
    assert vcu128_server.server.recorded() == []   # refused at the handshake: nothing was written


def test_the_python_client_refuses_another_target_at_the_handshake(vcu128_server):
    host, port = "127.0.0.1", vcu128_server.server.port
    with pytest.raises(TargetMismatchError, match="target 'tiny' but the device at .* implements 'vcu128'"):
        SocketDevice(host, port, expect_target="tiny")
    dev = SocketDevice(host, port, expect_target="vcu128")
    assert dev.target == "vcu128"
    dev.close()


@pytest.mark.parametrize("uri,names", [
    ("http://127.0.0.1:7000", ("http://127.0.0.1:7000", "unknown scheme 'http://'")),
    ("127.0.0.1:7000", ("127.0.0.1:7000", "not a device URI")),
    ("sim://127.0.0.1", ("sim://127.0.0.1", "HOST:PORT")),
    ("sim://:7000", ("sim://:7000", "HOST:PORT")),
    ("sim://127.0.0.1:0", ("port '0'",)),
    ("sim://127.0.0.1:65536", ("port '65536'",)),
    ("sim://127.0.0.1:x", ("port 'x'",)),
])
def test_a_malformed_device_uri_is_one_line(uri, names, bad_input_paths):
    err = _refused(["run", bad_input_paths["mlp"], "--device", uri])
    assert all(n in err for n in names), err


def test_no_server_at_the_address_is_one_line(bad_input_paths):
    import socket
    with socket.socket() as s:      # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = _refused(["run", bad_input_paths["mlp"], "--device", f"sim://127.0.0.1:{port}"])
    assert f"127.0.0.1:{port}" in err


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_the_generated_cpp_driver_refuses_another_target(tmp_path, tiny_server, vcu128_server):
    from dlavm.compare.cases import llama_block
    from dlavm.compiler import compile as dlavm_compile
    from tests.driver_support import build_driver
    art = dlavm_compile(llama_block(max_seq=8, layers=1, rng=np.random.default_rng(2)), target="tiny",
                        name="block").save(tmp_path / "art")
    exe = build_driver(art, "block")
    ids = tmp_path / "ids.bin"
    np.array([3, 1], np.int64).tofile(ids)
    ok = subprocess.run([str(exe), tiny_server.uri, str(art), "seq=2", str(ids), str(tmp_path / "out")],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.startswith("cycles "), ok.stderr
    bad = subprocess.run([str(exe), vcu128_server.uri, str(art), "seq=2", str(ids), str(tmp_path / "bad")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and not list(tmp_path.glob("bad*"))
    assert bad.stderr == "error: the artifact was compiled for target 'tiny' but the device implements 'vcu128'\n"
    assert vcu128_server.server.recorded() == []   # no weight was written to the wrong device
