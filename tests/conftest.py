"Shared fixtures: every test that takes `device` runs on the CPU and, when one is present, on CUDA."
import pytest
import torch

_NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=_NO_CUDA)]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)
