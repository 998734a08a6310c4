"""A real ``omnifuse serve`` process answered by curl and httpx."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest


@pytest.mark.slow
def test_curl_and_httpx_get_answers(
    live_server: str, data_dir: Path, val_rows: list[dict[str, str]]
) -> None:
    image = data_dir / val_rows[0]["image"]
    audio = data_dir / val_rows[0]["audio"]
    assert shutil.which("curl"), "curl is needed: apt-get install -y curl"
    upload = ["curl", "-sS", "-F", f"image=@{image}", f"{live_server}/v1/classify"]
    out = json.loads(subprocess.run(upload, capture_output=True, check=True, timeout=30).stdout)
    assert (
        out["task"] == "shape" and out["predictions"][0]["label"] in out["predictions"][0]["scores"]
    )
    speech = ["curl", "-sS", "-F", f"file=@{audio}", "-F", "model=asr"]
    speech.append(f"{live_server}/v1/audio/transcriptions")
    text = json.loads(subprocess.run(speech, capture_output=True, check=True, timeout=30).stdout)
    assert isinstance(text["text"], str)
    models = httpx.get(f"{live_server}/v1/models", timeout=10).json()
    assert len(models["data"]) == 8
    metrics = httpx.get(f"{live_server}/metrics", timeout=10).text
    assert 'omnifuse_requests_total{route="/v1/classify",status="200"}' in metrics
