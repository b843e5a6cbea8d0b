"""dlavm-server on an artifact with batched decode (doc/serve.md "Batched decode"): requests from
concurrent clients run together (continuous batching over the artifact's slots) and each gets exactly
the tokens it gets alone, sequentially through the same server and from the Python runtime; greedy and
sampled with a seed, with different prompt lengths, budgets and an EOS."""
from __future__ import annotations

import fcntl
import subprocess
import threading

import pytest

from dlavm.compiler import load
from dlavm.llm import compile_llm
from tests.clib.clib_build import flavour_flags
from tests.serve.serve_support import (CLIB, TARGET, _make_lock, connect, device_server, generate, need_gxx,
                                       start_server, work_dir)

SLOTS = 3
MAX_CTX = 48


@pytest.fixture(scope="module", params=["release", "asan"])
def batched_server_build(request):
    """(artifact, server executable, flavour): tiny-llama with 3 slots, the server built -O2 or with the
    sanitizers (AddressSanitizer + UndefinedBehaviorSanitizer, as serve_support.server_exe)."""
    need_gxx()
    flavour = request.param
    art = work_dir() / "batch" / "art" / "tl"
    if not art.exists():
        cm = compile_llm("tiny-llama", target=TARGET, weights="int8", max_seq=MAX_CTX, batch=SLOTS, name="tl")
        cm.save(art)
    exe = work_dir() / "bin" / f"dlavm-server-batch-{flavour}"
    exe.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["make", "-C", str(CLIB), "server", f"ARTIFACT={art}", f"OUT={exe}"]
    if flavour == "asan":
        cmd += ["BUILD=build-asan", "CXXFLAGS=" + " ".join(flavour_flags("asan"))]
    with _make_lock() as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout + res.stderr
    return art, exe, flavour


def _requests():
    reqs = []
    for i, (n, new) in enumerate(((5, 8), (1, 12), (14, 6), (3, 10), (9, 7), (2, 9))):
        prompt = [(37 * i + 11 * k) % 500 + 3 for k in range(n)]
        r = {"id": 100 + i, "prompt_ids": prompt, "max_new_tokens": new, "eos_ids": []}
        if i in (1, 4):
            r.update(temperature=0.8, top_k=50, top_p=0.9, seed=7 + i)
        reqs.append(r)
    return reqs


def _python_reference(art, reqs):
    cm = load(art)
    out = []
    for r in reqs:
        kw = {k: r[k] for k in ("temperature", "top_k", "top_p", "seed") if k in r}
        out.append(list(cm.generate(r["prompt_ids"], r["max_new_tokens"], eos_id=r["eos_ids"] or None, **kw)))
    return out


def test_concurrent_clients_get_their_sequential_tokens(batched_server_build):
    art, exe, flavour = batched_server_build
    reqs = _requests()
    want = _python_reference(art, reqs)
    reqs[3]["eos_ids"] = [want[3][4]]   # one request stops by EOS (at the first of its tokens equal to it)
    want[3] = want[3][:want[3].index(want[3][4]) + 1]
    with device_server() as uri:
        served = start_server(uri, exe=exe, artifact=art, flavour=flavour)
        try:
            host, port = served.host, served.port
            sock = connect(host, port)
            sequential = []
            for r in reqs:
                toks, end = generate(sock, r)
                assert end["frame"] == "DONE", end
                sequential.append([t[1] for t in toks])
            sock.close()
            assert sequential == want

            results: dict = {}
            start = threading.Barrier(len(reqs))

            def client(r):
                s = connect(host, port)
                start.wait()
                results[r["id"]] = generate(s, r)
                s.close()
            threads = [threading.Thread(target=client, args=(r,)) for r in reqs]
            for t in threads:
                t.start()
            for t in threads:
                t.join(300)
            for r, w in zip(reqs, want):
                toks, end = results[r["id"]]
                assert end["frame"] == "DONE" and end["id"] == r["id"], end
                assert [t[1] for t in toks] == w, r["id"]
                assert end["new_tokens"] == len(w)
                assert end["stop_reason"] == ("eos" if r["eos_ids"] else "max_new_tokens")
                if "seed" in r:
                    assert end["seed"] == r["seed"]
        finally:
            served.assert_clean_stop()
    log = served.log_text()
    assert log.count(" batched") == 2 * len(reqs), log[-3000:]
