"""The training section of a run config: optimisation, multi-task, fine-tuning, hardware, faults.

Every field is documented in ``docs/training.md``; the engine lives in :mod:`omnifuse.training`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from omnifuse.config.base import MODALITIES, StrictModel


class ScheduleConfig(StrictModel):
    """Learning-rate schedule: linear warmup from 0, then constant, cosine or linear decay."""

    type: Literal["constant", "cosine", "linear"] = Field(
        default="cosine", description="Shape after warmup."
    )
    warmup_steps: int = Field(default=0, ge=0, description="Optimiser steps of linear warmup.")
    min_lr_ratio: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Final LR as a fraction of the peak LR."
    )


class CurriculumConfig(StrictModel):
    """Train only some tasks first: the first ``steps`` optimiser steps draw from ``tasks``
    alone (with the run's sampler and ratios restricted to them), then from every task."""

    steps: int = Field(gt=0, description="Optimiser steps that train only `tasks`.")
    tasks: list[str] = Field(min_length=1, description="The tasks those first steps train.")


class MultiTaskConfig(StrictModel):
    """How the tasks of a run share the steps and how their losses combine."""

    sampler: Literal["proportional", "temperature", "round_robin", "uniform"] = Field(
        default="proportional",
        description="Which task(s) a step trains: proportional to dataset size, p ∝ n^(1/T), "
        "in turn, or uniformly. Deterministic for training.seed and resumable.",
    )
    temperature: float = Field(
        default=2.0, gt=0.0, description="T of the temperature sampler (1 = proportional)."
    )
    ratios: dict[str, float] = Field(
        default_factory=dict,
        description="Relative sampling rate per task name (unlisted tasks: 1), multiplying the "
        "sampler's probabilities: {asr: 3, topic: 0.5} draws asr 6x as often as topic. Spend "
        "steps on slow learners and save them on cheap, solved tasks. Not with round_robin.",
    )
    curriculum: CurriculumConfig | None = Field(
        default=None,
        description="{steps: N, tasks: [...]}: the first N steps train only these tasks (e.g. "
        "slow visual recognition before the towers are shared with every other task).",
    )
    tasks_per_step: int | Literal["all"] = Field(
        default=1,
        description="Tasks contributing to each step: 1 (sampled), k distinct sampled tasks, "
        "or 'all'. Gradient surgery needs more than one.",
    )
    weighting: Literal["fixed", "uncertainty"] = Field(
        default="fixed",
        description="fixed: sum of weight * loss; uncertainty: Kendall et al. 2018, a learned "
        "log-variance s per task, loss = sum exp(-s) * weight * L + s.",
    )
    gradient: Literal["none", "pcgrad"] = Field(
        default="none",
        description="pcgrad: project conflicting task gradients on shared parameters (Yu et al. "
        "2020); needs tasks_per_step > 1.",
    )

    @field_validator("ratios")
    @classmethod
    def _positive_ratios(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {name: r for name, r in value.items() if not r > 0}
        if bad:
            raise ValueError(f"ratios must be positive, got {bad}")
        return value

    @model_validator(mode="after")
    def _ratios_need_draws(self) -> MultiTaskConfig:
        if self.ratios and self.sampler == "round_robin":
            raise ValueError(
                "ratios need a sampler that draws tasks (proportional, temperature or uniform); "
                "round_robin visits every task in turn"
            )
        return self

    @field_validator("tasks_per_step")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"tasks_per_step={value} must be at least 1 or 'all'")
        return value

    @model_validator(mode="after")
    def _surgery_needs_tasks(self) -> MultiTaskConfig:
        if self.gradient == "pcgrad" and self.tasks_per_step == 1:
            raise ValueError(
                "gradient='pcgrad' needs several tasks in a step; set "
                "training.multitask.tasks_per_step=all (or an integer >= 2)"
            )
        return self


class CheckpointConfig(StrictModel):
    """Periodic checkpoints under ``<run dir>/checkpoints`` (``last.ckpt`` is always kept)."""

    every_n_steps: int | None = Field(
        default=None, gt=0, description="Steps between checkpoints; default: max_steps / 10."
    )
    keep: int | None = Field(
        default=None, gt=0, description="Periodic checkpoints kept (newest); null keeps all."
    )


class ParamGroupConfig(StrictModel):
    """Settings for the parameters under one name prefix (``encoders.image``, ``fusion``,
    ``heads.lm.projector``, ``tasks.itc``). Where several prefixes cover a parameter, the most
    specific one that sets a field wins, field by field."""

    prefix: str = Field(
        min_length=1, description="Parameter-name prefix (matches at a dot boundary)."
    )
    lr: float | None = Field(default=None, gt=0, description="Learning rate (default: inherited).")
    freeze: bool | None = Field(
        default=None,
        description="true: no training; false: exempt from a broader prefix's freeze (it does "
        "not unfreeze weights the model fixes itself: freeze_lm, LoRA base weights).",
    )
    weight_decay: float | None = Field(
        default=None, ge=0, description="AdamW weight decay (1-d parameters still get none)."
    )

    @model_validator(mode="after")
    def _sets_something(self) -> ParamGroupConfig:
        if self.lr is None and self.freeze is None and self.weight_decay is None:
            raise ValueError(f"prefix {self.prefix!r}: set lr, freeze or weight_decay")
        if self.freeze is True and (self.lr is not None or self.weight_decay is not None):
            raise ValueError(
                f"prefix {self.prefix!r}: freeze: true with lr/weight_decay (a frozen parameter "
                "has no optimiser settings); drop one"
            )
        return self


RULE_FIELDS = ("lr", "freeze", "weight_decay")
"""The fields of a :class:`ParamGroupConfig` that a more specific prefix overrides."""

IMPLICIT_RULES = ("training.head_lr", "training.head_lr_multiplier")
"""Shorthands whose prefixes (``heads``, ``tasks``) need not match: most runs have no task
parameters, and a head LR must not fail for that."""


class TrainingConfig(StrictModel):
    """Optimisation, multi-task, fine-tuning, distributed and fault-handling settings."""

    max_steps: int = Field(default=100, gt=0, description="Optimiser steps to train.")
    lr: float = Field(default=3e-4, gt=0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(
        default=0.01,
        ge=0,
        description="AdamW weight decay; biases, norms and other 1-d parameters get none.",
    )
    betas: tuple[float, float] = Field(default=(0.9, 0.999), description="AdamW betas.")
    seed: int = Field(default=0, description="Seeds weights, task sampling and dropout.")
    precision: Literal["32-true", "bf16-mixed"] = Field(
        default="32-true",
        description=(
            "32-true: fp32. bf16-mixed: bf16 autocast over fp32 weights and optimiser state "
            "(on a CPU with native bf16, AVX-512 BF16 or AMX, 1.6x the demo's fp32 fine-tuning "
            "rate). Evaluation and prediction run in fp32."
        ),
    )
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    grad_accumulation: int = Field(
        default=1, ge=1, description="Batches whose gradients are summed per optimiser step."
    )
    grad_clip: float | None = Field(
        default=1.0, gt=0, description="Clip the global gradient norm to this; null for none."
    )
    multitask: MultiTaskConfig = Field(default_factory=MultiTaskConfig)
    init_from: Path | None = Field(
        default=None,
        description="Run dir or model dir whose weights initialise the model (matched by name).",
    )
    param_groups: list[ParamGroupConfig] = Field(
        default_factory=list,
        description="Per-module LR, weight decay and freezing by name prefix, e.g. "
        "[{prefix: encoders.image, lr: 1.0e-5}, {prefix: fusion, freeze: true}].",
    )
    freeze: list[str] = Field(
        default_factory=list,
        description="Shorthand: each prefix is {prefix: P, freeze: true} in param_groups.",
    )
    unfreeze: list[str] = Field(
        default_factory=list,
        description="Shorthand: each prefix is {prefix: P, freeze: false} in param_groups.",
    )
    head_lr: float | None = Field(
        default=None,
        gt=0,
        description="Shorthand: LR of heads.* and tasks.* (param_groups entries for both).",
    )
    head_lr_multiplier: float = Field(
        default=1.0, gt=0, description="Head LR as a multiple of lr (when head_lr is unset)."
    )
    save_merged: bool = Field(
        default=True,
        description="With model.adapters: also write <run>/model-merged (adapters merged into "
        "the weights; loads without peft) and <run>/adapters (adapter tensors only).",
    )
    layer_decay: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Layer-wise LR decay: encoder layer i of L trains at lr * d^(L + 1 - i).",
    )
    modality_dropout: dict[str, float] = Field(
        default_factory=dict,
        description="Per modality, the chance a training sample loses it, e.g. {image: 0.3}; a "
        "sample always keeps at least one modality.",
    )
    gradient_checkpointing: bool = Field(
        default=False, description="Recompute activations in backward (less memory)."
    )
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    strategy: Literal["auto", "ddp", "fsdp", "deepspeed"] = Field(
        default="auto", description="fsdp and deepspeed need GPUs (see docs/training.md)."
    )
    devices: int | Literal["auto"] = Field(default="auto", description="Devices per node.")
    num_nodes: int = Field(default=1, ge=1)
    deterministic: bool = Field(
        default=False, description="torch deterministic algorithms (bitwise-repeatable runs)."
    )
    on_nan: Literal["stop", "skip"] = Field(
        default="stop",
        description="A non-finite loss or gradient: stop (naming step, task and last "
        "checkpoint) or skip that update and count it.",
    )
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    val_every_n_steps: int | None = Field(
        default=None, gt=0, description="Steps between validations; default: at the end only."
    )
    val_max_batches: int | None = Field(
        default=None, gt=0, description="Batches per validation loader; null for all."
    )
    log_every_n_steps: int = Field(default=10, gt=0)
    progress_bar: bool = Field(default=True, description="Rich progress bar on the terminal.")

    @field_validator("modality_dropout")
    @classmethod
    def _dropout_probabilities(cls, value: dict[str, float]) -> dict[str, float]:
        for modality, p in value.items():
            if modality not in MODALITIES:
                raise ValueError(
                    f"modality_dropout: {modality!r} is not a modality; valid choices: "
                    f"{', '.join(MODALITIES)}"
                )
            if not 0.0 <= p < 1.0:
                raise ValueError(f"modality_dropout.{modality}={p} must be in [0, 1)")
        return value

    @field_validator("devices")
    @classmethod
    def _devices_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"devices={value} must be at least 1 or 'auto'")
        return value

    @model_validator(mode="after")
    def _one_head_lr(self) -> TrainingConfig:
        if self.head_lr is not None and self.head_lr_multiplier != 1.0:
            raise ValueError(
                f"set head_lr ({self.head_lr}) or head_lr_multiplier "
                f"({self.head_lr_multiplier}), not both"
            )
        return self

    @model_validator(mode="after")
    def _each_field_once_per_prefix(self) -> TrainingConfig:
        problems = _rule_conflicts(self.rules())
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def rules(self) -> list[tuple[str, ParamGroupConfig]]:
        """Every per-prefix setting, with where it was configured (for error messages).

        The shorthands (``freeze``, ``unfreeze``, ``head_lr``, ``head_lr_multiplier``) become
        rules first, then ``param_groups``: one mechanism serves old and new configs.
        """
        rules = [("training.freeze", _rule(p, freeze=True)) for p in self.freeze]
        rules += [("training.unfreeze", _rule(p, freeze=False)) for p in self.unfreeze]
        head_lr = self.head_lr if self.head_lr is not None else self.lr * self.head_lr_multiplier
        if self.head_lr is not None or self.head_lr_multiplier != 1.0:
            key = "training.head_lr" if self.head_lr is not None else "training.head_lr_multiplier"
            rules += [(key, _rule(p, lr=head_lr)) for p in ("heads", "tasks")]
        rules += [
            (f"training.param_groups[{i}].prefix", g) for i, g in enumerate(self.param_groups)
        ]
        return rules

    def checkpoint_interval(self) -> int:
        """Steps between periodic checkpoints (explicit, or a tenth of the run)."""
        every = self.checkpoint.every_n_steps
        return every if every is not None else max(1, self.max_steps // 10)


def _rule(prefix: str, **settings: float | bool) -> ParamGroupConfig:
    return ParamGroupConfig.model_validate({"prefix": prefix, **settings})


def _rule_conflicts(rules: list[tuple[str, ParamGroupConfig]]) -> list[str]:
    """Two rules of one prefix setting the same field (which one should win is unclear)."""
    first: dict[tuple[str, str], str] = {}
    problems = []
    for where, rule in rules:
        prefix = rule.prefix.rstrip(".")
        for name in RULE_FIELDS:
            if getattr(rule, name) is None:
                continue
            earlier = first.setdefault((prefix, name), where)
            if earlier != where:
                problems.append(
                    f"{where} sets {name} of prefix {prefix!r} again (already set by {earlier}); "
                    "set it once"
                )
    return problems
