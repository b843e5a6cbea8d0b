"""The model server under load (doc/serve.md): 16 clients x 20 requests at once, every reply complete,
addressed to its request and equal to the tokens its prompt gets alone (0 lost, 0 mixed: no state leaks
between users); a full queue is answered ``busy`` at once, never a hang."""
from __future__ import annotations

import threading
import time

import pytest

from dlavm.serve import BusyError, Client
from tests.serve.serve_support import device_process, device_server, frozen, need_gxx, serving

CLIENTS, REQUESTS, NEW = 16, 20, 3
#: The requests the clients send, round robin with a per-client offset: prompts of different lengths,
#: greedy and seeded sampling, so that a leaked KV cache or a mixed-up stream changes some reply.
SPECS = [
    dict(prompt_ids=[5, 17, 200, 3, 99], max_new_tokens=NEW, eos_ids=[]),
    dict(prompt_ids=[42], max_new_tokens=NEW, eos_ids=[]),
    dict(prompt_ids=[9, 8, 7, 6, 5, 4, 3, 2, 1, 11, 12, 13], max_new_tokens=NEW, eos_ids=[]),
    dict(prompt_ids=[77, 78], max_new_tokens=NEW, eos_ids=[], temperature=0.8, top_k=50, seed=12345),
    dict(prompt="the compiler maps each layer", max_new_tokens=NEW, eos_ids=[], temperature=1.1, top_p=0.9,
         seed=7),
]


@pytest.fixture(scope="module")
def device():
    need_gxx()
    with device_server() as uri:
        yield uri


def test_sixteen_clients_twenty_requests_each_none_lost_none_mixed(device, record_property):
    with serving(device) as srv:
        with Client(srv.host, srv.port) as c:   # each request alone, one after another
            alone = [c.generate(**spec).token_ids for spec in SPECS]
        assert all(len(t) == NEW for t in alone)
        results: dict = {}
        failures: list = []

        def client(k: int) -> None:
            try:
                with Client(srv.host, srv.port, timeout=300) as c:
                    for j in range(REQUESTS):
                        i = (k + j) % len(SPECS)
                        if j % 2:
                            done = c.generate(**SPECS[i])
                            streamed = done.token_ids
                        else:
                            s = c.generate(**SPECS[i], stream=True)
                            streamed = [t.id for t in s]
                            done = s.completion
                        results[(k, j)] = (i, done, streamed)
            except BaseException as e:  # noqa: BLE001 -- reported below, with the client's number
                failures.append((k, repr(e)))

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        secs = time.perf_counter() - t0
        assert not failures, failures
        lost = CLIENTS * REQUESTS - len(results)
        mixed = [(k, j) for (k, j), (i, done, streamed) in results.items()
                 if done is None or done.token_ids != alone[i] or streamed != alone[i]
                 or done.new_tokens != NEW or done.stop_reason != "max_new_tokens"]
        assert (lost, mixed) == (0, [])
        with Client(srv.host, srv.port) as c:
            st = c.stats()
        assert st["completed"] >= CLIENTS * REQUESTS + len(SPECS) and st["cancelled"] == 0
        record_property("load", f"{CLIENTS * REQUESTS} requests of {NEW} new tokens by {CLIENTS} clients in "
                                f"{secs:.1f} s")
        print(f"\nload: {CLIENTS * REQUESTS} requests x {NEW} new tokens, {CLIENTS} clients: {secs:.1f} s wall, "
              f"0 lost, 0 mixed; server sim_ms {st['sim_ms']:.1f}, host_ms {st['host_ms']:.1f}")


def test_a_full_queue_is_answered_busy_at_once():
    need_gxx()
    with device_process() as (uri, dev), serving(uri, "--max-queue", "1") as srv:
        with Client(srv.host, srv.port) as a, Client(srv.host, srv.port) as b, \
                Client(srv.host, srv.port) as c, Client(srv.host, srv.port) as watch:
            running = a.generate(prompt_ids=[1, 2, 3], max_new_tokens=60, eos_ids=[], stream=True)
            first = next(running)                           # a's request runs on the device
            with frozen(dev):                               # ... and stays running while we look
                queued = b.generate(prompt_ids=[4, 5], max_new_tokens=2, eos_ids=[], stream=True)
                for _ in range(2000):                       # until the server has queued b's request
                    if watch.health()["queue"] == 1:
                        break
                    time.sleep(0.01)
                assert watch.health()["queue"] == 1
                with pytest.raises(BusyError, match="queue") as e:
                    c.generate(prompt_ids=[6], max_new_tokens=2)
                assert e.value.kind == "busy"
                a.cancel()
            assert [first.id] + [t.id for t in running] == running.completion.token_ids
            assert running.completion.stop_reason == "cancelled"
            assert len(list(queued)) == 2 and queued.completion.stop_reason == "max_new_tokens"
            assert c.generate(prompt_ids=[6], max_new_tokens=2).new_tokens == 2   # room again: served
