"""Request and response models of the HTTP API (they are its OpenAPI schema, with examples).

Media travel in JSON as base64 strings or ``data:`` URLs (``data:image/png;base64,...``); the
same endpoints take multipart uploads (see ``docs/serving.md``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TINY_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
    "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


class Options(BaseModel):
    """How a prediction runs (decoding of generated text, candidates of fill-mask)."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["greedy", "beam", "nucleus"] = "greedy"
    beam_size: int = Field(4, ge=1, le=16)
    max_length: int | None = Field(None, ge=1, le=512)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    temperature: float = Field(1.0, gt=0.0, le=10.0)
    seed: int | None = Field(0, ge=0, le=2**31 - 1)
    top_k: int = Field(5, ge=1, le=50)


class PredictRequest(BaseModel):
    """One request: one list entry per sample and modality (all lists of equal length)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"image": [TINY_PNG]},
                {"task": "answer", "image": [TINY_PNG], "text": ["what shape is it?"]},
                {"text": ["a red circle"], "options": {"strategy": "beam", "beam_size": 2}},
            ]
        },
    )

    task: str | None = Field(None, description="Task name (default: the only fitting task).")
    text: list[str] | None = Field(None, description="Texts (questions, captions, prompts).")
    image: list[str] | None = Field(None, description="PNG/JPEG as base64 or data: URLs.")
    audio: list[str] | None = Field(None, description="WAV/FLAC/OGG as base64 or data: URLs.")
    video: list[str] | None = Field(None, description="MP4/WebM/GIF as base64 or data: URLs.")
    options: Options | None = None


class PredictResponse(BaseModel):
    """Predictions, one per sample, in request order (their fields depend on the task type)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task": "shape",
                    "predictions": [{"label": "circle", "index": 0, "score": 0.91, "scores": {}}],
                }
            ]
        }
    )

    task: str
    predictions: list[dict[str, Any]]


class TaskModel(BaseModel):
    """One task of the run."""

    name: str
    type: str
    serves: list[str]
    inputs: list[str]
    required: list[str]
    labels: list[str] | None = None


class ModelsResponse(BaseModel):
    """``GET /v1/models``: the run and its tasks."""

    object: Literal["list"] = "list"
    backend: str
    data: list[TaskModel]


class ErrorBody(BaseModel):
    type: str
    message: str
    limit: str | None = None
    request_id: str | None = None


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer of the API."""

    error: ErrorBody


class ImageURL(BaseModel):
    url: str = Field(description="A data: URL (the server fetches nothing).")


class InputAudio(BaseModel):
    data: str = Field(description="Base64 audio bytes.")
    format: Literal["wav", "flac", "ogg", "mp3"] = "wav"


class ContentPart(BaseModel):
    """An OpenAI content part: text, image_url or input_audio."""

    type: Literal["text", "image_url", "input_audio"]
    text: str | None = None
    image_url: ImageURL | None = None
    input_audio: InputAudio | None = None


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[ContentPart]


class ChatRequest(BaseModel):
    """OpenAI-compatible chat request; the last user message is answered (see docs)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "What shape is this?"},
                                {"type": "image_url", "image_url": {"url": TINY_PNG}},
                            ],
                        }
                    ],
                    "stream": False,
                }
            ]
        }
    )

    model: str | None = Field(None, description="A task name of the run, or any other string.")
    messages: list[ChatMessage] = Field(min_length=1, max_length=64)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=512)
    temperature: float | None = Field(
        None, ge=0.0, le=2.0, description="Accepted for compatibility; ignored (greedy decoding)."
    )
