"""``omnifuse eval``: evaluate every task of a run; write metrics.json, report.md and plots.

The command function is typed; the lead mounts it with ``app.command("eval")(evaluate)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from omnifuse.cli.errors import cli_errors
from omnifuse.cli.predict import BeamOpt, DeviceOpt, RunDirArg, StrategyOpt
from omnifuse.inference.options import DecodingOptions

out = Console(soft_wrap=True)


@cli_errors
def evaluate(
    run_dir: RunDirArg,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Manifest or shard dir to evaluate instead of the split."),
    ] = None,
    split: Annotated[str, typer.Option(help="Split of the run's data: val | test.")] = "val",
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output directory (default: RUN_DIR/eval).")
    ] = None,
    max_samples: Annotated[
        int | None, typer.Option(help="Evaluate at most this many samples per task.")
    ] = None,
    candidates: Annotated[int, typer.Option(help="Retrieval pool size (contrastive).")] = 500,
    meteor: Annotated[bool, typer.Option(help="Also compute METEOR (Java; slow).")] = False,
    strategy: StrategyOpt = "greedy",
    beam_size: BeamOpt = 4,
    plots: Annotated[bool, typer.Option(help="Write PNG plots.")] = True,
    judge: Annotated[
        Path | None,
        typer.Option(
            "--judge",
            help="Video classifier run (e.g. trained from omnifuse_experiments/configs/"
            "video-judge.yaml) that judges generated clips: attribute accuracy and Fréchet "
            "distance.",
        ),
    ] = None,
    drop: Annotated[
        list[str] | None,
        typer.Option(
            "--drop",
            help="Remove this modality from every batch (repeatable): a missing-modality test.",
        ),
    ] = None,
    device: DeviceOpt = None,
) -> None:
    """Evaluate every task of RUN_DIR on its val/test data (or --data).

    Writes metrics.json, report.md (task | metric | value) and PNG plots (training curves,
    confusion matrices, sample predictions) into RUN_DIR/eval or --out. With --judge, every
    video generation task also generates one clip per prompt and reports what the judge sees.
    """
    from omnifuse.evaluation import EvalOptions
    from omnifuse.evaluation import evaluate as run_evaluation
    from omnifuse.evaluation.report import metric_rows
    from omnifuse.inference.devices import parse_device

    options = EvalOptions(
        max_samples=max_samples,
        candidates=candidates,
        meteor=meteor,
        decoding=DecodingOptions(strategy=strategy, beam_size=beam_size),  # type: ignore[arg-type]  # checked there
        plots=plots,
        drop_modalities=tuple(drop or ()),
    )
    report = run_evaluation(run_dir, data, split, out_dir, options, parse_device(device), judge)
    table = Table(title=f"{run_dir} ({split})")
    for column in ("task", "metric", "value"):
        table.add_column(column)
    for row in metric_rows(report):
        table.add_row(*row)
    out.print(table)
    out.print(f"wrote {report['files']['metrics']} and {report['files']['report']}")
