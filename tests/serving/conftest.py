"""Fixtures of the serving tests: the tiny run of tests/inference served by a TestClient."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

# The run builder lives with the inference tests (tests/ has no __init__.py files).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))

from tiny_run import build_tiny_run, one_thread

import omnifuse
from omnifuse.config import load_config
from omnifuse.inference import Pipeline
from omnifuse.serving import ServeSettings, create_app


@pytest.fixture(scope="package", autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread (see ``one_thread``); the model runs in the batcher's thread, which
    inherits torch's global setting."""
    with one_thread():
        yield


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with one_thread():
        return build_tiny_run(tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="session")
def pipe(tiny_run: Path) -> Pipeline:
    return Pipeline.load(tiny_run, device="cpu")


@pytest.fixture(scope="session")
def data_dir(tiny_run: Path) -> Path:
    return tiny_run.parent / "data"


@pytest.fixture(scope="session")
def val_rows(data_dir: Path) -> list[dict[str, str]]:
    lines = (data_dir / "val.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="session")
def png(data_dir: Path, val_rows: list[dict[str, str]]) -> bytes:
    """A real ShapesWorld image of the run's data."""
    return (data_dir / val_rows[0]["image"]).read_bytes()


@pytest.fixture(scope="session")
def wav(data_dir: Path, val_rows: list[dict[str, str]]) -> bytes:
    """A real speech clip of the run's data."""
    return (data_dir / val_rows[0]["audio"]).read_bytes()


@pytest.fixture()
def client(pipe: Pipeline) -> Iterator[TestClient]:
    """A client of the app over the tiny run (lifespan started and stopped per test)."""
    with TestClient(create_app(pipe, ServeSettings())) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serve_process(run: Path, log: Path, *flags: str) -> Iterator[str]:
    """A real ``omnifuse serve RUN`` process on a free loopback port (killed in a finally)."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "omnifuse"), "serve", str(run)]
    command += ["--port", str(port), "--device", "cpu", *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="session")
def live_server(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``omnifuse serve`` of the tiny run."""
    with serve_process(tiny_run, tmp_path_factory.mktemp("live") / "server.log") as url:
        yield url


VIDEO_OVERRIDES = [
    "model.heads={generator: {type: video_generator, source: text}}",
    "tasks={gen: {type: video_generation, head: generator}}",
]


@pytest.fixture(scope="session")
def video_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run dir of the tiny preset with an untrained video generator (no data needed)."""
    run = tmp_path_factory.mktemp("video") / "run"
    run.mkdir()
    config = load_config("tiny", VIDEO_OVERRIDES)
    model, processors = omnifuse.create_model("tiny", VIDEO_OVERRIDES)
    (run / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    omnifuse.save(run / "model", model, processors, config)
    return run


@pytest.fixture(scope="session")
def live_video_server(video_run: Path) -> Iterator[str]:
    """``omnifuse serve`` of the video run with two worker processes."""
    with serve_process(video_run, video_run.parent / "server.log", "--workers", "2") as url:
        yield url


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"omnifuse serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"omnifuse serve not ready in {seconds} s: {log.read_text()[-2000:]}")
