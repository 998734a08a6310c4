"""``omnifuse train CONFIG [overrides] [--run-dir DIR] [--resume]``.

Mounted by :mod:`omnifuse.cli.main` as ``app.command("train")(train)``. Exit status: 0 done;
1 training stopped on a NaN/Inf loss (``training.on_nan=stop``) or the data itself is broken
(malformed manifest or card, too many unreadable samples); 2 a usage mistake (bad config or
override, missing data path, a run dir that would be overwritten, nothing to resume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from omnifuse.config import ConfigError, load_config
from omnifuse.data.card import CardError
from omnifuse.data.decode import TooManyBadSamples
from omnifuse.data.manifest import ManifestError
from omnifuse.modalities.base import MediaError

DATA_ERRORS = (CardError, ManifestError, TooManyBadSamples)
"""Problems in the data itself (exit 1, as ``omnifuse data`` does)."""

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


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
    from omnifuse.training import NonFiniteLossError
    from omnifuse.training import train as run_training

    try:
        run = load_config(config, overrides or [])
        if resume and run_dir is None:
            raise ConfigError(["--resume needs --run-dir (the run to continue)"])
        result = run_training(run, run_dir, resume)
    except DATA_ERRORS as exc:
        err.print(f"[bold red]data error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    except (ConfigError, MediaError, FileNotFoundError, ValueError) as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    except NonFiniteLossError as exc:
        err.print(f"[bold red]training stopped:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    if result.model_dir is not None:
        out.print(
            f"[green]trained[/] {result.steps} steps ({result.samples_per_s:.1f} samples/s, "
            f"{result.skipped} skipped) -> {result.model_dir}",
            highlight=False,
        )
