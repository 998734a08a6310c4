"""``omnifuse train CONFIG [overrides] [--run-dir DIR] [--resume]``.

Mounted by :mod:`omnifuse.cli.main` as ``app.command("train")(train)``. Exit status: 0 done;
1 training stopped on a NaN/Inf loss (``training.on_nan=stop``) or the data itself is broken
(malformed manifest or card, too many unreadable samples); 2 a usage mistake (bad config or
override, missing data path, a run dir that would be overwritten, nothing to resume, a run dir
another live ``omnifuse train`` holds). A SIGTERM (a scheduler preempting the job) writes
``last.ckpt`` at the current step and exits 0 with a ``preempted:`` line; a checkpoint write that
fails (disk full) exits 1 naming the path, with the previous checkpoint kept; a data-loader worker
that dies exits 1 naming the checkpoint ``--resume`` continues from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from omnifuse.cli.errors import CommandError, cli_errors
from omnifuse.config import ConfigError, load_config

out = Console(soft_wrap=True)


@cli_errors
def train(
    config: Annotated[str, typer.Argument(help="YAML run config or preset name.")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Dotted overrides, e.g. training.max_steps=500 training.lr=1e-4"),
    ] = None,
    run_dir: Annotated[
        Path | None,
        typer.Option("--run-dir", help="Run directory (default: runs/<name>-<timestamp>)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue RUN_DIR from checkpoints/last.ckpt.")
    ] = False,
) -> None:
    """Train CONFIG's model on its tasks: checkpoints, metrics and the final model in RUN_DIR."""
    from omnifuse.training import TrainingPreempted
    from omnifuse.training import train as run_training
    from omnifuse.training.checkpoint import CheckpointWriteError, RunDirLocked
    from omnifuse.training.run import DataLoaderWorkerDied

    run = load_config(config, overrides or [])
    if resume and run_dir is None:
        raise ConfigError(["--resume needs --run-dir (the run to continue)"])
    try:
        result = run_training(run, run_dir, resume)
    except RunDirLocked as exc:
        raise CommandError(str(exc), exit_code=2) from None
    except (CheckpointWriteError, DataLoaderWorkerDied) as exc:
        raise CommandError(str(exc), exit_code=1) from None
    except TrainingPreempted as exc:
        out.print(f"[yellow]preempted:[/] {exc}", highlight=False)
        return
    if result.model_dir is not None:
        out.print(
            f"[green]trained[/] {result.steps} steps ({result.samples_per_s:.1f} samples/s, "
            f"{result.skipped} skipped) -> {result.model_dir}",
            highlight=False,
        )
