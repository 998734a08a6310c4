"""``omnifuse train`` mounted for ``typer.testing.CliRunner`` (shared by the training CLI tests)."""

from __future__ import annotations

import typer

from omnifuse.cli.train import train


def train_app() -> typer.Typer:
    """The command as the lead mounts it: ``app.command("train")(train)``."""
    app = typer.Typer()
    app.command("train")(train)
    app.command("noop")(lambda: None)  # two commands: typer keeps the subcommand name
    return app
