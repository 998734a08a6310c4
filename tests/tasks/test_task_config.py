"""Task config validation: errors name the field, the bad value and the valid choices."""

from __future__ import annotations

import pytest
from task_helpers import tiny_run

from omnifuse.config import ConfigError, load_config
from omnifuse.config.tasks import ClassificationTaskConfig, MaskedModelingTaskConfig


def test_type_defaults_to_classification() -> None:
    run = load_config("tiny", ["tasks.t.head=classify"])
    task = run.tasks["t"]
    assert isinstance(task, ClassificationTaskConfig)
    assert task.target == "label" and task.weight == 1.0 and task.data is None


def test_unknown_task_type_lists_choices() -> None:
    with pytest.raises(ConfigError, match=r"tasks\.t\.type: 'clip' is not a valid choice.*"):
        load_config("tiny", ["tasks.t.type=clip"])


def test_unknown_head_lists_heads() -> None:
    with pytest.raises(ConfigError, match=r"tasks\.t\.head='nope' is not in model\.heads; valid"):
        load_config("tiny", ["tasks.t={type: mlm, head: nope}"])


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (
            "{type: mlm, head: classify}",
            r"tasks\.t\.head='classify' has type 'classification'; task type 'mlm' needs a "
            r"head of type 'mlm' \(configured: 'mlm', 'mlm_fused'\)",
        ),
        (
            "{type: contrastive, a: image, b: text, head_a: image_rec, head_b: text_embed}",
            r"head_a='image_rec' has type 'reconstruction'.*of type 'projection' "
            r"\(configured: 'audio_embed', 'embed', 'image_embed', 'text_embed'\)",
        ),
        ("{type: captioning, head: mlm}", r"needs a head of type 'caption_decoder'"),
    ],
)
def test_head_of_wrong_type(task: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tiny_run([], [f"tasks.t={task}"])


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (
            "{head: classify, inputs: [image, smell]}",
            r"tasks\.t\.inputs='smell' is not a configured encoder; valid choices: 'audio', "
            r"'image', 'text', 'video'",
        ),
        (
            "{type: contrastive, a: image, b: smell, head_a: image_embed, head_b: text_embed}",
            r"tasks\.t\.b='smell' is not a configured encoder",
        ),
        (
            "{type: contrastive, a: image, b: text, head_a: text_embed, head_b: text_embed}",
            r"head_a='text_embed' reads 'text'; it must read 'image'",
        ),
        (
            "{type: matching, a: image, b: text, head: classify, head_a: image_embed, "
            "head_b: text_embed}",
            r"head='classify' has num_classes=4; a matching head needs num_classes=2",
        ),
        (
            "{type: contrastive, a: image, b: text, head_a: image_embed, head_b: text_embed, "
            "rerank_head: nope}",
            r"tasks\.t\.rerank_head='nope' is not in model\.heads; valid choices: ",
        ),
        (
            "{type: contrastive, a: image, b: text, head_a: image_embed, head_b: text_embed, "
            "rerank_head: text_cls}",
            r"(?s)rerank_head='text_cls' reads 'text'; a matching head must have source 'fused'.*"
            r"rerank_head='text_cls' has num_classes=3; a matching head needs num_classes=2",
        ),
        (
            "{type: masked_modeling, modality: audio, head: image_rec}",
            r"head='image_rec' reads 'image'; set its source to 'audio'",
        ),
        ("{type: mlm, head: mlm, inputs: [image]}", r"tasks\.t\.inputs must include 'text'"),
        (
            "{head: text_cls, inputs: [image]}",
            r"head='text_cls' reads 'text', which is not among the task's inputs \['image'\]",
        ),
    ],
)
def test_modality_problems(task: str, message: str) -> None:
    extra = ["model.heads.text_cls={type: classification, num_classes: 3, source: text}"]
    with pytest.raises(ConfigError, match=message):
        tiny_run([], [*extra, f"tasks.t={task}"])


def test_masked_modeling_rejects_unknown_modality() -> None:
    with pytest.raises(ConfigError, match=r"modality: 'video' is not a valid choice"):
        tiny_run([], ["tasks.t={type: masked_modeling, modality: video, head: image_rec}"])
    assert MaskedModelingTaskConfig(modality="image", head="r").mask_ratio == 0.6


def test_captioning_needs_a_text_tokenizer() -> None:
    with pytest.raises(ConfigError, match=r"configure model\.encoders\.text"):
        load_config(
            "tiny",
            [
                "model.encoders.text=null",
                "model.heads.cap={type: caption_decoder, dim: 32, num_heads: 2}",
                "tasks.t={type: captioning, head: cap}",
            ],
        )


def test_task_data_override_is_a_data_config() -> None:
    run = load_config("tiny", ["tasks.t={head: classify, data: {batch_size: 3}}"])
    assert run.tasks["t"].data is not None and run.tasks["t"].data.batch_size == 3
