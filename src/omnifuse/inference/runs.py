"""Run directories: where the model and config are, which task serves a request, class names.

A *run directory* (``omnifuse train``) holds ``config.yaml`` (the resolved run config),
``run.json``, ``checkpoints/``, metrics and ``model/`` (an ``omnifuse.save`` directory). A
*model directory* holds ``config.yaml`` + ``model.safetensors``. Both can be served.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omnifuse.config.data import DataConfig
from omnifuse.config.loader import ConfigError, read_yaml, validate_config
from omnifuse.config.model import ModelConfig
from omnifuse.config.run import RunConfig
from omnifuse.config.tasks import task_problems, task_type
from omnifuse.data.card import CardError, read_card
from omnifuse.data.datamodule import resolve_card
from omnifuse.data.manifest import ManifestError
from omnifuse.data.sources import source_card
from omnifuse.errors import InferenceError
from omnifuse.tasks import task_class

MODEL_DIR = "model"
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class RunFiles:
    """Where a servable model lives.

    Attributes:
        root: the directory given (run or model directory).
        model_dir: the ``omnifuse.save`` directory.
        config_file: the run's ``config.yaml``; None for a bare model directory (its own
            config is used).
    """

    root: Path
    model_dir: Path
    config_file: Path | None

    @property
    def is_run(self) -> bool:
        return self.config_file is not None


def locate(path: str | Path) -> RunFiles:
    """Find the model (and run config) of a run directory or model directory.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        InferenceError: neither kind of directory, or a run that has not saved its model yet.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist; pass a run or model directory")
    if (root / WEIGHTS_FILE).is_file() and (root / CONFIG_FILE).is_file():
        return RunFiles(root, root, None)
    model_dir = root / MODEL_DIR
    if (model_dir / WEIGHTS_FILE).is_file():
        config = root / CONFIG_FILE
        return RunFiles(root, model_dir, config if config.is_file() else None)
    if (root / "run.json").is_file() or (root / "checkpoints").is_dir():
        raise InferenceError(
            f"{root} is a run directory without a saved model ({MODEL_DIR}/{WEIGHTS_FILE}); "
            "training has not finished: see its run.json, or resume it with `omnifuse train`"
        )
    raise InferenceError(
        f"{root} is neither a run directory (with {MODEL_DIR}/) nor a model directory (with "
        f"{CONFIG_FILE} and {WEIGHTS_FILE})"
    )


def run_config(files: RunFiles, saved: RunConfig, model: ModelConfig) -> RunConfig:
    """The run's ``config.yaml`` when there is one, else the config saved with the model.

    Args:
        files: where the run is.
        saved: the config stored in the model directory.
        model: the config of the model actually loaded; every task must fit it.

    Raises:
        ConfigError: an invalid ``config.yaml``, or tasks naming heads the model lacks.
    """
    if files.config_file is None:
        config = saved
    else:
        config = validate_config(read_yaml(files.config_file), source=str(files.config_file))
    problems = [p for n, t in config.tasks.items() for p in task_problems(n, t, model)]
    if problems:
        raise ConfigError(problems, source=str(files.config_file or files.model_dir))
    return config


def describe_tasks(config: RunConfig) -> str:
    """``"cls (classification), cap (captioning)"`` or a note that there are none."""
    if not config.tasks:
        return "none (the run config lists no tasks)"
    return ", ".join(f"{name} ({task_type(task)})" for name, task in config.tasks.items())


def check_task(config: RunConfig, name: str) -> Any:
    """The config of task ``name``.

    Raises:
        InferenceError: an unknown task (the message lists the run's tasks).
    """
    if name not in config.tasks:
        raise InferenceError(f"unknown task {name!r}; the run's tasks: {describe_tasks(config)}")
    return config.tasks[name]


