"""Input checks shared by the metric families."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import torch

ArrayLike: TypeAlias = torch.Tensor | npt.NDArray[Any] | Sequence[Any]
"""Anything :func:`as_tensor` accepts: a tensor, a numpy array or a (nested) Python list."""


def as_tensor(values: ArrayLike, name: str) -> torch.Tensor:
    """Converts ``values`` to a CPU tensor, naming the argument when that is impossible.

    Args:
        values: Tensor, numpy array or (nested) sequence of numbers.
        name: Argument name used in error messages.

    Returns:
        A detached CPU tensor with the same shape and a torch dtype matching the input.
    """
    if isinstance(values, torch.Tensor):
        return values.detach().cpu()
    try:
        return torch.as_tensor(np.asarray(values))
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} must be a tensor, numpy array or list of numbers: {error}"
        ) from error


def check_same_length(
    predictions: Sequence[Any] | torch.Tensor, references: Sequence[Any] | torch.Tensor
) -> int:
    """Checks that predictions and references pair up one to one and are not empty.

    Returns:
        The common length.
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"got {len(predictions)} predictions but {len(references)} references; "
            "they must pair up one to one"
        )
    if len(predictions) == 0:
        raise ValueError("got no predictions and no references; metrics need at least one pair")
    return len(predictions)


def check_strings(values: Sequence[Any], name: str) -> list[str]:
    """Checks that every item of ``values`` is a ``str`` and returns them as a list."""
    if isinstance(values, str):
        raise ValueError(f"{name} must be a list of strings, got a single string {values!r}")
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise ValueError(f"{name}[{index}] must be a str, got {type(value).__name__} {value!r}")
    return list(values)
