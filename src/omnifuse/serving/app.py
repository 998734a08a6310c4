"""The HTTP app: ``create_app(pipe_or_backend, settings) -> FastAPI``.

A thin layer over the inference API: requests are parsed and checked here (limits, media),
grouped by the :class:`~omnifuse.serving.batching.Batcher`, and answered by a
:class:`~omnifuse.serving.backend.Backend` (a :class:`~omnifuse.inference.Pipeline` by default).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

from omnifuse.errors import InferenceError
from omnifuse.inference import Pipeline
from omnifuse.modalities.base import MediaError
from omnifuse.serving.backend import Backend, TaskInfo, as_backend
from omnifuse.serving.batching import Batcher, BatchSettings, Raws
from omnifuse.serving.inputs import TaskNotFound, parse, pick_task, predict_options, to_raws
from omnifuse.serving.limits import BadInput, LimitExceeded, Limits
from omnifuse.serving.metrics import Metrics
from omnifuse.serving.middleware import RequestFrame
from omnifuse.serving.openai import install_openai_routes
from omnifuse.serving.openapi import install_openapi, task_route
from omnifuse.serving.schemas import ModelsResponse, PredictResponse, TaskModel
from omnifuse.tasks import PredictOptions

log = logging.getLogger("omnifuse.serving")
STATIC = Path(__file__).parent / "static"
OPEN_PATHS = ("/", "/healthz", "/readyz", "/metrics", "/static", "/docs", "/openapi.json")


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``omnifuse serve`` configures.

    Attributes:
        limits: request limits (413 naming the limit when exceeded).
        batching: dynamic batching (``max_batch=1``: every request alone).
        api_key: when set, ``/v1/*`` requires ``Authorization: Bearer KEY`` (or ``X-API-Key``).
        title: the run's name in the OpenAPI schema and the web page.
    """

    limits: Limits = field(default_factory=Limits)
    batching: BatchSettings = field(default_factory=BatchSettings)
    api_key: str | None = None
    title: str = "omnifuse"


