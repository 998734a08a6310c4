"""OpenAI-compatible endpoints over the run's generation tasks.

There is no language-model decoder yet, so ``/v1/chat/completions`` answers the **last user
message** with the task that fits its parts (image + text: ``answer``; image: ``caption``;
audio: ``transcribe``); earlier turns are ignored. ``/v1/audio/transcriptions`` runs the speech
captioning task. True multi-turn chat needs the LM decoder of the pretrained-towers issue.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from omnifuse.serving.inputs import decode_base64, pick_task, predict_options
from omnifuse.serving.limits import BadInput, check, check_text, decode_audio, decode_image
from omnifuse.serving.schemas import ChatMessage, ChatRequest, Options

if TYPE_CHECKING:
    from omnifuse.serving.app import Service

TRANSCRIPTION_FORM = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "model": {"type": "string"},
                    "response_format": {"type": "string", "enum": ["json", "text"]},
                    "language": {"type": "string"},
                },
            }
        }
    },
}


def install_openai_routes(app: FastAPI, service: Service) -> None:
    """Add ``/v1/chat/completions`` and ``/v1/audio/transcriptions``."""

    @app.post("/v1/chat/completions", tags=["openai"], response_model=None)
    async def chat(body: ChatRequest) -> Response:
        """Answer the last user message (image/audio content parts); SSE when ``stream``."""
        verb, raws = chat_inputs(body, service)
        task = pick_task(service.tasks, verb, _task_name(body.model, service), sorted(raws))
        options = predict_options(Options(max_length=body.max_tokens))
        rows = await service.run(task.name, raws, options)
        text = str(rows[0].get("text", rows[0].get("label", "")))
        if body.stream:
            return StreamingResponse(_chunks(text, task.name), media_type="text/event-stream")
        return JSONResponse(_completion(text, task.name))

    @app.post(
        "/v1/audio/transcriptions",
        tags=["openai"],
        response_model=None,
        openapi_extra={"requestBody": TRANSCRIPTION_FORM},
    )
    async def transcriptions(request: Request) -> Response:
        """OpenAI-style transcription of one uploaded audio ``file``."""
        form = await _form(request, service)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise BadInput("file: upload the audio as the multipart field 'file'")
        audio = decode_audio(await upload.read(), "file", service.settings.limits)
        model = form.get("model")
        name = _task_name(model if isinstance(model, str) else None, service)
        task = pick_task(service.tasks, "transcribe", name, ["audio"])
        rows = await service.run(task.name, {"audio": [audio]}, predict_options(None))
        text = str(rows[0].get("text", ""))
        fmt = form.get("response_format") or "json"
        if fmt == "text":
            return PlainTextResponse(text)
        if fmt != "json":
            raise BadInput(f"response_format={fmt!r}: choose json or text")
        return JSONResponse({"text": text})


async def _form(request: Request, service: Service) -> Any:
    body = await request.body()
    limits = service.settings.limits
    check("max_request_bytes", len(body), limits.max_request_bytes, "request body in bytes")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadInput("send multipart/form-data with the audio as 'file'")
    try:
        return await request.form(max_files=2, max_fields=8)
    except Exception as err:  # python-multipart raises several types for a malformed body
        raise BadInput(f"malformed multipart body: {err}") from None


def _task_name(model: str | None, service: Service) -> str | None:
    """``model`` names a task when it is one of the run's (OpenAI clients always send one)."""
    return model if model in {t.name for t in service.tasks} else None


def chat_inputs(body: ChatRequest, service: Service) -> tuple[str, dict[str, list[Any]]]:
    """The last user message -> (the request it is, raw inputs)."""
    message = _last_user(body.messages)
    limits = service.settings.limits
    texts: list[str] = []
    raws: dict[str, list[Any]] = {}
    parts = message.content if isinstance(message.content, list) else []
    if isinstance(message.content, str):
        texts.append(message.content)
    for i, part in enumerate(parts):
        name = f"messages[-1].content[{i}]"
        if part.type == "text" and part.text is not None:
            texts.append(part.text)
        elif part.type == "image_url" and part.image_url is not None:
            data = decode_base64(part.image_url.url, name)
            raws.setdefault("image", []).append(decode_image(data, name, limits))
        elif part.type == "input_audio" and part.input_audio is not None:
            data = decode_base64(part.input_audio.data, name)
            raws.setdefault("audio", []).append(decode_audio(data, name, limits))
        else:
            raise BadInput(f"{name}: a {part.type} part needs its {part.type} field")
    if any(len(v) > 1 for v in raws.values()):
        raise BadInput("one image or audio part per message (the run has no multi-image model)")
    return _verb(raws, texts, limits, service)


def _verb(
    raws: dict[str, list[Any]], texts: list[str], limits: Any, service: Service
) -> tuple[str, dict[str, list[Any]]]:
    text = check_text(" ".join(t for t in texts if t.strip()), "message text", limits)
    if "audio" in raws:
        return "transcribe", raws
    if "image" not in raws:
        raise BadInput(
            "this run has no language-model decoder: chat answers an image or audio part "
            "(with an optional question); text-only chat needs the LM decoder"
        )
    answering = [t for t in service.tasks if "answer" in t.serves and "text" in t.inputs]
    if text and answering:
        return "answer", {**raws, "text": [text]}
    return "caption", raws


def _last_user(messages: list[ChatMessage]) -> ChatMessage:
    for message in reversed(messages):
        if message.role == "user":
            return message
    raise BadInput("messages: no user message to answer")


def _completion(text: str, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": None,
    }


async def _chunks(text: str, model: str) -> AsyncIterator[str]:
    """OpenAI ``chat.completion.chunk`` events: the role, the text word by word, the stop."""
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    words = text.split(" ")
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": w if i == 0 else " " + w} for i, w in enumerate(words)]
    for delta in deltas:
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        yield f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"
    stop = {"index": 0, "delta": {}, "finish_reason": "stop"}
    yield f"data: {json.dumps({**base, 'choices': [stop]})}\n\n"
    yield "data: [DONE]\n\n"


__all__ = ["install_openai_routes"]
