"""``omnifuse serve``: the HTTP API and web page of a trained run (see docs/serving.md).

The command function is typed; the lead mounts it with ``app.command("serve")(serve)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omnifuse.cli.errors import cli_errors
from omnifuse.serving import BatchSettings, Limits, ServeSettings
from omnifuse.serving.server import serve as run_server

LIMITS = Limits()


@cli_errors
def serve(
    run_dir: Annotated[Path, typer.Argument(help="Run directory (or model directory) to serve.")],
    host: Annotated[
        str, typer.Option(help="Interface to bind; loopback by default.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="OMNIFUSE_API_KEY", help="Require this key on /v1/* (Bearer)."),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes, each with its own model.")] = 1,
    max_batch: Annotated[int, typer.Option(min=1, help="Most samples per forward pass.")] = 32,
    max_wait_ms: Annotated[
        float, typer.Option(min=0.0, help="How long a batch waits for more requests.")
    ] = 5.0,
    batching: Annotated[
        bool, typer.Option(help="Group concurrent requests (--no-batching: batch 1).")
    ] = True,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per request (504).")] = 30.0,
    max_upload_mb: Annotated[float, typer.Option(min=0.001, help="Largest upload.")] = 16.0,
    max_request_batch: Annotated[int, typer.Option(min=1, help="Samples per request.")] = 32,
    backend: Annotated[
        str, typer.Option(help="Runtime: torch, or onnx (the RUN_DIR/onnx of omnifuse export).")
    ] = "torch",
    device: Annotated[str | None, typer.Option(help="cpu, cuda ... (default: auto).")] = None,
) -> None:
    """Serve RUN_DIR over HTTP: task endpoints, OpenAI-style chat/transcriptions, a web page."""
    from omnifuse.inference.devices import parse_device

    parse_device(device)  # here, not in each of the --workers processes
    upload = int(max_upload_mb * 1024 * 1024)
    limits = Limits(
        max_upload_bytes=upload,
        max_request_bytes=max(LIMITS.max_request_bytes, 2 * upload),
        max_batch=max_request_batch,
        timeout_s=timeout,
    )
    batch = BatchSettings(max_batch=max_batch if batching else 1, max_wait_ms=max_wait_ms)
    settings = ServeSettings(limits, batch, api_key, title=run_dir.name)
    run_server(run_dir, settings, host, port, workers, backend, device)
