"""``train(config, run_dir, resume)``: the one entry point behind ``omnifuse train``.

Builds the model (optionally initialised from another run), the tasks, one data stream per
dataset, the :class:`OmnifuseModule` and a Lightning ``Trainer``; fits; writes the final model to
``<run dir>/model``. Under DDP, Lightning re-runs the launching command once per extra rank;
those ranks find the run directory through the ``OMNIFUSE_RUN_DIR`` environment variable.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy, Strategy
from lightning.pytorch.utilities.exceptions import SIGTERMException

from omnifuse.config.loader import ConfigError
from omnifuse.config.run import RunConfig
from omnifuse.config.training import TrainingConfig
from omnifuse.data.card import CardError
from omnifuse.data.manifest import ManifestError
from omnifuse.models.adapter_io import save_adapter_variants
from omnifuse.models.builder import Processors, build_model
from omnifuse.models.multimodal import MultimodalModel
from omnifuse.models.persistence import save
from omnifuse.tasks.base import Task, build_tasks
from omnifuse.training.callbacks import (
    FaultPoints,
    ModalityDropout,
    StepMetrics,
    StepProgressBar,
)
from omnifuse.training.checkpoint import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    LAST,
    MODEL_DIR,
    RUN_DIR_ENV,
    AtomicCheckpointIO,
    StepCheckpoint,
    check_run_dir,
    default_run_dir,
    last_checkpoint,
    remove_partial_writes,
    run_dir_lock,
    update_run_json,
    write_run_files,
)
from omnifuse.training.data import build_streams, build_train_loader, val_loader
from omnifuse.training.finetune import InitReport, init_from
from omnifuse.training.loggers import ResumableCSVLogger
from omnifuse.training.module import NonFiniteLossError, OmnifuseModule, ValGroup
from omnifuse.training.optim import apply_freeze, report_parameters

log = logging.getLogger("omnifuse.training")


class TrainingPreempted(Exception):
    """The run got SIGTERM (a scheduler preempting it) and stopped after writing ``last.ckpt``.

    Attributes:
        step: The global step ``last.ckpt`` holds (``--resume`` continues from it).
        checkpoint: The checkpoint to resume from (None: SIGTERM came before the first one).
    """

    def __init__(self, run_dir: Path, step: int, checkpoint: Path | None) -> None:
        where = f"{checkpoint} (step {step})" if checkpoint is not None else "no checkpoint yet"
        super().__init__(
            f"SIGTERM: stopped at step {step}; checkpoint {where}; continue with "
            f"omnifuse train ... --run-dir {run_dir} --resume"
        )
        self.step, self.checkpoint = step, checkpoint


class DataLoaderWorkerDied(RuntimeError):
    """A data-loader worker process died (killed, out of memory); the checkpoints written before
    are kept and ``--resume`` continues from the last one.

    Attributes:
        checkpoint: The checkpoint to resume from (None: the worker died before the first one).
    """

    def __init__(self, run_dir: Path, reason: str, checkpoint: Path | None) -> None:
        first = reason.strip().splitlines()[0] if reason.strip() else "no reason given"
        where = (
            f"the last checkpoint {checkpoint} is intact; continue with omnifuse train ... "
            f"--run-dir {run_dir} --resume"
            if checkpoint is not None
            else "no checkpoint was written yet; start the run again"
        )
        super().__init__(f"a data-loader worker died ({first}); {where}")
        self.checkpoint = checkpoint


def _worker_death(err: RuntimeError) -> bool:
    """Whether ``err`` is torch's report of a dead DataLoader worker process."""
    return str(err).lstrip().startswith("DataLoader worker (pid")


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank; ``model_dir`` is set on rank 0 only).

    Attributes:
        run_dir: The run directory.
        model_dir: The saved final model (``omnifuse.load`` opens it).
        steps: Optimiser steps done (the global step).
        skipped: Batches dropped because of NaN/Inf losses (``on_nan=skip``).
        samples_per_s: Mean training throughput over all ranks.
        metrics: The last value of every logged metric.
        init_report: What ``training.init_from`` loaded (None without it).
    """

    run_dir: Path
    model_dir: Path | None
    steps: int
    skipped: int
    samples_per_s: float
    metrics: dict[str, float] = field(default_factory=dict)
    init_report: InitReport | None = None


# --- run directory and ranks ----------------------------------------------------------------


def _launched_by_parent() -> Path | None:
    """The run dir set by the process that started this one (a DDP rank), else None."""
    value = os.environ.get(RUN_DIR_ENV, "")
    pid, _, path = value.partition(":")
    return Path(path) if pid.isdigit() and int(pid) == os.getppid() and path else None


def _external_rank() -> int:
    """This process's global rank when an external launcher (torchrun, SLURM) set one."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


