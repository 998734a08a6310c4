"""Task configs: which objective trains which model heads on which inputs (``tasks:`` section).

A run trains one or more named tasks, e.g.::

    tasks:
      itc: {type: contrastive, a: image, b: text, head_a: image_embed, head_b: text_embed}
      cls: {type: classification, head: classify, target: label, weight: 0.5}

Tasks hold objective settings only; prediction modules are model heads (``model.heads``)
referenced by name. :func:`task_problems` checks a task against the model section; the run
config calls it, so every mistake is a config error naming the field and the valid choices.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PlainValidator, SerializeAsAny
from pydantic_core import PydanticCustomError

from omnifuse.config.base import FUSED, StrictModel
from omnifuse.config.data import DataConfig
from omnifuse.config.heads import TokenClassificationHeadConfig
from omnifuse.config.model import ModelConfig

DEFAULT_TASK_TYPE = "classification"
"""Task ``type`` assumed when a task omits it."""


class BaseTaskConfig(StrictModel):
    """Fields every task has: loss weight, input modalities and an optional data override."""

    head_types: ClassVar[dict[str, str]] = {}
    """Field holding a head name -> the head ``type`` that field must refer to (``"a|b"``:
    either)."""

    weight: float = Field(default=1.0, ge=0.0, description="Fixed weight of the task's loss.")
    inputs: list[str] | None = Field(
        default=None,
        description="Modalities fed to the model (others in the batch are dropped); "
        "default: per task type.",
    )
    data: DataConfig | None = Field(
        default=None,
        description="This task's overrides of the run's `data` section (unset fields come from "
        "it; a task with its own `train` gets none of the run's train/val/test/card).",
    )

    def default_inputs(self, model: ModelConfig) -> list[str]:
        """Inputs when ``inputs`` is not set: every configured modality."""
        return model.encoders.configured()

    def resolved_inputs(self, model: ModelConfig) -> tuple[str, ...]:
        """The input modalities, sorted (``inputs`` or the type's default)."""
        chosen = self.default_inputs(model) if self.inputs is None else self.inputs
        return tuple(sorted(set(chosen)))

    def loaded_modalities(self, model: ModelConfig) -> tuple[str, ...]:
        """Modalities the task's batches must hold: its inputs (plus any it reads as a target)."""
        return self.resolved_inputs(model)

    def head_names(self) -> dict[str, str]:
        """Field -> the head name it holds, for every head this task uses."""
        return {f: name for f in self.head_types if (name := getattr(self, f)) is not None}

    def extra_problems(self, name: str, model: ModelConfig) -> list[str]:
        """Type-specific checks against the model section (override)."""
        return []


def _source(model: ModelConfig, head: str) -> str:
    return model.heads[head].source


class ClassificationTaskConfig(BaseTaskConfig):
    """Cross-entropy of a classification head against a class target (``-100`` = no label)."""

    head_types: ClassVar[dict[str, str]] = {"head": "classification"}

    type: Literal["classification"] = "classification"
    head: str = Field(description="Name of a `classification` head in model.heads.")
    target: str = Field(default="label", description="Target field holding the class index.")
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)

    def default_inputs(self, model: ModelConfig) -> list[str]:
        """The head's modality, or every configured modality when it reads the fusion."""
        if self.head in model.heads and _source(model, self.head) != FUSED:
            return [_source(model, self.head)]
        return model.encoders.configured()

    def extra_problems(self, name: str, model: ModelConfig) -> list[str]:
        return _source_in_inputs(name, "head", self.head, self, model)


