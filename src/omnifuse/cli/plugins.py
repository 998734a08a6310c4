"""Commands that other distributions add to ``omnifuse``, found through entry points.

An installed distribution declares, in its ``pyproject.toml``::

    [project.entry-points."omnifuse.commands"]
    demo = "omnifuse_experiments.cli:demo"

and ``omnifuse demo`` runs that function. This is how the experiments package contributes
``demo``, ``study`` and ``recipe`` without the library importing it (the ``layers`` contract of
import-linter forbids that import). A target that is a :class:`typer.Typer` is mounted as a
command group, anything else callable as one command whose docstring is its help.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

import typer

GROUP = "omnifuse.commands"
"""The entry-point group scanned by :func:`add_plugin_commands`."""


def plugin_entry_points() -> list[EntryPoint]:
    """The installed ``omnifuse.commands`` entry points, sorted by name (a stable help order)."""
    return sorted(entry_points(group=GROUP), key=lambda ep: ep.name)


def add_plugin_commands(app: typer.Typer, taken: set[str]) -> list[str]:
    """Mount every plugin command on ``app``; return the names mounted.

    Args:
        app: the ``omnifuse`` application.
        taken: names of the built-in commands, which a plugin may not replace.

    Raises:
        ValueError: a plugin reuses a built-in name (a silent shadowing would run the wrong
            code for a documented command).
    """
    mounted: list[str] = []
    for ep in plugin_entry_points():
        if ep.name in taken:
            raise ValueError(
                f"entry point {ep.name!r} = {ep.value!r} in group {GROUP!r} reuses a built-in "
                f"omnifuse command; rename it"
            )
        target = ep.load()
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=ep.name)
        else:
            app.command(ep.name)(target)
        mounted.append(ep.name)
    return mounted
