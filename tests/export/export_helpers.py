"""Helpers of the export tests."""

from __future__ import annotations

from typing import Any

from torch.overrides import TorchFunctionMode


class NoTorch(TorchFunctionMode):
    """Fails on any torch function or tensor method called inside the block: what runs there
    (the ONNX predictor's graph execution and post-processing) must not need torch."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        raise AssertionError(f"torch was called: {func}")
