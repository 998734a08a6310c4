"""``omnifuse chat RUN_DIR``: an interactive session with a run's ``instruction`` task.

User turns are read from stdin, one per line; the conversation history is kept and every reply
is generated from all of it (and the attached media) by the LM's own ``generate``. Commands:
``/image PATH``, ``/audio PATH``, ``/video PATH`` attach a file (replacing that modality's),
``/reset`` starts a new conversation, ``/exit`` (or end of input) ends the session.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from omnifuse.cli.errors import CommandError, cli_errors
from omnifuse.cli.predict import DeviceOpt, MaxLengthOpt, RunDirArg, StrategyOpt, TaskOpt
from omnifuse.inference.options import DecodingOptions

MEDIA_COMMANDS = {"/image": "image", "/audio": "audio", "/video": "video"}
FileOpt = Annotated[Path | None, typer.Option(help="Attach this file from the start.")]


def _attach(media: dict[str, Path], modality: str, value: str) -> str:
    path = Path(value.strip()).expanduser()
    if not path.is_file():
        return f"[no such file: {path}]"
    media[modality] = path
    return f"[attached {modality}: {path}]"


@cli_errors
def chat(
    run_dir: RunDirArg,
    task: TaskOpt = None,
    image: FileOpt = None,
    audio: FileOpt = None,
    video: FileOpt = None,
    strategy: StrategyOpt = "greedy",
    max_length: MaxLengthOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Chat with RUN_DIR's instruction task: one user turn per line on stdin.

    /image PATH, /audio PATH, /video PATH attach a file; /reset clears the history; /exit ends.
    """
    from omnifuse.inference import Pipeline
    from omnifuse.inference.inputs import process_values
    from omnifuse.inference.runs import find_task
    from omnifuse.tasks.instruction import InstructionTask

    options = DecodingOptions(strategy=strategy, max_length=max_length)  # type: ignore[arg-type]  # checked by DecodingOptions
    pipe = Pipeline.load(run_dir, device)
    name = find_task(pipe.config, task, "chat", "chat")
    kind = pipe.task(name)
    if not isinstance(kind, InstructionTask):
        raise CommandError(f"task {name!r} is a {pipe.tasks[name]} task; chat needs instruction")
    given = {"image": image, "audio": audio, "video": video}
    media = {m: p for m, p in given.items() if p is not None}
    history: list[dict[str, str]] = []
    typer.echo(f"chatting with task {name!r} of {run_dir} (/exit to end)")
    for raw in sys.stdin:
        line = raw.strip()
        if not line:
            continue
        command, _, rest = line.partition(" ")
        if command == "/exit":
            break
        if command == "/reset":
            history, media = [], {}
            typer.echo("[new conversation]")
            continue
        if command in MEDIA_COMMANDS:
            typer.echo(_attach(media, MEDIA_COMMANDS[command], rest))
            continue
        history.append({"role": "user", "content": line})
        inputs: dict[str, Any] = {
            m: process_values(pipe.processors, pipe.device, m, [str(p)])
            for m, p in sorted(media.items())
            if m in kind.media
        }
        with torch.no_grad():
            reply = kind.reply(pipe.model, inputs, history, options)
        history.append({"role": "assistant", "content": reply})
        typer.echo(f"assistant: {reply}")
