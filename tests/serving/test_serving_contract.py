"""Contract tests: every malformed request gets its 4xx; schemathesis finds no 500."""

from __future__ import annotations

import base64
from collections import Counter
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from malformed_corpus import corpus
from serving_helpers import FakeBackend, mp4_bytes, png_bytes, wav_bytes

from omnifuse.inference import Pipeline
from omnifuse.serving import Limits, ServeSettings, create_app

EXAMPLES = 25


def test_every_malformed_request_gets_its_4xx(client: TestClient) -> None:
    wrong = []
    for case in corpus():
        response = client.request(case.method, case.path, **case.kwargs)
        if response.status_code != case.status:
            wrong.append((case.name, case.status, response.status_code, response.text[:200]))
    assert wrong == [], "\n".join(map(str, wrong))


def test_each_limit_is_named_in_its_413() -> None:
    limits = Limits(
        max_upload_bytes=4000,
        max_image_pixels=32 * 32,
        max_audio_seconds=0.5,
        max_video_frames=4,
        max_video_seconds=10.0,
        max_text_chars=10,
        max_batch=2,
    )
    cases = [
        ({"image": [png_bytes(64, 64)]}, "max_image_pixels"),
        ({"image": [bytes(5000)]}, "max_upload_bytes"),
        ({"audio": [wav_bytes(1.0, rate=400)]}, "max_audio_seconds"),
        ({"video": [mp4_bytes(8)]}, "max_video_frames"),
        ({"text": ["x" * 11]}, "max_text_chars"),
        ({"text": ["a", "b", "c"]}, "max_batch"),
    ]
    with TestClient(create_app(FakeBackend(), ServeSettings(limits=limits))) as client:
        for body, limit in cases:
            media = {
                m: [base64.b64encode(v).decode() if isinstance(v, bytes) else v for v in vs]
                for m, vs in body.items()
            }
            response = client.post("/v1/predict", json=media)
            assert response.status_code == 413, (limit, response.text)
            assert response.json()["error"]["limit"] == limit
            assert f"over the limit {limit}=" in response.json()["error"]["message"]
        seconds = ServeSettings(limits=Limits(max_video_seconds=0.5))
    with TestClient(create_app(FakeBackend(), seconds)) as client:
        response = client.post("/v1/predict", files={"video": ("v.mp4", mp4_bytes(8))})
        assert response.json()["error"]["limit"] == "max_video_seconds"
        ok = client.post("/v1/predict", files={"video": ("../../x.mp4", mp4_bytes(2))})
        assert ok.status_code == 200 and ok.json()["predictions"][0]["modalities"] == ["video"]


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(pipe: Pipeline) -> None:
    """Hypothesis cases of every operation of the OpenAPI schema (schemathesis's pytest plugin
    does not load under this pytest, so operations are driven one by one)."""
    app = create_app(pipe, ServeSettings())
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    with TestClient(app):  # the lifespan (the batcher) runs for the whole test
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        for operation in operations:
            check_operation(operation, failures, statuses)
    assert len(operations) >= 15
    print(f"schemathesis: {sum(statuses.values())} calls, statuses {sorted(statuses.items())}")
    assert statuses[200] > 0 and sum(statuses.values()) > 5 * len(operations)
    assert failures == [], "\n".join(failures[:10])


def check_operation(operation: Any, failures: list[str], statuses: Counter[int]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        response = case.call()
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(f"{operation.label}: {response.status_code} {response.text[:200]}")

    run()
