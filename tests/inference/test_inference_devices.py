"""``parse_device``: one InferenceError listing the usable devices, for any bad device, whether it
comes from ``--device`` or ``Pipeline(..., device=...)``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from omnifuse.errors import InferenceError
from omnifuse.inference import Pipeline
from omnifuse.inference.devices import available_devices, parse_device

CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def test_cpu_and_none_pass() -> None:
    assert parse_device("cpu") == torch.device("cpu")
    assert parse_device(torch.device("cpu")) == torch.device("cpu")
    assert parse_device(None) is None
    assert "cpu" in available_devices()


@pytest.mark.parametrize("value", ["tpu9", "cuda:99", "gpu", ""])
def test_unusable_devices_list_the_valid_ones(value: str) -> None:
    with pytest.raises(InferenceError, match="valid devices here: cpu"):
        parse_device(value)


@CPU_ONLY
@pytest.mark.parametrize("value", ["cuda", torch.device("cuda"), "cuda:0"])
def test_cuda_on_a_cpu_only_torch(value: str | torch.device) -> None:
    with pytest.raises(InferenceError, match=r"'cuda(:0)?' is not available on this machine"):
        parse_device(value)


@pytest.mark.parametrize("value", ["tpu9", "cuda:99"])
def test_pipeline_refuses_a_bad_device_in_one_line(pipe: Pipeline, value: str) -> None:
    with pytest.raises(InferenceError) as caught:
        Pipeline(pipe.model, pipe.processors, pipe.config, device=value)
    message = str(caught.value)
    assert "\n" not in message and f"device {value!r}" in message
    assert message.endswith(f"valid devices here: {', '.join(available_devices())}")


@CPU_ONLY
def test_pipeline_load_checks_the_device_before_loading(tmp_path: Path) -> None:
    # the path does not exist: the device error comes first, so nothing was read
    with pytest.raises(InferenceError, match="'cuda' is not available on this machine"):
        Pipeline.load(tmp_path / "missing", device="cuda")