class ContrastiveTaskConfig(BaseTaskConfig):
    """CLIP-style InfoNCE between two modalities, each encoded on its own (no fusion)."""

    head_types: ClassVar[dict[str, str]] = {
        "head_a": "projection",
        "head_b": "projection",
        "rerank_head": "classification",
    }

    type: Literal["contrastive"] = "contrastive"
    a: str = Field(description="First modality (e.g. image).")
    b: str = Field(description="Second modality (e.g. text).")
    head_a: str = Field(description="`projection` head whose source is modality `a`.")
    head_b: str = Field(description="`projection` head whose source is modality `b`.")
    temperature: float = Field(default=0.07, gt=0.0, description="Initial temperature.")
    learnable_temperature: bool = True
    max_logit_scale: float | None = Field(
        default=100.0, gt=0.0, description="Cap on 1/temperature; null for none."
    )
    rerank_head: str | None = Field(
        default=None,
        description="Retrieval evaluation only: a 2-class `classification` head on 'fused' "
        "(the head of a `matching` task of the same pair) re-ranks each query's "
        "`rerank_top_k` most similar candidates by its matched-minus-unmatched logit "
        "(ALBEF/BLIP). Null: rank by embedding similarity alone.",
    )
    rerank_top_k: int = Field(
        default=16, ge=1, description="Candidates per query the `rerank_head` re-scores."
    )

    def default_inputs(self, model: ModelConfig) -> list[str]:
        return [self.a, self.b]

    def extra_problems(self, name: str, model: ModelConfig) -> list[str]:
        problems = _pair_problems(name, self, model)
        if self.rerank_head is not None:
            problems += _matching_head_problems(name, "rerank_head", self.rerank_head, model)
        return problems


class MatchingTaskConfig(BaseTaskConfig):
    """Matched/unmatched (ITM) over the fused pair, with negatives mined from contrastive scores."""

    head_types: ClassVar[dict[str, str]] = {
        "head": "classification",
        "head_a": "projection",
        "head_b": "projection",
    }

    type: Literal["matching"] = "matching"
    a: str = Field(description="First modality (e.g. image).")
    b: str = Field(description="Second modality (e.g. text).")
    head: str = Field(description="2-class `classification` head on 'fused' (class 1 = matched).")
    head_a: str = Field(description="`projection` head of modality `a`, to mine hard negatives.")
    head_b: str = Field(description="`projection` head of modality `b`, to mine hard negatives.")
    temperature: float = Field(
        default=0.07, gt=0.0, description="Sharpness of hard-negative sampling (softmax of sim/T)."
    )

    def default_inputs(self, model: ModelConfig) -> list[str]:
        return [self.a, self.b]

    def extra_problems(self, name: str, model: ModelConfig) -> list[str]:
        return _pair_problems(name, self, model) + _matching_head_problems(
            name, "head", self.head, model
        )


class MLMTaskConfig(BaseTaskConfig):
    """BERT masked language modelling on the text input."""

    head_types: ClassVar[dict[str, str]] = {"head": "mlm"}

    type: Literal["mlm"] = "mlm"
    head: str = Field(description="Name of an `mlm` head in model.heads.")
    probability: float = Field(
        default=0.15, gt=0.0, le=1.0, description="Share of real, non-special tokens selected."
    )

    def default_inputs(self, model: ModelConfig) -> list[str]:
        return ["text"]

    def extra_problems(self, name: str, model: ModelConfig) -> list[str]:
        if "text" not in self.resolved_inputs(model):
            return [f"tasks.{name}.inputs must include 'text' (the text that is masked)"]
        return _source_in_inputs(name, "head", self.head, self, model)


class MaskedModelingTaskConfig(BaseTaskConfig):
    """MAE/SimMIM-style reconstruction of masked image patches or audio frames."""

    head_types: ClassVar[dict[str, str]] = {"head": "reconstruction"}

    type: Literal["masked_modeling"] = "masked_modeling"
    modality: Literal["image", "audio"] = Field(description="Modality whose tokens are masked.")
    head: str = Field(description="`reconstruction` head whose source is `modality`.")
    mask_ratio: float = Field(default=0.6, ge=0.0, lt=1.0, description="Share of tokens masked.")
    norm_target: bool = Field(default=True, description="Normalise each target patch (MAE).")

    def default_inputs(self, model: ModelConfig) -> list[str]:
        return [self.modality]

    def extra_problems(self, name: str, model: ModelConfig) -> list[str]:
        problems = []
        if self.modality not in model.encoders.configured():
            problems.append(_not_configured(name, "modality", self.modality, model))
        elif self.modality not in self.resolved_inputs(model):
            problems.append(f"tasks.{name}.inputs must include modality={self.modality!r}")
        head = model.heads.get(self.head)
        if head is not None and head.source != self.modality:
            problems.append(
                f"tasks.{name}.head={self.head!r} reads {head.source!r}; set its source to "
                f"{self.modality!r} (the masked modality)"
            )
        return problems


