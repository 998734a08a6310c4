"""``parse_device``: one InferenceError listing the usable devices, for any bad --device."""

from __future__ import annotations

import pytest
import torch

from omnifuse.errors import InferenceError
from omnifuse.inference.devices import available_devices, parse_device


def test_cpu_and_none_pass() -> None:
    assert parse_device("cpu") == torch.device("cpu")
    assert parse_device(None) is None
    assert "cpu" in available_devices()


@pytest.mark.parametrize("value", ["tpu9", "cuda:99", "gpu", ""])
def test_unusable_devices_list_the_valid_ones(value: str) -> None:
    with pytest.raises(InferenceError, match="valid devices here: cpu"):
        parse_device(value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_cpu_only_torch() -> None:
    with pytest.raises(InferenceError, match=r"'cuda' is not available on this machine"):
        parse_device("cuda")
