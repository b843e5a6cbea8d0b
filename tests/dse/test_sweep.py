"""Sweeps end to end (doc/dse.md): real workers (spawned processes, Ray actors), the real compiler and
timing-only simulator, the SQLite store. The sweep: tiny-llama on the tiny target over HBM channels,
MVM width and context; tin=24 does not nest with the int4 group, so half the points are refused."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dlavm.dse import EngineError, JobError, LocalEngine, RayEngine, ResultStore, StoreError, build_spec, run_sweep
from dlavm.dse.evaluate import METRICS, Evaluator, ModelJob, derived_target
from dlavm.dse.space import Point, point_id
from dlavm.dse.sweep import model_job, stored_spec
from dlavm.target import get_target

from .crashing import DEADLY_CTX, HANGING_CHANNELS, CrashingEvaluator, HangingEvaluator

REPO = Path(__file__).resolve().parents[2]
DLAVM = [sys.executable, "-m", "dlavm.cli.main"]
#: the sweep of these tests, as command-line arguments
ARGS = ["tiny-llama", "-t", "tiny", "--vary", "hbm_channels=1,2", "--vary", "tin=16,24", "--ctx", "16,32"]


def spec_of(args=ARGS):
    vary = [args[i + 1] for i, a in enumerate(args) if a == "--vary"]
    ctx = [int(c) for c in args[args.index("--ctx") + 1].split(",")]
    return build_spec(args[0], args[2], vary, None, ctx, None, None, None, None)


def comparable(rows):
    """What must not depend on the engine: everything but wall times and the worker's name."""
    return {r["point_id"]: (r["index"], r["params"], r["status"], r["reason"], r["metrics"]) for r in rows}