GroundingAttribute = Literal["shape", "colour", "size"]
GROUNDING_ATTRIBUTES: dict[str, int] = {"shape": 6, "colour": 6, "size": 2}
"""``scene_grounding`` attribute -> its values (ShapesWorld's shapes, colours, sizes); a token
predicts one more class, "empty", per attribute. Kept equal to ``datasets.scenes`` by a test."""


class SceneGroundingTaskConfig(BaseTaskConfig):
    """Dense grounding: every image patch token predicts what lies under it (ShapesWorld)."""

    head_types: ClassVar[dict[str, str]] = {"head": "token_classification"}

    type: Literal["scene_grounding"] = "scene_grounding"
    head: str = Field(
        description="`token_classification` head reading 'image' (the image tower's patch "
        "tokens) or 'fused' (the image segment of the fused tokens); its num_classes must be "
        "the sum over `attributes` of (values + 1)."
    )
    target: str = Field(
        default="scene",
        description="String field holding the scene ('SIZE COLOUR SHAPE at X,Y rR; ...', "
        "64-px canvas).",
    )
    attributes: list[GroundingAttribute] = Field(
        default_factory=lambda: list[GroundingAttribute](["shape", "colour"]),
        min_length=1,
        description="What each patch predicts, each with an extra 'empty' class "
        "(shape: 6 + 1, colour: 6 + 1, size: 2 + 1).",
    )
    min_cover: float = Field(
        default=0.25,
        gt=0.0,
        le=1.0,
        description="Share of a patch an object's disc must cover to label the patch with it; "
        "patches touched less are not scored, untouched ones are 'empty'.",
    )

    def default_inputs(self, model: ModelConfig) -> list[str]:
        """The image alone, or every modality when the head reads the fusion."""
        if self.head in model.heads and _source(model, self.head) == FUSED:
            return model.encoders.configured()
        return ["image"]

    def num_classes(self) -> int:
        """Logits per token the head must produce."""
        return sum(GROUNDING_ATTRIBUTES[a] + 1 for a in self.attributes)

    def extra_problems(self, name: str, model: ModelConfig) -> list[str]:
        problems = []
        if model.encoders.image is None or model.encoders.image.type != "vit":
            problems.append(
                f"tasks.{name}: scene_grounding labels the patches of a ViT image encoder; "
                "configure model.encoders.image with type 'vit'"
            )
        elif "image" not in self.resolved_inputs(model):
            problems.append(f"tasks.{name}.inputs must include 'image'")
        head = model.heads.get(self.head)
        if isinstance(head, TokenClassificationHeadConfig):
            if head.source not in ("image", FUSED):
                problems.append(
                    f"tasks.{name}.head={self.head!r} reads {head.source!r}; valid choices: "
                    "'image', 'fused'"
                )
            wanted = self.num_classes()
            if head.num_classes != wanted:
                problems.append(
                    f"model.heads.{self.head}.num_classes={head.num_classes} but "
                    f"tasks.{name}.attributes={self.attributes} need {wanted}"
                )
        return problems


