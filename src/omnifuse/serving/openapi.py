"""OpenAPI details FastAPI cannot infer: task endpoints read JSON *or* multipart bodies, so
their request body is declared here, and its models are added to the schema's components."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from omnifuse.serving.schemas import ErrorResponse, Options, PredictRequest, PredictResponse

REF = "#/components/schemas/{model}"

SUMMARIES = {
    "embed": "Embeddings (and similarity) of a contrastive task",
    "classify": "Class probabilities",
    "caption": "Image captions",
    "answer": "Answers to questions about images (VQA)",
    "transcribe": "Speech transcripts",
    "fill_mask": "Top tokens at every [MASK]",
    "reconstruct": "Masked-modelling reconstruction error",
    "video": "Generate a video from text (MP4 or GIF; JSON with data URLs for batches)",
    None: "Any task, by name",
}

MULTIPART = {
    "type": "object",
    "properties": {
        "task": {"type": "string"},
        "text": {"type": "array", "items": {"type": "string"}},
        "image": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "audio": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "video": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "options": {"type": "string", "description": "Options as a JSON object."},
    },
}

ERRORS = {
    "401": "missing or wrong API key",
    "404": "unknown task, or none that serves this request (lists the valid ones)",
    "413": "over a limit (named in error.limit)",
    "422": "invalid request or unreadable file (with the reason)",
    "504": "no result within the timeout",
}


def task_route(verb: str | None) -> dict[str, Any]:
    """``add_api_route`` keywords of a task endpoint (``"video"``: generate-video)."""
    json_body = {"schema": {"$ref": REF.format(model="PredictRequest")}}
    ok: dict[str, Any] = {
        "description": "predictions",
        "content": {"application/json": {"schema": {"$ref": REF.format(model="PredictResponse")}}},
    }
    if verb == "video":
        ok["content"]["video/mp4"] = {"schema": {"type": "string", "format": "binary"}}
        ok["content"]["image/gif"] = {"schema": {"type": "string", "format": "binary"}}
    error = {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}}
    responses: dict[int | str, Any] = {"200": ok}
    responses.update({code: {"description": d, "content": error} for code, d in ERRORS.items()})
    return {
        "summary": SUMMARIES[verb],
        "tags": ["tasks"],
        "response_model": None,
        "responses": responses,
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": json_body,
                    "multipart/form-data": {"schema": MULTIPART},
                },
            }
        },
    }


def install_openapi(app: FastAPI) -> None:
    """Generate the schema once, with the request/response models of the task endpoints."""

    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in (PredictRequest, PredictResponse, ErrorResponse, Options):
                found = model.model_json_schema(ref_template=REF)
                components.update(found.pop("$defs", {}))
                components[model.__name__] = found
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]  # FastAPI's documented override
