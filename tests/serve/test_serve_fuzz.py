"""bench/fuzz_serve.py's run in the suite: 10,000 malformed frames (random bytes, wrong and huge
lengths, truncated frames, garbage after HELLO, bad JSON, bad field types, slow partial frames with a
short --frame-timeout) from many client threads at once, against the release build and the
AddressSanitizer + UBSan build (with --token) of dlavm-server: no malformed reply, no hang, no internal error, the
server still serves a good client afterwards and exits 0 on SIGTERM with a clean log."""
from __future__ import annotations

import importlib.util

import pytest

from tests.serve.serve_support import ROOT, need_gxx

FRAMES = 10000


def _bench_module():
    spec = importlib.util.spec_from_file_location("fuzz_serve", ROOT / "bench" / "fuzz_serve.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("flavour, token", [("release", None), ("asan", "fuzz-secret")])
def test_malformed_frames_never_crash_or_hang_the_server(flavour, token):
    need_gxx()
    fuzz = _bench_module()
    res = fuzz.run(FRAMES, flavour, clients=8, seed=11, frame_timeout=0.5, slow=12, token=token)
    assert res["findings"] == [], res["findings"]
    assert res["frames"] >= FRAMES and res["server_alive"] and res["good_client_served"] and res["exit_code"] == 0
    assert set(res["by_kind"]) == {*fuzz.CLOSING_KINDS, *fuzz.KEPT_KINDS, "slow_partial"}, res["by_kind"]
    replies = res["replies"]
    kinds = ("bad_frame", "too_large", "bad_request") + (("unauthorized",) if token else ())
    for kind in kinds:                                         # the fuzz reaches every refusal
        assert replies.get(f"ERROR {kind}", 0) > 0, replies
    assert replies.get("DONE", 0) > 0 and "ERROR internal" not in replies, replies
