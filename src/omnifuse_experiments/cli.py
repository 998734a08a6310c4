"""``omnifuse demo``, ``omnifuse study NAME`` and ``omnifuse recipe NAME``: experiment commands.

The library CLI does not import this module: ``pyproject.toml`` lists each function under the
``omnifuse.commands`` entry-point group and :mod:`omnifuse.cli.plugins` mounts it by that name.
Exit status: 0 done; 2 a user mistake (unknown study or recipe, bad config, missing data).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from omnifuse.cli.errors import CommandError, cli_errors
from omnifuse_experiments.recipes import RECIPES, run_recipe
from omnifuse_experiments.studies import STUDIES, run_study

out = Console(soft_wrap=True)

ResultsFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--results-file",
        help="Markdown file that gets this run's section (e.g. docs/results.md); "
        "default OUT/results.md. A --quick run always writes OUT/results.md.",
    ),
]


@cli_errors
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the demo run.")] = Path(
        "runs/demo"
    ),
    quick: Annotated[bool, typer.Option(help="Smaller data and model for CI.")] = False,
    threads: Annotated[
        int,
        typer.Option(
            min=1,
            help="Torch threads. 1 (default) spends the least CPU time; more finish sooner on "
            "an idle machine at a higher CPU cost.",
        ),
    ] = 1,
) -> None:
    """The main job: ShapesWorld, pretraining, six-family fine-tuning, evaluation, report.md."""
    # Imported here, not at module top: the demo's stack (training, evaluation) is slow to
    # import, and `omnifuse --help` mounts this module.
    from omnifuse_experiments.demo import run_demo

    summary: dict[str, Any] = run_demo(out_dir, quick=quick, threads=threads)
    out.print_json(json.dumps(summary))


@cli_errors
def study(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(STUDIES)}.")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Where the runs, JSON and plot go.")
    ] = Path("runs/studies"),
    quick: Annotated[
        bool, typer.Option(help="Tiny data and a few steps: checks the wiring, not the answer.")
    ] = False,
    results_file: ResultsFileOpt = None,
) -> None:
    """Run study NAME (fusion | multitask | robustness): train its variants on shapesworld,
    evaluate them and write a table and a plot (into --results-file and images/ beside it)."""
    if name not in STUDIES:
        raise CommandError(f"unknown study {name!r}; valid choices: {', '.join(STUDIES)}")
    target = out_dir / name
    summary = run_study(name, target, quick=quick, results_file=results_file)
    typer.echo(f"{name}: {len(summary['results'])} runs in {summary['wall_s'] / 60:.1f} min")
    typer.echo(f"results: {target / (name + '.json')}")


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
            help="Tiny data and 2 training steps (a smoke test); results go to OUT/results.md."
        ),
    ] = False,
    results_file: ResultsFileOpt = None,
) -> None:
    """Run recipe NAME [OVERRIDES]: make its data, measure its baselines, train and evaluate ours.

    Writes OUT/results.json and the recipe's section of --results-file (method | metric | value,
    chance levels, wall times with the load average).
    """
    if name not in RECIPES:
        raise CommandError(f"unknown recipe {name!r}; valid choices: {', '.join(RECIPES)}")
    target = out_dir if out_dir is not None else Path("runs/recipes") / name
    options: dict[str, Any] = {"overrides": overrides or [], "results_file": results_file}
    results = run_recipe(name, target, quick=quick, **options)
    out.print_json(json.dumps({k: v for k, v in results.items() if k != "timing"}))
    out.print(f"wrote {target / 'results.json'}")
