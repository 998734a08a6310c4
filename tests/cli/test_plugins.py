"""Plugin commands: ``omnifuse.commands`` entry points become ``omnifuse`` commands."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from omnifuse.cli import plugins


def hello() -> None:
    """Say hello (a plugin command)."""
    typer.echo("hello from a plugin")


group = typer.Typer(help="A plugin command group.")


@group.command("ping")
def ping() -> None:
    """Answer pong."""
    typer.echo("pong")


def fake_entry_points(*pairs: tuple[str, str]) -> list[EntryPoint]:
    return [EntryPoint(name, value, plugins.GROUP) for name, value in pairs]


def test_experiments_commands_are_installed_entry_points() -> None:
    found = {ep.name: ep.value for ep in plugins.plugin_entry_points()}
    assert found["demo"] == "omnifuse_experiments.cli:demo"
    assert found["study"] == "omnifuse_experiments.cli:study"
    assert found["recipe"] == "omnifuse_experiments.cli:recipe"


def test_functions_and_typer_groups_are_mounted(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = fake_entry_points(("hello", f"{__name__}:hello"), ("tools", f"{__name__}:group"))
    monkeypatch.setattr(plugins, "plugin_entry_points", lambda: eps)
    app = typer.Typer()

    @app.command("info")
    def info() -> None:
        """A built-in command."""

    assert plugins.add_plugin_commands(app, {"info"}) == ["hello", "tools"]
    assert {"info", "hello", "tools"} <= set(get_command(app).commands)  # type: ignore[attr-defined]
    runner = CliRunner()
    assert runner.invoke(app, ["hello"]).output == "hello from a plugin\n"
    assert runner.invoke(app, ["tools", "ping"]).output == "pong\n"


def test_a_plugin_cannot_shadow_a_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = fake_entry_points(("train", f"{__name__}:hello"))
    monkeypatch.setattr(plugins, "plugin_entry_points", lambda: eps)
    with pytest.raises(ValueError, match=r"'train'.*reuses a built-in omnifuse command"):
        plugins.add_plugin_commands(typer.Typer(), {"train"})