def read_rows(folder):
    with ResultStore.read(folder) as store:
        return store.rows()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The sweep on a local pool of 2 workers: its folder and rows."""
    out = tmp_path_factory.mktemp("dse") / "local2"
    outcome = run_sweep(spec_of(), out, LocalEngine(2))
    assert outcome.computed == outcome.total == 8 and outcome.stored_before == 0
    return out, read_rows(out)


def test_points_record_results_and_refusals(baseline):
    _, rows = baseline
    assert len(rows) == 8 and [r["index"] for r in rows] == list(range(8))
    for r in rows:
        if r["params"]["tin"] == 24:   # 24 and the int4 group of 128 do not divide one another
            assert r["status"] == "refused", r
            assert r["reason"].startswith("target: ") and "int4_group" in r["reason"] and r["metrics"] == {}
        else:
            assert r["status"] == "ok", r
            assert set(METRICS) <= set(r["metrics"]), set(METRICS) - set(r["metrics"])
            m = r["metrics"]
            assert m["tokens_per_s"] == pytest.approx(1e6 / m["step_us"])   # seq 1: decode
            assert m["prefill_tokens"] == r["params"]["ctx"] - 1            # the cached tokens before it
            assert 0 < m["roofline_fraction"] <= 1 and m["weight_bytes"] > 0 and m["stream_entries"] > 0
            assert m["kv_bytes"] > 0 and m["lut"] > 0 and m["dsp"] > 0
    ok = {(r["params"]["hbm_channels"], r["params"]["ctx"]): r["metrics"] for r in rows if r["status"] == "ok"}
    # the physics the sweep should show: twice the channels, faster decode; a longer context, more KV bytes
    for ctx in (16, 32):
        assert ok[(2, ctx)]["tokens_per_s"] > ok[(1, ctx)]["tokens_per_s"]
        assert ok[(2, ctx)]["hbm_gbytes_per_s"] == 2 * ok[(1, ctx)]["hbm_gbytes_per_s"]
    assert ok[(1, 32)]["kv_bytes"] == 2 * ok[(1, 16)]["kv_bytes"]


def test_a_point_equals_dlavm_compile_and_profile(baseline, tmp_path):
    """A record holds what `dlavm compile` + `dlavm profile --timing-only` give for the derived target, although
    the worker imported the model once and compiled several points from it."""
    _, rows = baseline
    r = next(r for r in rows if r["status"] == "ok" and r["params"]["hbm_channels"] == 2 and r["params"]["ctx"] == 16)
    t = derived_target(get_target("tiny"), {"hbm_channels": 2, "tin": 16})
    fields = {f: getattr(t, f) for f in t.__dataclass_fields__}
    fields["weight_formats"] = list(fields["weight_formats"])
    (tmp_path / "t.json").write_text(json.dumps(fields))
    art = tmp_path / "art"
    subprocess.run(DLAVM + ["compile", "tiny-llama", "--llm", "-t", str(tmp_path / "t.json"), "--max-seq", "16",
                            "--no-driver", "-o", str(art)], check=True, capture_output=True, cwd=REPO)
    out = subprocess.run(DLAVM + ["profile", str(art), "--timing-only", "--seq", "1", "--ctx", "16", "--json"],
                         check=True, capture_output=True, text=True, cwd=REPO).stdout
    p = json.loads(out)
    m = r["metrics"]
    assert (m["cycles"], m["macs"], m["hbm_bytes_moved"]) == (p["cycles"], p["macs"], p["hbm_bytes"])
    assert m["step_us"] == p["time_us"] and m["prefill_us"] == p["phases"][0]["time_us"]
    manifest = json.loads((art / "manifest.json").read_text())
    assert m["weight_bytes"] == manifest["memory"]["weights"]["used"]
    assert m["stream_entries"] == sum(s["count"] for s in manifest["streams"].values())


def test_one_worker_and_two_agree(baseline, tmp_path):
    _, rows = baseline
    out = tmp_path / "local1"
    run_sweep(spec_of(), out, LocalEngine(1))
    assert comparable(read_rows(out)) == comparable(rows)


@pytest.fixture
def ray_head(tmp_path):
    """A Ray cluster started as users start one (``ray start --head``, token authentication on, as Ray
    recommends), stopped after the test: ``(address, environment of a client that holds the token)``.

    ``--block`` keeps ``ray start`` in the foreground as the parent of the cluster's processes, in a
    process group of its own: stopping that group stops this cluster and nothing else (``ray stop`` would
    stop every Ray cluster of the machine, a developer's own included)."""
    pytest.importorskip("ray")
    ray_cli = Path(sys.executable).parent / "ray"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    log = open(tmp_path / "ray-head.log", "wb")
    # its own temp folder (short: Ray puts unix sockets in it), so that nothing of it, the address file that
    # `ray.init()` reads included, outlives the test
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
                             "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:   # the head is up when its GCS port answers
            assert head.poll() is None, (tmp_path / "ray-head.log").read_text(errors="replace")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray head did not start within 120 s"
                time.sleep(0.2)
        yield f"127.0.0.1:{port}", env
    finally:
        os.killpg(head.pid, signal.SIGKILL)   # a throwaway cluster: nothing in it needs a clean shutdown
        head.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_cluster_gives_the_local_results(baseline, tmp_path, ray_head):
    """`dlavm dse --ray HOST:PORT` on an existing cluster: the same records as the local pool."""
    _, rows = baseline
    address, env = ray_head
    out = tmp_path / "ray"
    res = subprocess.run(DLAVM + ["dse", *ARGS, "-o", str(out), "--ray", address], capture_output=True, text=True,
                         cwd=REPO, timeout=600, env=env)
    assert res.returncode == 0, res.stderr
    assert "Ray actor" in res.stderr and "this run computed 8 (4 ok, 4 refused)" in res.stdout
    assert comparable(read_rows(out)) == comparable(rows)


def _count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as c:
            return c.execute("SELECT count(*) FROM points").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_killed_sweep_resumes_where_it_stopped(baseline, tmp_path):
    """SIGKILL the whole sweep (driver and workers) after some points: the rerun computes only the rest,
    and the results equal an uninterrupted sweep's."""
    _, rows = baseline
    out = tmp_path / "killed"
    cmd = DLAVM + ["dse", *ARGS, "-o", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    while _count(out / "dse.sqlite") < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = _count(out / "dse.sqlite")
    assert 3 <= stored < 8, f"the kill must land mid-sweep (stored {stored} of 8)"
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert f"{stored} already in" in res.stderr
    assert f"{stored} were stored before, this run computed {8 - stored} " in res.stdout
    assert comparable(read_rows(out)) == comparable(rows)
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "this run computed 0 " in again.stdout   # complete: nothing to do


def crash_spec():
    return build_spec("tiny-llama", "tiny", [], None, [16, DEADLY_CTX, 32], None, None, None, None)


def _crash_job():
    job = model_job(crash_spec())
    return ModelJob(job.model, job.target, job.llm, job.ctxs, evaluator=CrashingEvaluator)


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_dying_worker_fails_only_its_point(engine, tmp_path):
    if engine == "ray":
        pytest.importorskip("ray")
    records, events = [], []
    eng = LocalEngine(2) if engine == "local" else RayEngine("local", 2)
    eng.run(_crash_job(), crash_spec().points(), records.append, lambda kind, detail: events.append(kind))
    by_ctx = {r["params"]["ctx"]: r for r in records}
    assert sorted(by_ctx) == [16, DEADLY_CTX, 32] and len(records) == 3
    dead = by_ctx.pop(DEADLY_CTX)
    assert dead["status"] == "failed" and "died" in dead["reason"], dead
    if engine == "local":
        assert "SIGKILL" in dead["reason"]
    assert all(r["status"] == "ok" for r in by_ctx.values())


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_point_past_the_time_limit_fails_and_the_sweep_goes_on(engine):
    if engine == "ray":
        pytest.importorskip("ray")
    spec = build_spec("tiny-llama", "tiny", [f"hbm_channels=1,{HANGING_CHANNELS},2"], None, [16], None, None, None,
                      None)
    job = model_job(spec)
    job = ModelJob(job.model, job.target, job.llm, job.ctxs, evaluator=HangingEvaluator)
    limit = 8   # a point of this sweep takes under a second; the hanging one never ends
    eng = LocalEngine(2, point_timeout=limit) if engine == "local" else RayEngine("local", 2, point_timeout=limit)
    records = []
    t0 = time.monotonic()
    eng.run(job, spec.points(), records.append)
    by_channels = {r["params"]["hbm_channels"]: r for r in records}
    assert sorted(by_channels) == [1, 2, HANGING_CHANNELS] and len(records) == 3
    hung = by_channels.pop(HANGING_CHANNELS)
    assert hung["status"] == "failed" and hung["reason"].startswith("timed out: still running after 8 s"), hung
    assert all(r["status"] == "ok" for r in by_channels.values())
    assert time.monotonic() - t0 < 120


def test_engine_options_are_checked():
    for bad in (0, -1, float("nan"), float("inf"), True, "5"):
        with pytest.raises(EngineError, match="--point-timeout"):
            LocalEngine(1, point_timeout=bad)
        with pytest.raises(EngineError, match="--point-timeout"):
            RayEngine("local", 1, point_timeout=bad)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(EngineError, match="--workers"):
            LocalEngine(bad)


def test_a_model_that_does_not_import_stops_the_sweep_and_stores_nothing(tmp_path):
    spec = build_spec("no-such-model", "tiny", [], None, [16], None, None, None, None)
    with pytest.raises(JobError, match="cannot import no-such-model"):
        run_sweep(spec, tmp_path / "r", LocalEngine(1))
    assert read_rows(tmp_path / "r") == []


def test_the_store_refuses_another_sweep_or_compiler_and_a_second_writer(baseline, tmp_path):
    folder, rows = baseline
    other = build_spec("tiny-llama", "tiny", ["hbm_channels=1,4"], None, [16], None, None, None, None)
    with pytest.raises(StoreError, match="holds another sweep.*hbm_channels.*--restart"):
        run_sweep(other, folder, LocalEngine(1))
    stored = stored_spec(spec_of(), get_target("tiny"))
    with pytest.raises(StoreError, match="another compiler version"):
        ResultStore.open(folder, stored, "f" * 64)
    # the same sweep over an edited target file is another sweep
    edited = tmp_path / "tiny.json"
    edited.write_text(json.dumps({"base": "tiny", "name": "tiny", "dma_latency": 9}))
    with pytest.raises(StoreError, match="holds another sweep.*target_fingerprint"):
        ResultStore.open(folder, stored_spec(spec_of(), get_target(str(edited))), "f" * 64)
    with ResultStore.open(tmp_path / "x", other.to_json(), "f" * 64):
        with pytest.raises(StoreError, match="another sweep is running"):
            ResultStore.open(tmp_path / "x", other.to_json(), "f" * 64)
    with ResultStore.open(tmp_path / "x", spec_of().to_json(), "e" * 64, restart=True) as s:
        assert s.done_ids() == set() and s.spec() == spec_of().to_json()
    assert comparable(read_rows(folder)) == comparable(rows)   # nothing above touched the results


def test_a_tampered_store_is_refused_with_one_line(tmp_path, baseline):
    folder, _ = baseline
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "dse.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not a sweep store"):
        ResultStore.read(bad)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "dse.sqlite").write_bytes((folder / "dse.sqlite").read_bytes())
    with sqlite3.connect(copy / "dse.sqlite") as c:
        c.execute("UPDATE points SET metrics = '{\"tokens_per_s\": \"fast\"}' WHERE idx = 0")
    with pytest.raises(StoreError, match="point .*metrics must be an object of finite numbers"):
        read_rows(copy)
    with sqlite3.connect(copy / "dse.sqlite") as c:
        c.execute("UPDATE points SET metrics = '{}', status = 'great' WHERE idx = 0")
    with pytest.raises(StoreError, match="status 'great' must be one of"):
        read_rows(copy)
    with pytest.raises(StoreError, match="no sweep results here"):
        ResultStore.read(tmp_path / "nothing")


