"""``omnifuse export``: write a trained run's tasks as ONNX graphs (parity-checked on export),
or (``--format hf``) its Hugging Face components back as standard HF directories.

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
    Path | None,
    typer.Option("--out", help="Output directory (default: RUN_DIR/onnx or RUN_DIR/hf)."),
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
    omnifuse.export.OnnxPredictor), or with --format hf every component that came from a
    Hugging Face directory (hf towers, causal_lm LMs, Whisper) as an HF directory that
    transformers' from_pretrained loads.

    Every ONNX graph is checked against PyTorch on two batch sizes and sequence lengths, and
    greedy caption decoding in onnxruntime must give PyTorch's token ids; the export fails
    otherwise. The hf export lists what it wrote and what has no HF form (hf_export.json).
    """
    if format not in FORMATS:
        raise InferenceError(f"--format {format!r}; valid choices: {', '.join(FORMATS)}")
    if format == "hf":
        if task:
            raise InferenceError("--task selects ONNX graphs; --format hf exports components")
        from omnifuse.export.hf import export_hf

        export_hf(run_dir, out, log=typer.echo)
        return
    from omnifuse.export import export_onnx

    export_onnx(run_dir, out, atol, task, log=typer.echo)
