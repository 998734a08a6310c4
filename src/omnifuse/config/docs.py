"""Render the config reference (docs/config.md) from the pydantic schema: one source of truth."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from omnifuse.config.run import RunConfig
from omnifuse.config.tasks import BaseTaskConfig, task_config_types

HEADER = """# Config reference

Generated from the pydantic schema by `omnifuse config docs` — do not edit by hand
(`make docs` regenerates it; a test fails when it is stale).

A run config is a YAML file with the sections below. Unknown keys are errors. Any field can be
overridden on the command line with a dotted path, e.g. `model.fusion.type=hybrid`.
Union-typed sections choose their class with the `type` field.
"""


def render_config_docs() -> str:
    """Markdown tables for :class:`RunConfig` and every nested config class."""
    seen: list[type[BaseModel]] = []
    _collect(RunConfig, seen)
    parts = [HEADER]
    for model in seen:
        parts.append(_render_model(model))
    return "\n".join(parts)


def _collect(model: type[BaseModel], seen: list[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.append(model)
    for field in model.model_fields.values():
        for nested in _models_in(field.annotation):
            _collect(nested, seen)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if annotation is BaseTaskConfig:  # the open union of registered task configs
        return list(task_config_types().values())
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _type_name(annotation: Any) -> str:
    if annotation is BaseTaskConfig:
        return " \\| ".join(_type_name(c) for c in task_config_types().values())
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
        return "(section defaults)" if isinstance(value, BaseModel) else f"`{value!r}`"
    return f"`{field.default!r}`"


def _render_model(model: type[BaseModel]) -> str:
    doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    lines = [f"## {model.__name__}", "", doc, "", "| field | type | default | description |"]
    lines.append("|---|---|---|---|")
    for name, field in model.model_fields.items():
        desc = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {desc} |")
    return "\n".join(lines) + "\n"