class CaptioningTaskConfig(BaseTaskConfig):
    """Teacher-forced text generation (captions, transcripts) from the fused inputs."""

    head_types: ClassVar[dict[str, str]] = {"head": "caption_decoder|whisper_decoder"}

    type: Literal["captioning"] = "captioning"
    head: str = Field(
        description="Name of a `caption_decoder` head (text encoder's tokenizer) or a "
        "`whisper_decoder` head (its own tokenizer) in model.heads."
    )
    target: str = Field(default="caption", description="Target field holding the text.")
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)

    def default_inputs(self, model: ModelConfig) -> list[str]:
        return ["image"]

    def extra_problems(self, name: str, model: ModelConfig) -> list[str]:
        problems = []
        own_tokenizer = (
            self.head in model.heads and model.heads[self.head].type == "whisper_decoder"
        )
        if not own_tokenizer and "text" not in model.encoders.configured():
            problems.append(
                f"tasks.{name}: captioning tokenises its target with the text encoder's "
                "tokenizer; configure model.encoders.text"
            )
        return problems + _source_in_inputs(name, "head", self.head, self, model)


def _video_problems(name: str, model: ModelConfig) -> list[str]:
    if model.encoders.video is None:
        return [
            f"tasks.{name}: target clips are processed by the video encoder's processor; "
            "configure model.encoders.video"
        ]
    return []


class VideoTokenizerTaskConfig(BaseTaskConfig):
    """Stage 1: train the head's VQ tokenizer to reconstruct the input clips."""

    head_types: ClassVar[dict[str, str]] = {"head": "video_generator"}

    type: Literal["video_tokenizer"] = "video_tokenizer"
    head: str = Field(description="Name of a `video_generator` head in model.heads.")
    commitment: float = Field(
        default=0.25, ge=0.0, description="Weight of the commitment loss (VQ-VAE's beta)."
    )

    def default_inputs(self, model: ModelConfig) -> list[str]:
        return ["video"]

    def extra_problems(self, name: str, model: ModelConfig) -> list[str]:
        problems = _video_problems(name, model)
        if not problems and "video" not in self.resolved_inputs(model):
            problems.append(f"tasks.{name}.inputs must include 'video' (the clips to tokenize)")
        return problems


class VideoGenerationTaskConfig(BaseTaskConfig):
    """Stage 2: teacher-forced cross-entropy of the prior over the frozen tokenizer's codes.

    The target clip comes from ``batch["inputs"]["video"]`` but is never fed to the model: the
    prior reads only the text features (``inputs``, default ``[text]``).
    """

    head_types: ClassVar[dict[str, str]] = {"head": "video_generator"}

    type: Literal["video_generation"] = "video_generation"
    head: str = Field(description="Name of a `video_generator` head in model.heads.")
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    condition_dropout: float = Field(
        default=0.1,
        ge=0.0,
        lt=1.0,
        description="Share of samples trained without their text, for classifier-free guidance.",
    )

    def default_inputs(self, model: ModelConfig) -> list[str]:
        return ["text"]

    def loaded_modalities(self, model: ModelConfig) -> tuple[str, ...]:
        """The text inputs plus ``video``: the clips are the targets."""
        return tuple(sorted({*self.resolved_inputs(model), "video"}))

    def extra_problems(self, name: str, model: ModelConfig) -> list[str]:
        problems = _video_problems(name, model)
        if "video" in self.resolved_inputs(model):
            problems.append(
                f"tasks.{name}.inputs contains 'video', the clip to generate; condition on text "
                "only (e.g. inputs: [text])"
            )
        if "text" not in model.encoders.configured():
            problems.append(_not_configured(name, "inputs", "text", model))
        return problems + _source_in_inputs(name, "head", self.head, self, model)


