"""``omnifuse predict``: run one task of a trained run on files and texts; print JSON.

The command function is typed; the lead mounts it with ``app.command("predict")(predict)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from omnifuse.cli.errors import cli_errors
from omnifuse.inference.options import STRATEGIES, DecodingOptions

RunDirArg = Annotated[
    Path, typer.Argument(help="Run directory (from `omnifuse train`) or model directory.")
]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="cpu, cuda, cuda:1 ... (default: cuda if any).")
]


TaskOpt = Annotated[
    str | None, typer.Option("--task", help="Task to run (default: the run's only task).")
]
ImageOpt = Annotated[list[Path] | None, typer.Option("--image", help="Image file; repeatable.")]
TextOpt = Annotated[list[str] | None, typer.Option("--text", help="Text (question, prompt).")]
AudioOpt = Annotated[list[Path] | None, typer.Option("--audio", help="Audio file; repeatable.")]
VideoOpt = Annotated[list[Path] | None, typer.Option("--video", help="Video file; repeatable.")]
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="Directory for predictions.json and generated clips.")
]
StrategyOpt = Annotated[str, typer.Option(help=f"Text decoding: {' | '.join(STRATEGIES)}.")]
BeamOpt = Annotated[int, typer.Option(help="Beams (strategy beam).")]
TopPOpt = Annotated[float, typer.Option(help="Nucleus mass (strategy nucleus).")]
TemperatureOpt = Annotated[float, typer.Option(help="Sampling temperature (nucleus).")]
MaxLengthOpt = Annotated[
    int | None, typer.Option(help="Most tokens to generate (default: head's).")
]
SeedOpt = Annotated[int, typer.Option(help="Sampling seed (nucleus).")]


@cli_errors
def predict(
    run_dir: RunDirArg,
    task: TaskOpt = None,
    image: ImageOpt = None,
    text: TextOpt = None,
    audio: AudioOpt = None,
    video: VideoOpt = None,
    out: OutOpt = None,
    strategy: StrategyOpt = "greedy",
    beam_size: BeamOpt = 4,
    top_p: TopPOpt = 0.9,
    temperature: TemperatureOpt = 1.0,
    max_length: MaxLengthOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = None,
) -> None:
    """Run a task of RUN_DIR on files/texts and print the predictions as JSON.

    Classification -> label and scores; captioning -> text; contrastive -> embeddings;
    mlm -> filled masks; masked modelling -> reconstruction error; video generation -> files.
    """
    from omnifuse.inference import Pipeline
    from omnifuse.inference.devices import parse_device
    from omnifuse.inference.runs import find_task

    options = DecodingOptions(
        strategy=strategy,  # type: ignore[arg-type]  # checked by DecodingOptions
        beam_size=beam_size,
        top_p=top_p,
        temperature=temperature,
        max_length=max_length,
        seed=seed,
    )
    pipe = Pipeline.load(run_dir, parse_device(device))
    name = find_task(pipe.config, task, None, "predict")
    inputs: dict[str, list[Any] | None] = {"image": image, "text": text}
    inputs |= {"audio": audio, "video": video}
    predictions = pipe.predict(name, options, out, **inputs)
    result = {"task": name, "type": pipe.tasks[name], "predictions": predictions}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "predictions.json").write_text(json.dumps(result, indent=2) + "\n")
    typer.echo(json.dumps(result, indent=2))
