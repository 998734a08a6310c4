"""The one CLI error policy: every command is wrapped; errors map to a message and a status."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import typer
from typer.testing import CliRunner

from omnifuse.cli.errors import CommandError, cli_errors, handles_errors
from omnifuse.cli.main import app
from omnifuse.config import ConfigError
from omnifuse.data.manifest import ManifestError
from omnifuse.inference.options import InferenceError
from omnifuse.training import NonFiniteLossError

runner = CliRunner()


def _commands(group: typer.Typer, prefix: str = "") -> Iterator[tuple[str, Callable[..., object]]]:
    """``(full name, callback)`` of every command registered under ``group``, recursively."""
    for info in group.registered_commands:
        assert info.callback is not None
        yield f"{prefix}{info.name or info.callback.__name__}", info.callback
    for sub in group.registered_groups:
        assert sub.typer_instance is not None
        yield from _commands(sub.typer_instance, f"{prefix}{sub.name} ")


def test_every_registered_command_is_wrapped() -> None:
    commands = dict(_commands(app))
    assert {"train", "predict", "eval", "data check", "config validate", "info"} <= set(commands)
    unwrapped = [name for name, callback in commands.items() if not handles_errors(callback)]
    assert unwrapped == [], f"commands without @cli_errors: {unwrapped}"


def _run(exc: Exception) -> tuple[int, str]:
    """Exit status and output of a one-command app whose command raises ``exc``."""
    probe = typer.Typer()

    @probe.command()
    @cli_errors
    def fail() -> None:
        raise exc

    result = runner.invoke(probe, [])
    assert "Traceback" not in result.output
    return result.exit_code, result.output.strip()


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (ConfigError(["model.dim: must be > 0"]), 2, "error: invalid config:\n  - model.dim"),
        (InferenceError("no task 'x'"), 2, "error: no task 'x'"),
        (FileNotFoundError("config file not found: a.yaml"), 2, "error: config file not found"),
        (KeyError("unknown name 'x'"), 2, "error: unknown name 'x'"),
        (ManifestError([]), 1, "data error: 0 manifest problem(s)"),
        (NonFiniteLossError("non-finite loss at step 1"), 1, "training stopped: non-finite loss"),
        (CommandError("no [such] thing", 1), 1, "error: no [such] thing"),  # markup escaped
    ],
)
def test_user_errors_give_the_message_and_the_status(
    exc: Exception, code: int, message: str
) -> None:
    status, output = _run(exc)
    assert status == code and output.startswith(message)


def test_other_errors_keep_their_traceback() -> None:
    probe = typer.Typer()

    @probe.command()
    @cli_errors
    def fail() -> None:
        raise ZeroDivisionError("a bug")

    result = runner.invoke(probe, [])
    assert isinstance(result.exception, ZeroDivisionError)