class InstructionTaskConfig(BaseTaskConfig):
    """Conversations through a `causal_lm` head: only assistant answer tokens are scored.

    The target is a `messages` field (``[{role, content}]``) or a text field (``caption``,
    ``answer``, ``transcript``), which becomes ``[user: prompt, assistant: text]``.
    """

    head_types: ClassVar[dict[str, str]] = {"head": "causal_lm"}

    type: Literal["instruction"] = "instruction"
    head: str = Field(description="Name of a `causal_lm` head in model.heads.")
    target: str = Field(
        default="messages", description="A `messages` field, or a text field to answer with."
    )
    kind: Literal["chat", "caption", "vqa", "speech"] = Field(
        default="chat",
        description="How answers are scored: chat (exact match, BLEU-4, ROUGE-L), caption "
        "(BLEU-4/CIDEr/ROUGE-L), vqa (VQA accuracy), speech (WER/CER).",
    )
    prompt: str = Field(
        default="Describe the input.",
        description="User turn of a text target, and of a request that gives no text.",
    )
    question_field: str | None = Field(
        default=None, description="Text field used as the user turn of a text target (VQA)."
    )
    system: str | None = Field(
        default=None, description="System turn added to conversations that have none."
    )

    def default_inputs(self, model: ModelConfig) -> list[str]:
        """The media modalities (the text is the LM's own prompt, not an encoder input)."""
        return [m for m in model.encoders.configured() if m != "text"]

    def extra_problems(self, name: str, model: ModelConfig) -> list[str]:
        problems = []
        if "text" in self.resolved_inputs(model):
            problems.append(
                f"tasks.{name}.inputs contains 'text'; an instruction task reads its text as "
                "the LM's prompt, so list media modalities only"
            )
        return problems + _source_in_inputs(name, "head", self.head, self, model)


_TASK_CONFIGS: dict[str, type[BaseTaskConfig]] = {}


def register_task_config(config: type[BaseTaskConfig]) -> type[BaseTaskConfig]:
    """Make ``config`` the schema of the task ``type`` its ``type`` field defaults to.

    Task types register their config with their :class:`~omnifuse.tasks.Task` (``register_task``
    does it); the built-in configs below are registered here so config files validate before any
    task module is imported.

    Raises:
        ValueError: ``config`` has no ``type`` field with a default.
    """
    field = config.model_fields.get("type")
    if field is None or not isinstance(field.default, str):
        raise ValueError(f"{config.__name__} needs a `type: Literal[...] = '<name>'` field")
    _TASK_CONFIGS[field.default] = config
    return config


def task_config_types() -> dict[str, type[BaseTaskConfig]]:
    """Task type -> its config class, in registration order (the default type first)."""
    return dict(_TASK_CONFIGS)


def parse_task_config(value: Any) -> BaseTaskConfig:
    """One raw entry of ``tasks:`` -> the config of its ``type`` (default ``classification``).

    Raises:
        PydanticCustomError: an unknown ``type`` (the message lists the valid choices).
    """
    if isinstance(value, BaseTaskConfig):
        return value
    if not isinstance(value, dict):
        raise PydanticCustomError("task_config", "a task is a mapping with a `type` field")
    kind = value.get("type", DEFAULT_TASK_TYPE)
    if kind not in _TASK_CONFIGS:
        choices = ", ".join(repr(t) for t in _TASK_CONFIGS)
        # Shaped like pydantic's own discriminated-union error, which the loader explains.
        raise PydanticCustomError(
            "union_tag_invalid",
            "task type {tag} is not registered; valid choices: {expected_tags}",
            {"discriminator": "'type'", "tag": kind, "expected_tags": choices},
        )
    return _TASK_CONFIGS[kind].model_validate({"type": kind, **value})


for _config in (
    ClassificationTaskConfig,
    ContrastiveTaskConfig,
    MatchingTaskConfig,
    MLMTaskConfig,
    MaskedModelingTaskConfig,
    SceneGroundingTaskConfig,
    CaptioningTaskConfig,
    VideoTokenizerTaskConfig,
    VideoGenerationTaskConfig,
    InstructionTaskConfig,
):
    register_task_config(_config)

TaskConfig = Annotated[SerializeAsAny[BaseTaskConfig], PlainValidator(parse_task_config)]
"""One entry of ``tasks:``; its ``type`` picks the registered config class (default
``classification``)."""


