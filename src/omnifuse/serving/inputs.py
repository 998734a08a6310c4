"""Requests -> raw inputs for the pipeline: JSON (base64 / data URLs) or multipart uploads,
each media decoded and checked against the limits, and the task that serves them picked."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from omnifuse.heads.decoding import DecodingOptions
from omnifuse.serving.backend import TaskInfo
from omnifuse.serving.limits import (
    BadInput,
    Limits,
    check,
    check_text,
    decode_audio,
    decode_image,
    save_video,
)
from omnifuse.serving.schemas import Options, PredictRequest
from omnifuse.tasks import PredictOptions

MEDIA = ("image", "audio", "video")
MODALITIES = ("text", *MEDIA)


class TaskNotFound(Exception):
    """An unknown task, or no task that serves the request (HTTP 404)."""


@dataclass
class Parsed:
    """A request's task name (or None), raw entries per modality (bytes or str) and options."""

    task: str | None
    entries: dict[str, list[Any]] = field(default_factory=dict)
    options: Options | None = None


def decode_base64(value: str, name: str) -> bytes:
    """A base64 string or ``data:...;base64,`` URL -> bytes."""
    if value.startswith("data:"):
        header, sep, value = value.partition(",")
        if not sep or not header.endswith(";base64"):
            raise BadInput(f"{name}: a data: URL must be 'data:<type>;base64,<data>'")
    elif value.startswith(("http://", "https://", "file:")):
        raise BadInput(f"{name}: URLs are not fetched; send the bytes (base64 or a data: URL)")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise BadInput(f"{name}: invalid base64 ({err})") from None


async def parse(request: Request, limits: Limits) -> Parsed:
    """A JSON or multipart request body -> :class:`Parsed` (size checked first)."""
    body = await request.body()
    check("max_request_bytes", len(body), limits.max_request_bytes, "request body in bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        return await _parse_form(request, limits)
    if kind not in ("application/json", ""):
        raise BadInput(f"content-type {kind!r}: send application/json or multipart/form-data")
    try:
        req = PredictRequest.model_validate_json(body)
    except ValidationError as err:
        raise BadInput(f"invalid JSON request: {_errors(err)}") from None
    entries = {m: list(v) for m in MODALITIES if (v := getattr(req, m)) is not None}
    return Parsed(req.task, entries, req.options)


def _errors(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in err.errors())


async def _parse_form(request: Request, limits: Limits) -> Parsed:
    try:
        form = await request.form(max_files=limits.max_batch * 4, max_fields=limits.max_batch * 4)
    except Exception as err:  # python-multipart raises several types for a malformed body
        raise BadInput(f"malformed multipart body: {err}") from None
    parsed = Parsed(task=_form_str(form.get("task")))
    for modality in MODALITIES:
        values = form.getlist(modality)
        if values:
            parsed.entries[modality] = [await _form_value(v, modality) for v in values]
    if (options := _form_str(form.get("options"))) is not None:
        try:
            parsed.options = Options.model_validate(json.loads(options))
        except (ValueError, ValidationError) as err:
            raise BadInput(f"options: not a valid options JSON object ({err})") from None
    return parsed


def _form_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


async def _form_value(value: Any, modality: str) -> Any:
    if isinstance(value, UploadFile):
        data = await value.read()
        return data.decode("utf-8", errors="replace") if modality == "text" else data
    return value


def to_raws(parsed: Parsed, limits: Limits, folder: Path | None) -> dict[str, list[Any]]:
    """Entries -> what the processors take: texts, PIL images, ``(samples, rate)``, video
    paths in ``folder`` (needed when there are videos). Raises :class:`BadInput` or
    ``LimitExceeded``."""
    if not parsed.entries:
        raise BadInput(f"no input given; send one or more of {', '.join(MODALITIES)}")
    sizes = {m: len(v) for m, v in parsed.entries.items()}
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{m}: {n}" for m, n in sizes.items())
        raise BadInput(f"inputs differ in length ({listing}); give one entry per sample")
    check("max_batch", max(sizes.values()), limits.max_batch, "samples in the request")
    if min(sizes.values()) == 0:
        raise BadInput("empty input list; give at least one sample")
    return {m: _decode_all(m, v, limits, folder) for m, v in parsed.entries.items()}


def _decode_all(
    modality: str, values: Sequence[Any], limits: Limits, folder: Path | None
) -> list[Any]:
    out: list[Any] = []
    for i, value in enumerate(values):
        name = f"{modality}[{i}]"
        if modality == "text":
            out.append(check_text(str(value), name, limits))
            continue
        data = decode_base64(value, name) if isinstance(value, str) else bytes(value)
        if modality == "image":
            out.append(decode_image(data, name, limits))
        elif modality == "audio":
            out.append(decode_audio(data, name, limits))
        elif folder is not None:
            out.append(save_video(data, name, limits, folder, i))
        else:
            raise ValueError("videos need a folder to be written to")
    return out


def predict_options(options: Options | None) -> PredictOptions:
    """API options -> the pipeline's (which verifies them; InferenceError -> 422)."""
    if options is None:
        return PredictOptions(DecodingOptions())
    decoding = DecodingOptions(
        strategy=options.strategy,
        beam_size=options.beam_size,
        max_length=options.max_length,
        top_p=options.top_p,
        temperature=options.temperature,
        seed=options.seed,
    )
    return PredictOptions(decoding, top_k=options.top_k)


def pick_task(
    tasks: Sequence[TaskInfo], verb: str | None, name: str | None, given: Sequence[str]
) -> TaskInfo:
    """The task that serves ``verb`` (None: any) for inputs ``given``: ``name`` if set, else
    the only fitting one (exact inputs preferred). Raises TaskNotFound / BadInput."""
    known = {t.name: t for t in tasks}
    if name is not None and name not in known:
        raise TaskNotFound(f"unknown task {name!r}; this run's tasks: {', '.join(known)}")
    serving = [t for t in tasks if verb is None or verb in t.serves]
    if name is not None:
        task = known[name]
        if task not in serving:
            raise TaskNotFound(f"task {name!r} cannot {verb}; tasks that can: {_names(serving)}")
        _check_inputs(task, given)
        return task
    if not serving:
        raise TaskNotFound(f"no task of this run can {verb}; its tasks: {', '.join(known)}")
    fitting = [t for t in serving if _fits(t, given)]
    exact = [t for t in fitting if set(t.inputs) == set(given)]
    found = exact if len(exact) == 1 else fitting
    if len(found) == 1:
        return found[0]
    if not found:
        reads = "; ".join(f"{t.name} reads {', '.join(t.inputs)}" for t in serving)
        raise BadInput(f"no task can {verb} from {', '.join(given)}: {reads}")
    raise BadInput(f"several tasks can {verb} these inputs: {_names(found)}; pass 'task'")


def _names(tasks: Sequence[TaskInfo]) -> str:
    return ", ".join(t.name for t in tasks) or "none"


def _fits(task: TaskInfo, given: Sequence[str]) -> bool:
    return set(given) <= set(task.inputs) and set(task.required) <= set(given)


def _check_inputs(task: TaskInfo, given: Sequence[str]) -> None:
    if not _fits(task, given):
        needs = f"reads {', '.join(task.inputs)}"
        if task.required:
            needs += f" (requires {', '.join(task.required)})"
        raise BadInput(f"task {task.name!r} {needs}; got {', '.join(given) or 'nothing'}")
