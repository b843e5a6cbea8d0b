"""Host-fallback numpy kernels against torch (the runtime runs these when the device cannot)."""
from __future__ import annotations

import numpy as np
import pytest

from dlavm.runtime.host_kernels import HostOpError, run_host_op

torch = pytest.importorskip("torch")
F = torch.nn.functional


def test_conv_pool_norm_attention_match_torch(rng):
    x = rng.standard_normal((2, 4, 9, 7)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    a = {"stride": (2, 1), "padding": (1, 1), "dilation": (1, 2), "groups": 2}
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), (2, 1), (1, 1), (1, 2), 2)
    np.testing.assert_allclose(run_host_op("conv2d", [x, w, b], a), want.numpy(), atol=1e-4)
    p = {"kernel": (3, 2), "stride": (2, 2), "padding": (1, 0), "ceil_mode": True}
    np.testing.assert_allclose(run_host_op("max_pool2d", [x], {**p, "dilation": (1, 1)}),
                               F.max_pool2d(torch.from_numpy(x), (3, 2), (2, 2), (1, 0), ceil_mode=True).numpy())
    g = rng.standard_normal(7).astype(np.float32)
    np.testing.assert_allclose(run_host_op("layer_norm", [x, g], {"ndim": 1, "eps": 1e-5}),
                               F.layer_norm(torch.from_numpy(x), (7,), torch.from_numpy(g)).numpy(), atol=1e-5)
    q, k, v = (rng.standard_normal((1, h, 5, 8)).astype(np.float32) for h in (4, 2, 2))
    want = F.scaled_dot_product_attention(torch.from_numpy(q), torch.from_numpy(k).repeat_interleave(2, 1),
                                          torch.from_numpy(v).repeat_interleave(2, 1), is_causal=True)
    got = run_host_op("attention", [q, k, v], {"causal": True, "scale": None}, "float32")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)


def test_unknown_host_op_names_itself():
    with pytest.raises(HostOpError, match="host-fallback op 'fft' has no numpy kernel"):
        run_host_op("fft", [np.zeros(3)], {})
