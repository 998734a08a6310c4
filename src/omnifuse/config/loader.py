"""Load YAML configs, apply dotted overrides, validate, and explain mistakes.

Every user mistake becomes a :class:`ConfigError` whose lines name the field path, the bad value
and the valid choices (or the closest valid key), e.g.::

    model.fusion.type: 'hybird' is not a valid choice; valid choices: 'concat', 'parallel', 'hybrid'
"""

from __future__ import annotations

import difflib
import reprlib
import types
import typing
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from omnifuse.config.run import RunConfig
from omnifuse.config.tasks import DEFAULT_TASK_TYPE, BaseTaskConfig, task_config_types


class ConfigError(ValueError):
    """A config that cannot be used; ``problems`` holds one human-readable line each."""

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        header = f"invalid config{f' {source}' if source else ''}:"
        super().__init__("\n".join([header, *(f"  - {p}" for p in self.problems)]))


def preset_dir() -> Path:
    """Directory of the presets shipped inside the package."""
    return Path(str(resources.files("omnifuse") / "presets"))


def list_presets() -> list[str]:
    """Names of the shipped presets (``presets/<name>.yaml``)."""
    return sorted(p.stem for p in preset_dir().glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A YAML path as given, or the path of the preset with that name."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise ConfigError([f"config file not found: {path}"])
        return path
    preset = preset_dir() / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    presets = list_presets()
    close = difflib.get_close_matches(str(name_or_path), presets, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        [
            f"{name_or_path!r} is neither a YAML file nor a preset{hint}; "
            f"presets: {', '.join(presets)}"
        ]
    )


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML mapping, turning syntax errors into :class:`ConfigError`."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError([f"YAML syntax error: {err}"], source=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"top level must be a mapping, got {type(data).__name__}"], str(path))
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError([f"override {item!r} must look like 'section.field=value'"])
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return data


def load_config(name_or_path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML file or preset, apply overrides, and validate it into a :class:`RunConfig`."""
    path = resolve_config_path(name_or_path)
    data = apply_overrides(read_yaml(path), overrides)
    return validate_config(data, source=str(path))


def validate_config(data: dict[str, Any], source: str | None = None) -> RunConfig:
    """Validate a raw mapping, raising :class:`ConfigError` with readable problems."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(explain(err, data, RunConfig), source) from None


def explain(err: ValidationError, data: Any, root: type[BaseModel]) -> list[str]:
    """One line per pydantic error: field path, bad value, valid choices."""
    return [_explain_one(e, data, root) for e in err.errors()]


def _explain_one(error: Any, data: Any, root: type[BaseModel]) -> str:
    loc, value = _clean_loc(error["loc"], data)
    path = ".".join(str(p) for p in loc) or "(top level)"
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "extra_forbidden":
        valid = _fields_at(root, loc[:-1], data)
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{path}: unknown key{hint}; valid keys: {', '.join(valid)}"
    if kind == "union_tag_invalid":
        return (
            f"{path}.{ctx['discriminator'].strip(chr(39))}: {ctx['tag']!r} is not a valid choice; "
            f"valid choices: {ctx['expected_tags']}"
        )
    if kind == "literal_error":
        valid = ctx["expected"]
        return f"{path}: {_short_repr(value)} is not a valid choice; valid choices: {valid}"
    if kind == "missing":
        return f"{path}: required field is missing"
    msg = str(error["msg"]).removeprefix("Value error, ")
    if kind == "value_error":
        return f"{path}: {msg}" if loc else msg
    return f"{path}: {msg} (got {_short_repr(value)})"


def _short_repr(value: Any) -> str:
    """A bounded repr: a YAML alias bomb expands to billions of items, a full repr never ends."""
    short = reprlib.Repr()  # keyword arguments need Python 3.12
    short.maxlevel, short.maxlist, short.maxdict, short.maxstring = 2, 4, 4, 60
    return short.repr(value)


def _clean_loc(loc: tuple[Any, ...], data: Any) -> tuple[list[Any], Any]:
    """Drop pydantic's union-tag segments from ``loc``; return it with the value found there."""
    clean: list[Any] = []
    node = data
    for part in loc:
        tag = node.get("type", _implied_type(clean)) if isinstance(node, dict) else None
        if isinstance(node, dict) and part not in node and tag == part:
            continue  # discriminated-union tag inserted by pydantic
        clean.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return clean, node


def _implied_type(path: list[Any]) -> str | None:
    """Tasks without ``type`` are classification tasks (see :mod:`omnifuse.config.tasks`)."""
    return DEFAULT_TASK_TYPE if len(path) == 2 and path[0] == "tasks" else None


def _fields_at(root: type[BaseModel], loc: Sequence[Any], data: Any) -> list[str]:
    """Field names of the model found at ``loc`` (following the data's ``type`` tags)."""
    model: Any = root
    node = data
    for part in loc:
        model = _field_model(model, str(part), node)
        node = node.get(part) if isinstance(node, dict) else None
        if model is None:
            return []
    picked = _pick_model(model, node)
    is_model = isinstance(picked, type) and issubclass(picked, BaseModel)
    return list(picked.model_fields) if is_model else []


def _field_model(model: Any, name: str, node: Any) -> Any:
    """The annotation of ``model.name``, unwrapped to a BaseModel (or union of them)."""
    if isinstance(model, dict):  # a dict[str, Model] field: every key maps to the value type
        return model["value"]
    model = _pick_model(model, node)
    is_model = isinstance(model, type) and issubclass(model, BaseModel)
    field = model.model_fields.get(name) if is_model else None
    if field is None:
        return None
    return _unwrap(field.annotation)


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is dict:
        return {"value": _unwrap(typing.get_args(annotation)[1])}
    if origin in (typing.Union, types.UnionType):
        members: list[Any] = []
        for arg in typing.get_args(annotation):
            unwrapped = _unwrap(arg) if arg is not type(None) else None
            members.extend(unwrapped if isinstance(unwrapped, list) else [unwrapped])
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        return models[0] if len(models) == 1 else (models or None)
    if annotation is BaseTaskConfig:  # an open union: every registered task config
        return list(task_config_types().values())
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def _pick_model(model: Any, node: Any) -> Any:
    """Choose the union member whose ``type`` literal matches the data's ``type`` tag."""
    if not isinstance(model, list):
        return model
    tag = node.get("type") if isinstance(node, dict) else None
    for member in model:
        field = member.model_fields.get("type") if issubclass(member, BaseModel) else None
        if field is not None and tag in typing.get_args(field.annotation):
            return member
    return model[0]


def dump_config(config: BaseModel) -> str:
    """The resolved config as YAML (what ``omnifuse config show`` prints)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
