"""Every endpoint over every task type of the tiny run, and the error answers users get."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serving_helpers import png_bytes

import omnifuse
from omnifuse.config import load_config
from omnifuse.inference import Pipeline
from omnifuse.serving import ServeSettings, create_app


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_url(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64,{b64(data)}"


def test_models_lists_every_task_with_inputs_and_labels(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    tasks = {t["name"]: t for t in body["data"]}
    assert body["backend"] == "torch"
    assert list(tasks) == ["shape", "itc", "itm", "mlm", "mim", "caption", "asr", "answer"]
    assert tasks["shape"]["labels"][:2] == ["circle", "square"]
    assert tasks["answer"]["inputs"] == ["image", "text"] and tasks["asr"]["inputs"] == ["audio"]
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"ready": True}


def test_every_task_endpoint_answers(client: TestClient, png: bytes, wav: bytes) -> None:
    image, audio = [b64(png)], [data_url(wav, "audio/wav")]
    cases = [
        ("classify", {"image": image}, "shape", "scores"),
        ("caption", {"image": image}, "caption", "text"),
        ("answer", {"image": image, "text": ["what shape is it?"]}, "answer", "label"),
        ("transcribe", {"audio": audio}, "asr", "text"),
        ("embed", {"image": image, "text": ["a red circle"]}, "itc", "similarity"),
        ("fill-mask", {"text": ["a [MASK] circle"]}, "mlm", "masks"),
        ("reconstruct", {"image": image}, "mim", "reconstruction_mse"),
        ("predict", {"task": "itm", "image": image, "text": ["a circle"]}, "itm", "label"),
    ]
    for path, body, task, key in cases:
        response = client.post(f"/v1/{path}", json=body)
        assert response.status_code == 200, (path, response.text)
        out = response.json()
        assert out["task"] == task and key in out["predictions"][0], (path, out)
        assert response.headers["x-request-id"]


def test_a_request_may_carry_a_batch_and_multipart_uploads(client: TestClient, png: bytes) -> None:
    batch = client.post("/v1/classify", json={"image": [b64(png), b64(png_bytes())]}).json()
    assert len(batch["predictions"]) == 2
    files = [("image", ("whatever/../../etc/passwd", png, "image/png"))]
    form = client.post("/v1/answer", files=files, data={"text": "what colour?"})
    assert form.status_code == 200 and form.json()["task"] == "answer"
    alone = client.post("/v1/classify", json={"image": [b64(png)]}).json()
    batched, single = batch["predictions"][0], alone["predictions"][0]
    assert batched["label"] == single["label"]
    assert batched["score"] == pytest.approx(single["score"], abs=1e-5)


def test_openai_transcriptions_and_chat(client: TestClient, png: bytes, wav: bytes) -> None:
    out = client.post(
        "/v1/audio/transcriptions", files={"file": ("a.wav", wav)}, data={"model": "x"}
    )
    assert out.status_code == 200 and isinstance(out.json()["text"], str)
    text = client.post(
        "/v1/audio/transcriptions", files={"file": ("a.wav", wav)}, data={"response_format": "text"}
    )
    assert text.headers["content-type"].startswith("text/plain")
    parts = [
        {"type": "text", "text": "what shape is it?"},
        {"type": "image_url", "image_url": {"url": data_url(png)}},
    ]
    chat = client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": parts}]}
    )
    body = chat.json()
    assert body["object"] == "chat.completion" and body["model"] == "answer"
    assert body["choices"][0]["message"]["role"] == "assistant"
    stream = client.post(
        "/v1/chat/completions",
        json={"stream": True, "messages": [{"role": "user", "content": parts[1:]}]},
    )
    events = [line[6:] for line in stream.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and stream.headers["content-type"].startswith("text/event-stream")
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and chunks[0][
        "model"
    ] == "caption"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert (
        client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hello"}]}
        )
        .json()["error"]["message"]
        .startswith("this run has no language-model decoder")
    )


def test_errors_name_the_problem(client: TestClient, png: bytes) -> None:
    unknown = client.post("/v1/predict", json={"task": "nope", "image": [b64(png)]})
    assert unknown.status_code == 404
    assert (
        "unknown task 'nope'; this run's tasks: shape, itc, itm"
        in unknown.json()["error"]["message"]
    )
    corrupt = client.post("/v1/classify", json={"image": [b64(png[: len(png) // 2])]})
    assert corrupt.status_code == 422
    assert (
        corrupt.json()["error"]["message"]
        == "image[0]: cannot decode image: image file is truncated"
    )
    several = client.post("/v1/classify", json={"image": [b64(png)], "text": ["x"]})
    assert several.status_code == 422 and "several tasks can classify" in several.text
    cannot = client.post("/v1/caption", json={"task": "shape", "image": [b64(png)]})
    assert cannot.status_code == 404 and "tasks that can: caption, asr" in cannot.text


def test_api_key(pipe: Pipeline, png: bytes) -> None:
    with TestClient(create_app(pipe, ServeSettings(api_key="s3cret"))) as client:
        assert client.get("/v1/models").status_code == 401
        wrong = client.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "unauthorized"
        assert (
            client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        )
        assert client.get("/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/healthz").status_code == 200  # probes need no key


def test_metrics_count_requests_batches_and_errors(client: TestClient, png: bytes) -> None:
    client.post("/v1/classify", json={"image": [b64(png)]})
    client.post("/v1/classify", json={"image": ["not base64!"]})
    text = client.get("/metrics").text
    assert 'omnifuse_requests_total{route="/v1/classify",status="200"} 1.0' in text
    assert 'omnifuse_requests_total{route="/v1/classify",status="422"} 1.0' in text
    assert 'omnifuse_batch_size_count{task="shape"} 1.0' in text
    assert 'omnifuse_errors_total{kind="bad_input"} 1.0' in text
    assert 'omnifuse_request_latency_seconds_bucket{le="+Inf",route="/v1/classify"} 2.0' in text


def test_web_page_and_openapi_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/v1/classify", "/v1/chat/completions", "/v1/audio/transcriptions"} <= set(
        spec["paths"]
    )
    body = spec["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert spec["components"]["schemas"]["PredictRequest"]["examples"]


@pytest.fixture(scope="module")
def video_client() -> TestClient:
    """The tiny preset with an untrained video generator (as tests/inference)."""
    overrides = [
        "model.heads={generator: {type: video_generator, source: text}}",
        "tasks={gen: {type: video_generation, head: generator}}",
    ]
    model, processors = omnifuse.create_model("tiny", overrides)
    pipe = Pipeline(model, processors, load_config("tiny", overrides), device="cpu")
    return TestClient(create_app(pipe))


def test_generate_video_returns_mp4_gif_or_json(video_client: TestClient, tmp_path: Path) -> None:
    with video_client as client:
        mp4 = client.post("/v1/generate-video", json={"text": ["a red circle"]})
        assert mp4.headers["content-type"] == "video/mp4" and mp4.content[4:8] == b"ftyp"
        gif = client.post("/v1/generate-video?response_format=gif", json={"text": ["x"]})
        assert gif.content[:3] == b"GIF"
        both = client.post("/v1/generate-video", json={"text": ["a", "b"]}).json()
        assert [sorted(p["clips"]) for p in both["predictions"]] == [["gif", "mp4"]] * 2
        assert both["predictions"][0]["clips"]["mp4"].startswith("data:video/mp4;base64,")
