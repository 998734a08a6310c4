"""``omnifuse recipe NAME [--out DIR] [--quick]``: one real-data recipe, baselines included.

Mounted by :mod:`omnifuse.cli.main` as ``app.command("recipe")(recipe)``. Exit status: 0 done;
2 an unknown recipe name (the valid ones are listed) or missing data/weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from omnifuse.cli.errors import CommandError, cli_errors
from omnifuse.recipes import RECIPES, run_recipe

out = Console(soft_wrap=True)


@cli_errors
def recipe(
    name: Annotated[str, typer.Argument(help=f"Recipe: {', '.join(RECIPES)}.")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Dotted overrides of ours' run config, e.g. training.max_steps=2000"),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Output directory (default: runs/recipes/NAME)."),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option(
            help="Tiny data and 2 training steps (a smoke test); results go to OUT/results.md, "
            "not docs/results.md."
        ),
    ] = False,
) -> None:
    """Run recipe NAME [OVERRIDES]: make its data, measure its baselines, train and evaluate ours.

    Writes OUT/results.json and the recipe's section of docs/results.md (method | metric | value,
    chance levels, wall times with the load average).
    """
    if name not in RECIPES:
        raise CommandError(f"unknown recipe {name!r}; valid choices: {', '.join(RECIPES)}")
    target = out_dir if out_dir is not None else Path("runs/recipes") / name
    results = run_recipe(name, target, quick=quick, overrides=overrides or [])
    out.print_json(json.dumps({k: v for k, v in results.items() if k != "timing"}))
    out.print(f"wrote {target / 'results.json'}")
