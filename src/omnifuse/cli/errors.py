"""One error policy for every ``omnifuse`` command: :func:`cli_errors`.

A command wrapped by it turns the project's user-facing errors into one line on stderr and an
exit status, never a traceback:

* 1, ``data error: ...``: the data itself is broken (malformed manifest, card or import source,
  too many unreadable samples), as ``omnifuse data check`` reports;
* 1, ``training stopped: ...``: a NaN/Inf loss with ``training.on_nan=stop``;
* 2, ``error: ...``: a usage mistake (bad config, override, option, input or run dir, a missing
  file or system resource, an unknown name);
* :class:`CommandError`: the message and status the command chose.

Anything else (a bug) still raises with its traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from omnifuse.config.loader import ConfigError
from omnifuse.data.card import CardError
from omnifuse.data.decode import TooManyBadSamples
from omnifuse.data.importers import DatasetImportError
from omnifuse.data.manifest import ManifestError
from omnifuse.inference.options import InferenceError
from omnifuse.modalities.base import MediaError

__all__ = ["DATA_ERRORS", "USAGE_ERRORS", "CommandError", "cli_errors", "handles_errors"]

P = ParamSpec("P")
R = TypeVar("R")

DATA_ERRORS: tuple[type[Exception], ...] = (
    CardError,
    DatasetImportError,
    ManifestError,
    TooManyBadSamples,
)
"""Problems in the data itself: exit status 1 (checked first: most of them are ValueErrors)."""

USAGE_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    InferenceError,
    MediaError,
    FileNotFoundError,
    NotADirectoryError,
    KeyError,
    ValueError,
)
"""Usage mistakes: exit status 2. ``KeyError``/``ValueError`` are how components reject an
unknown name or a bad value (with a message naming the choices), so they count as usage."""

_MARK = "__omnifuse_cli_errors__"
err = Console(stderr=True, soft_wrap=True)


class CommandError(Exception):
    """A command's own failure: ``message`` on stderr and exit status ``exit_code``.

    Args:
        message: what went wrong and how to fix it.
        exit_code: 1 for broken data or results, 2 for a usage mistake (the default).
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _classify(exc: Exception) -> tuple[str, int] | None:
    """``(label, exit status)`` for a user-facing error; None for anything else (a bug)."""
    if isinstance(exc, CommandError):
        return "error", exc.exit_code
    if isinstance(exc, DATA_ERRORS):
        return "data error", 1
    # Looked up, not imported: the trainer (Lightning) stays out of commands that never train,
    # and if it was never imported nothing raised can be its error.
    training = sys.modules.get("omnifuse.training.module")
    if training is not None and isinstance(exc, training.NonFiniteLossError):
        return "training stopped", 1
    if isinstance(exc, USAGE_ERRORS):
        return "error", 2
    return None


def _message(exc: Exception) -> str:
    # str(KeyError("x")) is "'x'" (the repr); the message is the argument itself.
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def cli_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command so that user-facing errors exit cleanly (see the module docstring)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            outcome = _classify(exc)
            if outcome is None:
                raise
            label, code = outcome
            # Escaped: messages quote shapes and lists ("[B, T, 3, H, W]") that are not markup.
            err.print(f"[bold red]{label}:[/] {escape(_message(exc))}", highlight=False)
            raise typer.Exit(code) from None

    setattr(wrapper, _MARK, True)
    return wrapper


def handles_errors(fn: Callable[..., object]) -> bool:
    """Whether ``fn`` was wrapped by :func:`cli_errors` (the CLI contract test checks this)."""
    return bool(getattr(fn, _MARK, False))
