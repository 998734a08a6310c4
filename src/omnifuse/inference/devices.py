"""Device names checked once, against what this machine's torch can run on.

``torch.device("cuda")`` succeeds on a CPU-only build and fails later with an ``AssertionError``
deep inside ``.to()``; ``torch.device("tpu9")`` raises a bare ``RuntimeError``. Both become one
:class:`~omnifuse.errors.InferenceError` that lists the devices that do work. Every ``--device``
option and ``Pipeline(..., device=...)`` go through :func:`parse_device`.
"""

from __future__ import annotations

import torch

from omnifuse.errors import InferenceError


def available_devices() -> list[str]:
    """The device strings this process can use: ``cpu``, every ``cuda:N``, ``mps``."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def default_device() -> torch.device:
    """CUDA when this machine has it, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def parse_device(value: str | torch.device | None) -> torch.device | None:
    """``value`` as a usable :class:`torch.device`; None stays None (the caller's default).

    A :class:`torch.device` is checked too: ``torch.device("cuda")`` exists on any build.

    Raises:
        InferenceError: an unknown device name, or one this machine does not have; the message
            lists the valid devices.
    """
    if value is None:
        return None
    valid = available_devices()
    try:
        device = value if isinstance(value, torch.device) else torch.device(value)
    except RuntimeError:
        raise InferenceError(
            f"device {value!r} is not a device name; valid devices here: {', '.join(valid)}"
        ) from None
    name = device.type if device.index is None else f"{device.type}:{device.index}"
    if name not in valid:
        cuda = "available" if torch.cuda.is_available() else "not available"
        raise InferenceError(
            f"device {str(value)!r} is not available on this machine (torch {torch.__version__}, "
            f"CUDA {cuda}); valid devices here: {', '.join(valid)}"
        )
    return device