def find_task(
    config: RunConfig,
    name: str | None,
    verb: str | None,
    purpose: str,
    fits: Callable[[str], bool] = lambda name: True,
) -> str:
    """The task serving ``verb``: ``name`` if given (checked), else the only fitting one.

    Args:
        config: the run config.
        name: an explicit task name, or None to pick the only task that serves ``verb`` and
            ``fits``.
        verb: a request a task type declares in its ``serves`` (``"caption"`` ...); None
            accepts every task (``predict``).
        purpose: what the task is for, for messages (e.g. ``"caption"``).
        fits: extra condition on the task name (e.g. its inputs).

    Raises:
        InferenceError: unknown task, a task that cannot serve ``verb``, or zero/several
            candidates.
    """

    def serves(task: str) -> bool:
        kind = task_class(task_type(config.tasks[task]))
        return (verb is None or verb in kind.serves) and fits(task)

    if name is not None:
        check_task(config, name)
        if not serves(name):
            raise InferenceError(
                f"task {name!r} ({task_type(config.tasks[name])}) cannot {purpose}; "
                f"{_fitting(config, serves)}"
            )
        return name
    fitting = [n for n in config.tasks if serves(n)]
    if len(fitting) == 1:
        return fitting[0]
    if not fitting:
        raise InferenceError(
            f"no task of this run can {purpose}; the run's tasks: {describe_tasks(config)}"
        )
    raise InferenceError(
        f"several tasks can {purpose}: {', '.join(fitting)}; name one (task=... / --task)"
    )


def _fitting(config: RunConfig, serves: Callable[[str], bool]) -> str:
    names = [n for n in config.tasks if serves(n)]
    return f"tasks that can: {', '.join(names)}" if names else "no task of this run can"


def task_data(config: RunConfig, name: str) -> DataConfig:
    """The data config of task ``name``: its own ``data`` section or the run's."""
    own = getattr(config.tasks[name], "data", None)
    return own if isinstance(own, DataConfig) else config.data


def find_card_path(data: DataConfig) -> Path | None:
    """``data.card``, else the card next to the first existing train/val/test manifest."""
    if data.card is not None:
        return data.card if data.card.is_file() else None
    for path in (data.train, data.val, data.test):
        if path is not None and path.exists():
            card = source_card(path)
            if card is not None:
                return card
    return None


@dataclass(frozen=True)
class ClassNames:
    """Class names of a classifying task, or why they are unknown.

    Attributes:
        names: one name per class index; None when unavailable.
        reason: why ``names`` is None (empty when known).
    """

    names: tuple[str, ...] | None
    reason: str = ""


def task_classes(config: RunConfig, name: str, num_classes: int) -> ClassNames:
    """Class names of a ``classification`` (from its dataset card) or ``matching`` task.

    Args:
        config: the run config.
        name: the task.
        num_classes: the head's class count (a card listing another number is not used).
    """
    task = config.tasks[name]
    fixed = task_class(task_type(task)).fixed_classes
    if fixed is not None:
        return ClassNames(fixed)
    target = getattr(task, "target", "label")
    return card_classes(task_data(config, name), target, num_classes)


def card_classes(data: DataConfig, field: str, num_classes: int) -> ClassNames:
    """The classes the dataset card of ``data`` lists for ``field`` (if there are
    ``num_classes`` of them).

    Without a card file, the card is inferred from the manifests exactly as training inferred
    it (:func:`~omnifuse.data.datamodule.resolve_card`: sorted label values), so a run trained
    from plain JSONL reports its label names rather than indices.
    """
    card_path = find_card_path(data)
    where = str(card_path) if card_path is not None else "the card inferred from the manifests"
    try:
        card = read_card(card_path) if card_path is not None else resolve_card(data)
    except (CardError, ManifestError, FileNotFoundError, ValueError) as err:
        return ClassNames(None, f"no usable dataset card ({err}); set data.card")
    spec = card.fields.get(field)
    classes = None if spec is None else spec.classes
    if not classes:
        return ClassNames(None, f"{where} lists no classes for field {field!r}")
    if len(classes) != num_classes:
        return ClassNames(
            None,
            f"{where} lists {len(classes)} classes for {field!r} but the head has {num_classes}",
        )
    return ClassNames(tuple(classes))
