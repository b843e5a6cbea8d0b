"""The reference executor on CUDA agrees with torch eager on CUDA and with itself on CPU.

Skips cleanly where no CUDA device is present (CI never has one).
Tolerance: rtol 1e-3 / atol 1e-4 (GPU kernels reassociate fp32 sums).
"""
import pytest
import torch

from dlavm.models import import_model
from dlavm.reference import run_function

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("name,dim,values", [("tiny-llama", "seq", [1, 128, 256]),
                                             ("tiny-vit", "batch", [1, 8])])
def test_cuda_matches_torch_cuda_and_cpu(name, dim, values):
    res = import_model(name)
    model_gpu = res.spec.module.to("cuda")
    for v in values:
        inputs = res.spec.make_inputs(**{dim: v})
        cpu = run_function(res.module, "forward", inputs)
        gpu_inputs = [x.to("cuda") for x in inputs]
        with torch.no_grad():
            want = model_gpu(*gpu_inputs)
        got = run_function(res.module, "forward", gpu_inputs)
        assert got.device.type == "cuda"
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(got.cpu(), cpu, rtol=1e-3, atol=1e-4)
