"""``omnifuse serve --backend onnx``: the exported graphs answer every task endpoint of the tiny
run as the PyTorch backend does (labels and texts equal, scores within 1e-4)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnifuse.export import export_onnx
from omnifuse.serving import ServeSettings, create_app
from omnifuse.serving.server import load_backend

ATOL = 1e-4


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def clients(tiny_run: Path) -> Iterator[tuple[TestClient, TestClient]]:
    export_onnx(tiny_run, log=lambda _: None)  # writes RUN_DIR/onnx, parity-checked
    torch_app = create_app(load_backend(tiny_run, "torch", "cpu"), ServeSettings())
    onnx_app = create_app(load_backend(tiny_run, "onnx"), ServeSettings())
    with TestClient(torch_app) as torch_client, TestClient(onnx_app) as onnx_client:
        yield torch_client, onnx_client


def assert_close(a: Any, b: Any, where: str) -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert abs(a - b) <= ATOL, f"{where}: {a} vs {b}"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def test_onnx_backend_answers_every_task_like_torch(
    clients: tuple[TestClient, TestClient], png: bytes, wav: bytes
) -> None:
    torch_client, onnx_client = clients
    assert onnx_client.get("/v1/models").json()["backend"] == "onnx"
    image, audio = [b64(png), b64(png)], [b64(wav)]
    cases = [
        ("classify", {"image": image}),
        ("caption", {"image": image}),
        ("answer", {"image": image, "text": ["what shape is it?", "how many?"]}),
        ("transcribe", {"audio": audio}),
        ("embed", {"image": image, "text": ["a red circle", "a blue star"]}),
        ("fill-mask", {"text": ["a [MASK] circle"]}),
        ("reconstruct", {"image": image}),
        ("predict", {"task": "itm", "image": image, "text": ["a circle", "a star"]}),
    ]
    for path, body in cases:
        expected = torch_client.post(f"/v1/{path}", json=body)
        got = onnx_client.post(f"/v1/{path}", json=body)
        assert expected.status_code == got.status_code == 200, (path, got.text)
        assert_close(got.json()["predictions"], expected.json()["predictions"], path)


def test_onnx_backend_refuses_what_it_cannot_decode(
    clients: tuple[TestClient, TestClient], png: bytes
) -> None:
    _, onnx_client = clients
    body = {"image": [b64(png)], "options": {"strategy": "beam", "beam_size": 2}}
    response = onnx_client.post("/v1/caption", json=body)
    assert response.status_code == 422, response.text
    assert "decodes greedily only" in response.text


def test_unknown_backend_names_the_choices(tiny_run: Path) -> None:
    with pytest.raises(ValueError, match="valid choices: torch, onnx"):
        load_backend(tiny_run, "tensorrt")
