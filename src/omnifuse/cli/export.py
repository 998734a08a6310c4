"""``omnifuse export``: write a trained run's tasks as ONNX graphs (parity-checked on export).

The command function is typed; ``cli/main.py`` mounts it with ``app.command("export")(export)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omnifuse.cli.errors import cli_errors
from omnifuse.cli.predict import RunDirArg
from omnifuse.errors import InferenceError

FORMATS = ("onnx", "hf")

FormatOpt = Annotated[str, typer.Option("--format", help=f"Export format: {' | '.join(FORMATS)}.")]
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="Output directory (default: RUN_DIR/onnx).")
]
AtolOpt = Annotated[
    float, typer.Option("--atol", help="Largest allowed |onnxruntime - torch| of any output.")
]
TaskOpt = Annotated[
    list[str] | None, typer.Option("--task", help="Export only this task; repeatable.")
]


@cli_errors
def export(
    run_dir: RunDirArg,
    format: FormatOpt = "onnx",
    out: OutOpt = None,
    atol: AtolOpt = 1e-4,
    task: TaskOpt = None,
) -> None:
    """Export the tasks of RUN_DIR as ONNX graphs plus manifest.json (serve them with
    omnifuse.export.OnnxPredictor).

    Every graph is checked against PyTorch on two batch sizes and sequence lengths, and greedy
    caption decoding in onnxruntime must give PyTorch's token ids; the export fails otherwise.
    """
    if format == "hf":
        raise InferenceError(
            "--format hf is not implemented yet (a separate issue); use --format onnx"
        )
    if format not in FORMATS:
        raise InferenceError(f"--format {format!r}; valid choices: {', '.join(FORMATS)}")
    from omnifuse.export import export_onnx

    export_onnx(run_dir, out, atol, task, log=typer.echo)