def _has_type(model: ModelConfig, head: str, wanted: str) -> bool:
    return head in model.heads and model.heads[head].type == wanted


def _not_configured(name: str, field: str, value: str, model: ModelConfig) -> str:
    valid = ", ".join(repr(m) for m in model.encoders.configured())
    return f"tasks.{name}.{field}={value!r} is not a configured encoder; valid choices: {valid}"


def _source_in_inputs(
    name: str, field: str, head: str, task: BaseTaskConfig, model: ModelConfig
) -> list[str]:
    """A head reading a modality needs that modality among the task's inputs."""
    if head not in model.heads:
        return []
    source, inputs = _source(model, head), task.resolved_inputs(model)
    if source != FUSED and source not in inputs:
        return [
            f"tasks.{name}.{field}={head!r} reads {source!r}, which is not among the task's "
            f"inputs {list(inputs)}; add it to tasks.{name}.inputs"
        ]
    return []


def _pair_problems(
    name: str, task: ContrastiveTaskConfig | MatchingTaskConfig, model: ModelConfig
) -> list[str]:
    """Both modalities configured and distinct; ``head_a``/``head_b`` read ``a``/``b``."""
    configured = model.encoders.configured()
    problems = [
        _not_configured(name, f, getattr(task, f), model)
        for f in ("a", "b")
        if getattr(task, f) not in configured
    ]
    if task.a == task.b:
        problems.append(f"tasks.{name}: a and b are both {task.a!r}; choose two modalities")
    for field, modality in (("head_a", task.a), ("head_b", task.b)):
        head = getattr(task, field)
        if modality not in configured or not _has_type(model, head, "projection"):
            continue  # already reported
        if _source(model, head) != modality:
            problems.append(
                f"tasks.{name}.{field}={head!r} reads {_source(model, head)!r}; it must read "
                f"{modality!r} (set model.heads.{head}.source={modality})"
            )
    return problems


def _matching_head_problems(name: str, field: str, head: str, model: ModelConfig) -> list[str]:
    """A matching head (``tasks.<name>.<field>``) reads the fusion and has two classes."""
    config = model.heads.get(head)
    problems = []
    if config is not None and config.source != FUSED:
        problems.append(
            f"tasks.{name}.{field}={head!r} reads {config.source!r}; a matching head must "
            "have source 'fused'"
        )
    classes = getattr(config, "num_classes", 2)
    if classes != 2:
        problems.append(
            f"tasks.{name}.{field}={head!r} has num_classes={classes}; a matching head "
            "needs num_classes=2 (unmatched, matched)"
        )
    return problems


def task_problems(name: str, task: BaseTaskConfig, model: ModelConfig) -> list[str]:
    """Everything wrong with task ``name`` given the model section (empty when it is usable)."""
    problems = []
    heads = sorted(model.heads)
    for field, head in task.head_names().items():
        if head not in model.heads:
            choices = ", ".join(repr(h) for h in heads) or "(no heads configured)"
            problems.append(
                f"tasks.{name}.{field}={head!r} is not in model.heads; valid choices: {choices}"
            )
            continue
        # "a|b": a head of either type.
        wanted, actual = task.head_types[field].split("|"), model.heads[head].type
        if actual not in wanted:
            fitting = ", ".join(repr(h) for h in heads if model.heads[h].type in wanted)
            problems.append(
                f"tasks.{name}.{field}={head!r} has type {actual!r}; task type "
                f"{task_type(task)!r} needs a head of type {' or '.join(map(repr, wanted))} "
                f"(configured: {fitting or 'none'})"
            )
    configured = model.encoders.configured()
    for modality in task.inputs or []:
        if modality not in configured:
            problems.append(_not_configured(name, "inputs", modality, model))
    return problems + task.extra_problems(name, model)


def task_type(task: BaseTaskConfig) -> str:
    """The ``type`` tag of a task config."""
    return str(getattr(task, "type", DEFAULT_TASK_TYPE))