def test_llama2_7b_shape_points(tmp_path):
    """The 7B shape (meta weights, timing-only): 8 HBM channels (2 GiB) cannot hold its int4 weights, 32 can."""
    spec = build_spec("llama2-7b-shape", "vcu128", ["hbm_channels=8,32"], None, [128], None, None, None, None)
    ev = Evaluator(model_job(spec))
    small, full = (ev(p) for p in spec.points())
    assert small["status"] == "refused" and "does not fit region hbm" in small["reason"], small
    assert full["status"] == "ok", full
    m = full["metrics"]
    # 6.5e9 weights on the device (the embedding table stays on the host) at 4 bits and an fp16 scale per 128
    assert 3.3e9 < m["weight_bytes"] < 3.5e9 and 20 < m["tokens_per_s"] < 100
    assert 0.5 < m["hbm_fraction"] <= 1.0


def test_point_ids_are_the_store_keys(baseline):
    _, rows = baseline
    for r in rows:
        assert r["point_id"] == point_id(r["params"])
    p = Point(0, rows[0]["params"], rows[0]["point_id"])
    assert p.target_fields == {"hbm_channels": 1, "tin": 16} and (p.weights, p.ctx, p.seq) == ("int4", 16, 1)


def test_ctrl_c_stops_the_sweep_keeps_its_points_and_says_how_to_resume(tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group): exit 130, one line saying how to resume, the finished
    points stored, no worker left behind."""
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(DLAVM + ["dse", *ARGS, "-o", str(out), "--workers", "1"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while _count(out / "dse.sqlite") < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "error: interrupted"
    assert "run the same command to resume" in err
    stored = _count(out / "dse.sqlite")
    assert 1 <= stored < 8 and len(read_rows(out)) == stored
    deadline = time.monotonic() + 30   # the workers went with the driver (the last exits reaped by init)
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("a process of the sweep outlived it")


def test_dlavm_dse_report_prints_the_fronts_and_writes_the_plots(baseline, tmp_path):
    folder, _ = baseline
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "dse.sqlite").write_bytes((folder / "dse.sqlite").read_bytes())
    res = subprocess.run(DLAVM + ["dse", "report", str(copy), "--part", "xcvu37p"], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "8 points stored: 4 ok, 4 refused, 0 failed" in res.stdout
    assert "Pareto front: tokens/s vs lut" in res.stdout and "int4_group" in res.stdout
    from PIL import Image
    for name in ("pareto.png", "params.png"):
        with Image.open(copy / name) as im:
            assert im.format == "PNG" and im.size[0] > 400
    assert (copy / "results.csv").read_text().count("\n") == 9


def test_failed_points_are_tried_again_results_are_not(tmp_path):
    spec = crash_spec()
    p_ok, p_dead, p_refused = spec.points()

    def rec(p, status):
        return {"point_id": p.point_id, "index": p.index, "params": dict(p.params), "status": status,
                "reason": None if status == "ok" else "why", "metrics": {}, "compile_s": 0.0, "sim_s": 0.0,
                "worker": "w"}
    with ResultStore.open(tmp_path, spec.to_json(), "f" * 64) as store:
        for p, status in ((p_ok, "ok"), (p_dead, "failed"), (p_refused, "refused")):
            store.add(rec(p, status))
        assert store.done_ids() == {p_ok.point_id, p_refused.point_id}
        store.add(rec(p_dead, "ok"))   # the retry's record replaces the failure
        assert store.done_ids() == {p.point_id for p in spec.points()}
        assert [r["status"] for r in store.rows()] == ["ok", "ok", "refused"]


def test_a_sweep_file_of_a_plain_model_through_the_command(tmp_path):
    """A YAML-free JSON sweep file, a model compiled without a KV cache (--no-llm: seq sizes every dynamic dim),
    Latin-hypercube sampling: the command runs it, and the report reads it."""
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"model": "mlp", "target": "tiny", "llm": False,
                                 "vary": {"tin": [16, 32], "hbm_channels": {"range": [1, 4], "step": 1}},
                                 "seq": [4, 8], "sample": {"method": "lhs", "n": 4, "seed": 3}}))
    out = tmp_path / "r"
    res = subprocess.run(DLAVM + ["dse", "--sweep", str(sweep), "-o", str(out), "--workers", "1"],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stderr
    rows = read_rows(out)
    spec = build_spec(None, None, [], None, None, None, None, None, str(sweep))
    assert [r["point_id"] for r in rows] == [p.point_id for p in spec.points()] and len(rows) == 4
    assert all(r["status"] == "ok" and "ctx" not in r["params"] for r in rows), rows
    for r in rows:   # seq tokens per call: the measured call is the whole run, no prefill before it
        m = r["metrics"]
        assert m["prefill_tokens"] == r["params"]["seq"] and m["prefill_us"] == m["step_us"]
        assert m["kv_bytes"] == 0
    assert {r["params"]["tin"] for r in rows} == {16, 32}   # lhs: each of the two values used twice
    report = subprocess.run(DLAVM + ["dse", "report", str(out), "--resource", "dsp", "--no-plots"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert report.returncode == 0 and "Pareto front: tokens/s vs dsp" in report.stdout, report.stderr
    assert not (out / "pareto.png").exists()
