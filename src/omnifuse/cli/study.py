"""``omnifuse study NAME``: train and evaluate the variants of one study (see omnifuse.studies)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omnifuse.cli.errors import CommandError, cli_errors
from omnifuse.studies import STUDIES, run_study


@cli_errors
def study(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(STUDIES)}.")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Where the runs, JSON and plot go.")
    ] = Path("runs/studies"),
    quick: Annotated[
        bool, typer.Option(help="Tiny data and a few steps: checks the wiring, not the answer.")
    ] = False,
    docs: Annotated[
        bool, typer.Option(help="Write the section of docs/results.md (and its plot).")
    ] = True,
) -> None:
    """Run study NAME (fusion | multitask | robustness): train its variants on shapesworld,
    evaluate them and write a table and a plot."""
    if name not in STUDIES:
        raise CommandError(f"unknown study {name!r}; valid choices: {', '.join(STUDIES)}")
    summary = run_study(name, out_dir / name, quick=quick, write_docs=docs and not quick)
    typer.echo(f"{name}: {len(summary['results'])} runs in {summary['wall_s'] / 60:.1f} min")
    typer.echo(f"results: {out_dir / name / (name + '.json')}")
