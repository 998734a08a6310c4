"""Run the app with uvicorn: one process, or ``workers`` processes that each load the run.

Several workers need an import string, so their settings travel in an environment variable
(:data:`SETTINGS_ENV`) and :func:`app_from_env` rebuilds the app in every worker process.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI

from omnifuse.export import OnnxPredictor
from omnifuse.inference import Pipeline
from omnifuse.serving.app import ServeSettings, create_app
from omnifuse.serving.backend import Backend, OnnxBackend, TorchBackend
from omnifuse.serving.batching import BatchSettings
from omnifuse.serving.limits import Limits

SETTINGS_ENV = "OMNIFUSE_SERVE_SETTINGS"
BackendName = Literal["torch", "onnx"]
BACKENDS: tuple[BackendName, ...] = ("torch", "onnx")


def load_backend(run_dir: Path, backend: str = "torch", device: str | None = None) -> Backend:
    """The runtime that serves ``run_dir``: ``torch`` (the run itself) or ``onnx`` (its
    ``omnifuse export`` directory: ``RUN_DIR/onnx``, or RUN_DIR when it is one)."""
    if backend == "torch":
        return TorchBackend(Pipeline.load(run_dir, device=device))
    if backend == "onnx":
        exported = run_dir if (run_dir / "manifest.json").is_file() else run_dir / "onnx"
        return OnnxBackend(OnnxPredictor.load(exported))
    raise ValueError(f"backend {backend!r} is not available; valid choices: {', '.join(BACKENDS)}")


def _encode(run_dir: Path, settings: ServeSettings, backend: str, device: str | None) -> str:
    return json.dumps(
        {"run_dir": str(run_dir), "backend": backend, "device": device, **asdict(settings)}
    )


def app_from_env() -> FastAPI:
    """The app of one worker process, from :data:`SETTINGS_ENV` (uvicorn factory)."""
    spec: dict[str, Any] = json.loads(os.environ[SETTINGS_ENV])
    settings = ServeSettings(
        limits=Limits(**spec["limits"]),
        batching=BatchSettings(**spec["batching"]),
        api_key=spec["api_key"],
        title=spec["title"],
    )
    backend = load_backend(Path(spec["run_dir"]), spec["backend"], spec["device"])
    return create_app(backend, settings)


def serve(
    run_dir: Path,
    settings: ServeSettings,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    backend: str = "torch",
    device: str | None = None,
) -> None:
    """Serve ``run_dir`` until SIGINT/SIGTERM; in-flight requests finish first (uvicorn's
    graceful shutdown, at most ``timeout_s`` more)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "timeout_graceful_shutdown": int(settings.limits.timeout_s) + 5,
        "log_level": "info",
        "access_log": False,  # RequestFrame logs every request, with its request id
    }
    if workers == 1:
        app = create_app(load_backend(run_dir, backend, device), settings)
        uvicorn.run(app, **common)
        return
    os.environ[SETTINGS_ENV] = _encode(run_dir, settings, backend, device)
    # Each worker imports torch and loads the run before it answers the supervisor's pings; on
    # a busy machine that exceeds uvicorn's 5 s default, and the worker is killed in a loop.
    uvicorn.run(
        "omnifuse.serving.server:app_from_env",
        factory=True,
        workers=workers,
        timeout_worker_healthcheck=120,
        **common,
    )