def resolve_run_dir(config: RunConfig, run_dir: Path | None) -> tuple[Path, bool]:
    """The run dir, and whether this process prepares it (writes config.yaml/run.json).

    Raises:
        ConfigError: an externally launched multi-process run without an explicit run dir.
    """
    inherited = _launched_by_parent()
    if inherited is not None:
        return inherited, False
    external = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if run_dir is None:
        if external:
            raise ConfigError(
                ["--run-dir is required when the ranks are started by an external launcher"]
            )
        run_dir = default_run_dir(config.name)
    return run_dir, _external_rank() == 0


def _warn_config_changes(run_dir: Path, config: RunConfig) -> None:
    """On resume, log which config values differ from the run's saved config.yaml."""
    saved_file = run_dir / CONFIG_FILE
    if not saved_file.is_file():
        return
    saved = _flatten(yaml.safe_load(saved_file.read_text()) or {})
    now = _flatten(config.model_dump(mode="json"))
    changed = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
    if changed:
        log.warning("resuming with a changed config: %s", ", ".join(changed))


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"a.b.c": value}``."""
    if not isinstance(data, dict) or not data:
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


# --- hardware -------------------------------------------------------------------------------


def _on_gpu(training: TrainingConfig) -> bool:
    return training.accelerator == "gpu" or (
        training.accelerator == "auto" and torch.cuda.is_available()
    )


def planned_world_size(training: TrainingConfig) -> int:
    """Processes the run will have: devices per node x nodes."""
    if isinstance(training.devices, int):
        devices = training.devices
    else:
        devices = torch.cuda.device_count() if _on_gpu(training) else 1
    return max(devices, 1) * training.num_nodes


def build_strategy(training: TrainingConfig) -> Strategy | str:
    """The Lightning strategy for ``training.strategy`` on this hardware.

    DDP is built with ``find_unused_parameters=True``: a step that trains one task leaves the
    other tasks' heads without gradients.

    Raises:
        ConfigError: accelerator gpu, fsdp or deepspeed without GPUs, deepspeed not installed,
            or PCGrad with a sharding strategy.
    """
    kind = training.strategy
    if training.accelerator == "gpu" and not torch.cuda.is_available():
        raise ConfigError(
            [
                "training.accelerator: 'gpu' but this machine's torch sees no CUDA device "
                f"(torch {torch.__version__}); use 'cpu' or 'auto'"
            ]
        )
    if kind in ("fsdp", "deepspeed"):
        _check_sharded(training)
        if kind == "fsdp":
            return "fsdp"
        return "deepspeed_stage_2"
    if kind == "ddp" or planned_world_size(training) > 1:
        return DDPStrategy(find_unused_parameters=True)
    return "auto"


def _check_sharded(training: TrainingConfig) -> None:
    kind = training.strategy
    if not _on_gpu(training):
        raise ConfigError(
            [
                f"training.strategy={kind!r} needs GPUs (Lightning refuses {kind} on CPU); use "
                "training.strategy=ddp for multi-process CPU training"
            ]
        )
    if training.multitask.gradient == "pcgrad":
        raise ConfigError(
            [
                "training.multitask.gradient='pcgrad' needs whole gradients on every rank; use "
                f"training.strategy=ddp, not {kind!r}"
            ]
        )
    if kind == "deepspeed":
        try:
            import deepspeed  # type: ignore[import-not-found]  # noqa: F401  (optional dependency)
        except ImportError:
            raise ConfigError(
                ["training.strategy='deepspeed' needs DeepSpeed: pip install deepspeed"]
            ) from None


# --- building ---------------------------------------------------------------------------------


def build_module(
    config: RunConfig,
    model: MultimodalModel,
    tasks: Mapping[str, Task],
    processors: Processors,
) -> OmnifuseModule:
    """The LightningModule with its multi-task training loader and validation loaders.

    Raises:
        ConfigError: no tasks, a task without training data, a bad freeze prefix, or a modality
            dropout for a modality the model has no encoder for.
    """
    if not tasks:
        raise ConfigError(["tasks: is empty; configure at least one task (see docs/tasks.md)"])
    training = config.training
    _check_dropout(training, model)
    world = planned_world_size(training)
    streams = build_streams(config, list(tasks), processors)
    for stream in streams:
        stream.module.world_size = world  # ranks resolve lazily; the split is known now
    try:
        loader = build_train_loader(
            config, streams, training.max_steps * training.grad_accumulation
        )
    except (CardError, ManifestError):
        raise  # problems in the data itself, not in the config
    except ValueError as err:
        raise ConfigError([str(err)]) from None
    groups = [
        ValGroup(tuple(s.tasks), val_loader(s, world)) for s in streams if s.data.val is not None
    ]
    module = OmnifuseModule(
        model,
        tasks,
        training,
        loader,
        groups,
        sharded=training.strategy in ("fsdp", "deepspeed"),
        processors=processors,
    )
    apply_freeze(module.named_training_parameters(), training)
    return module


def _check_dropout(training: TrainingConfig, model: MultimodalModel) -> None:
    unknown = [m for m in training.modality_dropout if m not in model.modalities]
    if unknown:
        raise ConfigError(
            [
                f"training.modality_dropout.{m}: the model has no {m} encoder; configured: "
                f"{', '.join(model.modalities)}"
                for m in unknown
            ]
        )


def build_trainer(
    training: TrainingConfig,
    run_dir: Path,
    has_val: bool,
    callbacks: Sequence[L.Callback] = (),
) -> L.Trainer:
    """A Trainer writing checkpoints, CSV and TensorBoard metrics under ``run_dir``."""
    checkpoint = StepCheckpoint(run_dir, training.checkpoint_interval(), training.checkpoint.keep)
    extra: list[L.Callback] = [checkpoint, StepMetrics(training.log_every_n_steps), FaultPoints()]
    if training.modality_dropout:
        extra.append(ModalityDropout(training.modality_dropout, training.seed))
    if training.progress_bar:
        extra.append(StepProgressBar())
    every = training.val_every_n_steps
    return L.Trainer(
        accelerator=training.accelerator,
        devices=training.devices,
        num_nodes=training.num_nodes,
        strategy=build_strategy(training),
        precision=training.precision,
        max_steps=training.max_steps,
        max_epochs=-1,
        deterministic=training.deterministic,
        logger=[
            ResumableCSVLogger(
                run_dir,
                name="",
                version="metrics",
                flush_logs_every_n_steps=training.log_every_n_steps,
            ),
            TensorBoardLogger(run_dir, name="", version="tensorboard", default_hp_metric=False),
        ],
        callbacks=[*extra, *callbacks],
        plugins=[AtomicCheckpointIO()],
        log_every_n_steps=training.log_every_n_steps,
        # Validation counts training batches across Lightning "epochs"; by default once, at the
        # final step, which a resumed run reaches exactly like an uninterrupted one.
        val_check_interval=(every or training.max_steps) * training.grad_accumulation,
        check_val_every_n_epoch=None,
        limit_val_batches=(training.val_max_batches or 1.0) if has_val else 0,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        enable_progress_bar=training.progress_bar,
        enable_model_summary=False,
        default_root_dir=run_dir,
    )


# --- the entry point --------------------------------------------------------------------------


def train(
    config: RunConfig,
    run_dir: Path | None = None,
    resume: bool = False,
    callbacks: Sequence[L.Callback] = (),
) -> TrainResult:
    """Train ``config``'s model on its tasks; write checkpoints, metrics and the final model.

    Args:
        config: The validated run config.
        run_dir: Where the run lives (default ``runs/<name>-<timestamp>``).
        resume: Continue from ``<run_dir>/checkpoints/last.ckpt`` (same data order, task draws
            and RNG streams as if the run had never stopped).
        callbacks: Extra Lightning callbacks.

    Raises:
        ConfigError: a config that cannot be trained (named field and fix).
        NonFiniteLossError: a NaN/Inf with ``training.on_nan=stop``.
        RunDirLocked: another live process is training in ``run_dir``.
        TrainingPreempted: SIGTERM; ``last.ckpt`` was written at the current step.
        CheckpointWriteError: a checkpoint write failed (disk full); the previous one is kept.
        DataLoaderWorkerDied: a data-loader worker process died; the checkpoints are kept.
    """
    run_dir, prepares = resolve_run_dir(config, run_dir)
    if not prepares:  # a DDP rank started by the launching process, which holds the lock
        return _train(config, run_dir, resume, callbacks, prepares)
    with run_dir_lock(run_dir):
        return _train(config, run_dir, resume, callbacks, prepares)


def _train(
    config: RunConfig,
    run_dir: Path,
    resume: bool,
    callbacks: Sequence[L.Callback],
    prepares: bool,
) -> TrainResult:
    if prepares:
        check_run_dir(run_dir, resume)
        remove_partial_writes(run_dir)  # a killed run's temp files; we hold the lock
        if resume:
            _warn_config_changes(run_dir, config)
        write_run_files(run_dir, config, resume, sys.argv)
    previous = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = f"{os.getpid()}:{run_dir}"
    try:
        return _fit(config, run_dir, resume, callbacks, prepares)
    except TrainingPreempted as err:
        if prepares:
            update_run_json(run_dir, status="preempted", steps=err.step)
        raise
    except NonFiniteLossError as err:
        if prepares:
            update_run_json(run_dir, status="stopped", error=str(err))
        raise
    except BaseException as err:
        if prepares:
            update_run_json(run_dir, status="failed", error=f"{type(err).__name__}: {err}")
        raise
    finally:
        _restore_env(previous)


def _restore_env(previous: str | None) -> None:
    if previous is None:
        os.environ.pop(RUN_DIR_ENV, None)
    else:
        os.environ[RUN_DIR_ENV] = previous


def _fit(
    config: RunConfig,
    run_dir: Path,
    resume: bool,
    callbacks: Sequence[L.Callback],
    prepares: bool,
) -> TrainResult:
    training = config.training
    build_strategy(training)  # configuration errors before anything is built
    L.seed_everything(training.seed, workers=True, verbose=False)
    model, processors = build_model(config.model)
    report = None
    if training.init_from is not None and not resume:
        report = init_from(model, training.init_from)
    if training.gradient_checkpointing:
        model.set_gradient_checkpointing(True)
    module = build_module(config, model, build_tasks(config, model, processors), processors)
    report_parameters(module.named_training_parameters(), run_dir if prepares else None)
    trainer = build_trainer(training, run_dir, bool(module.val_groups), callbacks)
    ckpt = last_checkpoint(run_dir) if resume else None
    with warnings.catch_warnings():
        # We checkpoint after the optimiser step on purpose (that is the state to resume from).
        warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
        warnings.filterwarnings("ignore", message="Checkpoint directory .* is not empty")
        # Our checkpoints hold tensors and plain values only: load them without pickle code.
        try:
            trainer.fit(module, ckpt_path=ckpt, weights_only=True)
        except SIGTERMException:
            found = getattr(trainer, "callbacks", [])
            checkpoint = next(c for c in found if isinstance(c, StepCheckpoint))
            saved = last_checkpoint(run_dir)
            step = checkpoint.preempted_at
            if step is None and saved is not None:  # SIGTERM mid-validation: the last periodic one
                step = int(torch.load(saved, weights_only=True, mmap=True)["global_step"])
            raise TrainingPreempted(run_dir, step or 0, saved) from None
        except pickle.UnpicklingError as err:  # weights_only refused a class or code object
            first = str(err).splitlines()[0]
            raise ConfigError([f"{ckpt}: refused to unpickle ({first})"]) from None
        except RuntimeError as err:  # torch: "DataLoader worker (pid N) is killed by signal"
            if not _worker_death(err):
                raise
            raise DataLoaderWorkerDied(run_dir, str(err), last_checkpoint(run_dir)) from None
    # "last" = the final step (full state, so that a longer max_steps can resume from it).
    trainer.save_checkpoint(run_dir / CHECKPOINT_DIR / LAST, weights_only=False)
    return _finish(trainer, module, processors, config, run_dir, report, prepares)


def _save_model(
    trainer: L.Trainer,
    module: OmnifuseModule,
    processors: Processors,
    config: RunConfig,
    run_dir: Path,
) -> Path | None:
    """Write ``<run_dir>/model`` on rank 0; None on the other ranks.

    Under a sharding strategy the parameters are gathered into a full state dict first (a
    collective: every rank calls it) and loaded into an unsharded copy of the model.
    """
    if not module.sharded:
        return (
            save(run_dir / MODEL_DIR, module.model, processors, config)
            if trainer.is_global_zero
            else None
        )
    state = trainer.strategy.lightning_module_state_dict()
    if not trainer.is_global_zero:
        return None
    full, _ = build_model(config.model, pretrained=False)
    prefix = "model."
    full.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    return save(run_dir / MODEL_DIR, full, processors, config)


def _finish(
    trainer: L.Trainer,
    module: OmnifuseModule,
    processors: Processors,
    config: RunConfig,
    run_dir: Path,
    report: InitReport | None,
    prepares: bool,
) -> TrainResult:
    """Save the final model (rank 0) and record the outcome in run.json."""
    model_dir = _save_model(trainer, module, processors, config, run_dir)
    if model_dir is not None and config.model.adapters and config.training.save_merged:
        save_adapter_variants(model_dir, run_dir)  # <run>/model-merged and <run>/adapters
    callbacks = getattr(trainer, "callbacks", [])
    throughput = next((c for c in callbacks if isinstance(c, StepMetrics)), None)
    metrics = dict(module.last_metrics)
    metrics.update(
        {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    )
    result = TrainResult(
        run_dir=run_dir,
        model_dir=model_dir,
        steps=trainer.global_step,
        skipped=module.counters.skipped,
        samples_per_s=throughput.mean_rate if throughput is not None else 0.0,
        metrics=metrics,
        init_report=report,
    )
    if prepares:
        status = "interrupted" if trainer.interrupted else "completed"
        extra = {} if report is None else {"init_from": asdict(report)}
        update_run_json(
            run_dir,
            status=status,
            steps=result.steps,
            skipped_nonfinite=result.skipped,
            samples_per_s=result.samples_per_s,
            model_dir=str(model_dir) if model_dir is not None else None,
            final_metrics=metrics,
            **extra,
        )
    return result