class ApiError(Exception):
    """An error answer: status, type and message (and the limit, for 413)."""

    def __init__(self, status: int, kind: str, message: str, limit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.limit = status, kind, limit


class Service:
    """The app's state: backend, batcher, metrics, settings, task list."""

    def __init__(self, backend: Backend, settings: ServeSettings) -> None:
        self.backend = backend
        self.settings = settings
        self.metrics = Metrics()
        self.tasks: list[TaskInfo] = backend.describe()
        self._clip_tasks = {t.name for t in self.tasks if "generate_video" in t.serves}
        self.batcher = Batcher(self._run_batch, settings.batching, self.metrics)
        self.ready = False

    def _run_batch(self, task: str, raws: Raws, options: PredictOptions) -> list[dict[str, Any]]:
        """One forward pass (worker thread); generated clips are read back as bytes, because
        their temporary folder is gone once this returns."""
        if task not in self._clip_tasks:  # a temporary folder costs ~1 ms: only where needed
            return self.backend.predict(task, raws, options, None)
        with tempfile.TemporaryDirectory(prefix="omnifuse-clips-") as folder:
            rows = self.backend.predict(task, raws, options, Path(folder))
            return [_inline_files(row) for row in rows]

    async def predict(
        self, request: Request, verb: str | None, default_task: str | None = None
    ) -> tuple[TaskInfo, list[dict[str, Any]]]:
        """Parse, check and batch one task request; the task and its predictions."""
        limits = self.settings.limits
        parsed = await parse(request, limits)
        task = pick_task(self.tasks, verb, parsed.task or default_task, sorted(parsed.entries))
        options = predict_options(parsed.options)
        if "video" not in parsed.entries:
            return task, await self.run(task.name, to_raws(parsed, limits, None), options)
        with tempfile.TemporaryDirectory(prefix="omnifuse-upload-") as folder:
            raws = to_raws(parsed, limits, Path(folder))
            return task, await self.run(task.name, raws, options)

    async def run(self, task: str, raws: Raws, options: PredictOptions) -> list[dict[str, Any]]:
        """Batch and wait, at most ``timeout_s`` (then 504)."""
        timeout = self.settings.limits.timeout_s
        try:
            return await asyncio.wait_for(self.batcher.submit(task, raws, options), timeout)
        except TimeoutError:
            raise ApiError(504, "timeout", f"no result within timeout_s={timeout:g}") from None


def _inline_files(row: dict[str, Any]) -> dict[str, Any]:
    if "files" not in row:
        return row
    return {"clips": {Path(f).suffix.lstrip("."): Path(f).read_bytes() for f in row["files"]}}


def json_ready(row: dict[str, Any]) -> dict[str, Any]:
    """Clip bytes -> data URLs (for JSON answers)."""
    if "clips" not in row:
        return row
    kinds = {"mp4": "video/mp4", "gif": "image/gif"}
    return {
        "clips": {
            fmt: f"data:{kinds.get(fmt, 'application/octet-stream')};base64,"
            + base64.b64encode(data).decode()
            for fmt, data in row["clips"].items()
        }
    }


def create_app(source: Pipeline | Backend, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app serving ``source`` (a loaded pipeline, or any :class:`Backend`)."""
    service = Service(as_backend(source), settings or ServeSettings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.ready = True
        yield
        # uvicorn runs this after in-flight requests have finished (graceful shutdown).
        service.ready = False
        await service.batcher.close()

    app = FastAPI(
        title=f"omnifuse serve: {service.settings.title}",
        version="1",
        description="Multimodal inference over a trained omnifuse run. See docs/serving.md.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(RequestFrame, metrics=service.metrics, api_key=service.settings.api_key)
    _install_errors(app, service)
    _install_meta_routes(app, service)
    _install_task_routes(app, service)
    install_openai_routes(app, service)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    install_openapi(app)
    return app


def error_response(request: Request, err: ApiError) -> JSONResponse:
    """The JSON error answer (``ErrorResponse``)."""
    body = {"type": err.kind, "message": str(err), "limit": err.limit}
    body["request_id"] = getattr(request.state, "request_id", None)
    headers = {"www-authenticate": "Bearer"} if err.status == 401 else None
    return JSONResponse({"error": body}, status_code=err.status, headers=headers)


def _install_errors(app: FastAPI, service: Service) -> None:
    def handler(status: int, kind: str) -> Callable[[Request, Exception], Awaitable[Response]]:
        async def handle(request: Request, exc: Exception) -> Response:
            service.metrics.errors.labels(kind=kind).inc()
            limit = exc.limit if isinstance(exc, LimitExceeded) else None
            return error_response(request, ApiError(status, kind, str(exc), limit))

        return handle

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)  # registered for ApiError only
        service.metrics.errors.labels(kind=exc.kind).inc()
        return error_response(request, exc)

    async def validation(request: Request, exc: Exception) -> Response:
        service.metrics.errors.labels(kind="invalid_request").inc()
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors) or str(
            exc
        )
        return error_response(request, ApiError(422, "invalid_request", message))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(LimitExceeded, handler(413, "limit_exceeded"))
    app.add_exception_handler(BadInput, handler(422, "bad_input"))
    app.add_exception_handler(MediaError, handler(422, "bad_input"))
    app.add_exception_handler(InferenceError, handler(422, "invalid_request"))
    app.add_exception_handler(TaskNotFound, handler(404, "task_not_found"))


def _install_meta_routes(app: FastAPI, service: Service) -> None:
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz", tags=["meta"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["meta"], responses={503: {"description": "not ready"}})
    async def readyz() -> JSONResponse:
        """Readiness: the model is loaded and the batcher accepts requests."""
        status = 200 if service.ready else 503
        return JSONResponse({"ready": service.ready}, status_code=status)

    @app.get("/metrics", tags=["meta"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus text: requests, latency, batch sizes, errors."""
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    @app.get("/v1/models", tags=["meta"], response_model=ModelsResponse)
    async def models() -> ModelsResponse:
        """The run's tasks: type, requests served, inputs, labels."""
        data = [
            TaskModel(
                name=t.name,
                type=t.type,
                serves=list(t.serves),
                inputs=list(t.inputs),
                required=list(t.required),
                labels=list(t.labels) if t.labels else None,
            )
            for t in service.tasks
        ]
        return ModelsResponse(backend=service.backend.name, data=data)


VERBS = {
    "embed": "embed",
    "classify": "classify",
    "caption": "caption",
    "answer": "answer",
    "transcribe": "transcribe",
    "fill-mask": "fill_mask",
    "reconstruct": "reconstruct",
}


def _install_task_routes(app: FastAPI, service: Service) -> None:
    for path, verb in VERBS.items():
        app.add_api_route(
            f"/v1/{path}", _task_handler(service, verb), methods=["POST"], **task_route(verb)
        )
    app.add_api_route(
        "/v1/predict", _task_handler(service, None), methods=["POST"], **task_route(None)
    )
    app.add_api_route(
        "/v1/generate-video", _video_handler(service), methods=["POST"], **task_route("video")
    )


def _task_handler(service: Service, verb: str | None) -> Callable[[Request], Awaitable[Any]]:
    async def handle(request: Request) -> JSONResponse:
        task, rows = await service.predict(request, verb)
        # A plain JSONResponse: validating our own PredictResponse again costs time per request.
        return JSONResponse({"task": task.name, "predictions": [json_ready(r) for r in rows]})

    return handle


def _video_handler(service: Service) -> Callable[[Request, str], Awaitable[Any]]:
    async def handle(request: Request, response_format: str = "mp4") -> Response:
        if response_format not in ("mp4", "gif", "json"):
            raise BadInput(f"response_format={response_format!r}: choose mp4, gif or json")
        task, rows = await service.predict(request, "generate_video")
        if response_format == "json" or len(rows) != 1:
            rows = [json_ready(r) for r in rows]
            return JSONResponse(PredictResponse(task=task.name, predictions=rows).model_dump())
        kind = "video/mp4" if response_format == "mp4" else "image/gif"
        return Response(rows[0]["clips"][response_format], media_type=kind)

    return handle
