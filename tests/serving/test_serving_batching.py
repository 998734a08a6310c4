"""Dynamic batching groups concurrent requests; timeouts answer 504; shutdown is graceful."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from serving_helpers import FakeBackend

from omnifuse.serving import BatchSettings, Limits, ServeSettings, create_app


async def post_many(app: object, bodies: list[dict[str, object]]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]  # an ASGI app
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await asyncio.gather(*(client.post("/v1/predict", json=b) for b in bodies))


def run_app(
    backend: FakeBackend, settings: ServeSettings, bodies: list[dict[str, object]]
) -> list[httpx.Response]:
    app = create_app(backend, settings)

    async def main() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            return await post_many(app, bodies)

    return asyncio.run(main())


def test_concurrent_requests_share_forward_passes() -> None:
    backend = FakeBackend(delay=0.05)
    settings = ServeSettings(batching=BatchSettings(max_batch=8, max_wait_ms=20))
    bodies: list[dict[str, object]] = [{"text": [f"t{i}"]} for i in range(16)]
    responses = run_app(backend, settings, bodies)
    assert [r.status_code for r in responses] == [200] * 16
    # Each request gets its own prediction back, in order.
    assert [r.json()["predictions"][0]["text"] for r in responses] == [f"t{i}" for i in range(16)]
    assert sum(backend.calls) == 16 and len(backend.calls) < 16
    assert max(backend.calls) <= 8


def test_batching_off_runs_every_request_alone() -> None:
    backend = FakeBackend()
    settings = ServeSettings(batching=BatchSettings(max_batch=1, max_wait_ms=0))
    responses = run_app(backend, settings, [{"text": ["x"]} for _ in range(6)])
    assert all(r.status_code == 200 for r in responses) and backend.calls == [1] * 6


def test_a_request_over_max_batch_is_held_for_the_next_batch() -> None:
    backend = FakeBackend(delay=0.02)
    settings = ServeSettings(batching=BatchSettings(max_batch=4, max_wait_ms=20))
    bodies: list[dict[str, object]] = [
        {"text": ["a", "b", "c"]},
        {"text": ["d", "e"]},
        {"text": ["f"]},
    ]
    responses = run_app(backend, settings, bodies)
    assert [len(r.json()["predictions"]) for r in responses] == [3, 2, 1]
    assert max(backend.calls) <= 4 and sum(backend.calls) == 6


def test_slow_requests_time_out_with_504() -> None:
    settings = ServeSettings(limits=Limits(timeout_s=0.1))
    (response,) = run_app(FakeBackend(delay=0.5), settings, [{"text": ["x"]}])
    assert response.status_code == 504
    assert response.json()["error"] == {
        "type": "timeout",
        "message": "no result within timeout_s=0.1",
        "limit": None,
        "request_id": response.headers["x-request-id"],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.slow
def test_shutdown_lets_in_flight_requests_finish() -> None:
    """A server told to exit while a slow request runs still answers it, then stops."""
    port = free_port()
    backend = FakeBackend(delay=1.0)
    app = create_app(backend, ServeSettings())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        result: dict[str, httpx.Response] = {}

        def call() -> None:
            url = f"http://127.0.0.1:{port}/v1/predict"
            result["r"] = httpx.post(url, json={"text": ["slow"]}, timeout=20)

        caller = threading.Thread(target=call)
        caller.start()
        assert backend.started.wait(timeout=20)  # the request is in the model now
        server.should_exit = True
        caller.join(timeout=20)
        thread.join(timeout=20)
        assert (
            result["r"].status_code == 200
            and result["r"].json()["predictions"][0]["text"] == "slow"
        )
        assert not thread.is_alive()
    finally:
        server.should_exit = True
        thread.join(timeout=5)
