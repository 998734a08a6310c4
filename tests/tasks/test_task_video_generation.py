"""``video_tokenizer`` and ``video_generation`` tasks: contract, masks, config checks, and that
the caption steers what the trained prior generates."""

from __future__ import annotations

import pytest
import torch

from omnifuse.config.model import EncodersConfig, ModelConfig
from omnifuse.config.tasks import VideoGenerationTaskConfig, VideoTokenizerTaskConfig, task_problems
from omnifuse.heads.video_generator import VideoGenerator
from omnifuse.modalities.base import EncoderOutput
from omnifuse.models import MultimodalModel, Processors, build_model
from omnifuse.tasks import list_tasks
from omnifuse.tasks.video_generation import (
    VideoGenerationTask,
    VideoTokenizerTask,
    drop_condition,
    target_codes,
)
from omnifuse.types import IGNORE_INDEX, Batch
from video_helpers import (  # noqa: F401 - one_thread is an autouse fixture
    moving_square,
    one_thread,
    tiny_model_config,
)

CAPTIONS = ["the red square moves right", "the blue square moves left"]


def build() -> tuple[MultimodalModel, Processors]:
    return build_model(tiny_model_config())


def make_batch(processors: Processors, present: list[bool] | None = None) -> Batch:
    clips = [moving_square("red", 1, 1), moving_square("blue", -1, 10, background=180)]
    video = processors["video"](clips)
    if present is not None:
        video["present"] = torch.tensor(present)
    return Batch(
        inputs={"text": processors["text"](CAPTIONS), "video": video},
        targets={},
        ids=["a", "b"],
    )


def check_contract(out: dict[str, torch.Tensor], keys: set[str]) -> None:
    assert set(out) == keys
    assert out["loss"].ndim == 0 and out["loss"].requires_grad and torch.isfinite(out["loss"])
    for key, value in out.items():
        assert value.ndim == 0, key
        if key != "loss":
            assert not value.requires_grad, key


def generator(model: MultimodalModel) -> VideoGenerator:
    head = model.heads["generator"]
    assert isinstance(head, VideoGenerator)
    return head


def test_task_types_are_registered() -> None:
    assert {"video_tokenizer", "video_generation"} <= set(list_tasks())


def test_tokenizer_task_contract_and_codebook_update() -> None:
    model, processors = build()
    task = VideoTokenizerTask("tok", 1.0, ("video",), "generator", commitment=0.25)
    book = generator(model).tokenizer.quantizer.codebook.clone()
    out = task(model.train(), make_batch(processors))
    check_contract(out, {"loss", "reconstruction_loss", "commitment_loss", "psnr", "perplexity"})
    assert not torch.equal(generator(model).tokenizer.quantizer.codebook, book)
    assert 0.0 < float(out["psnr"]) < 60.0


def test_tokenizer_task_ignores_samples_without_video() -> None:
    model, processors = build()
    task = VideoTokenizerTask("tok", 1.0, ("video",), "generator", commitment=0.25)
    batch = make_batch(processors, present=[True, False])
    batch["inputs"]["video"]["pixel_values"][1] = 1e3  # garbage in the absent row
    out = task(model.train(), batch)
    assert float(out["reconstruction_loss"]) < 100.0  # the absent row is not scored


def test_generation_task_contract_and_targets() -> None:
    model, processors = build()
    task = VideoGenerationTask("gen", 1.0, ("text",), "generator", condition_dropout=0.1)
    out = task(model.train(), make_batch(processors))
    check_contract(out, {"loss", "accuracy", "perplexity"})
    batch = make_batch(processors, present=[True, False])
    targets = target_codes(generator(model).tokenizer, batch["inputs"]["video"])
    assert targets.shape == (2, 32)
    assert (targets[0] >= 0).all() and (targets[1] == IGNORE_INDEX).all()


def test_generation_task_needs_the_target_clips() -> None:
    model, processors = build()
    task = VideoGenerationTask("gen", 1.0, ("text",), "generator")
    batch = make_batch(processors)
    del batch["inputs"]["video"]
    with pytest.raises(ValueError, match=r"needs the target clips in batch\['inputs'\]\['video'\]"):
        task(model, batch)


def features_of(tokens: torch.Tensor) -> EncoderOutput:
    return EncoderOutput(tokens, torch.ones(tokens.shape[:2], dtype=torch.bool), tokens.mean(1))


def test_condition_dropout_masks_whole_samples() -> None:
    tokens = torch.randn(64, 3, 8)
    features = drop_condition(features_of(tokens), probability=0.5)
    dropped = ~features.mask.any(dim=1)
    assert 10 < int(dropped.sum()) < 54  # about half
    assert features.mask[~dropped].all()  # kept rows are untouched
    assert (features.pooled[dropped] == 0).all()
    assert drop_condition(features_of(tokens), 0.0).mask.all()


def test_caption_steers_the_generated_codes() -> None:
    torch.manual_seed(0)
    model, processors = build()
    batch = make_batch(processors)
    head = generator(model)
    head.tokenizer.train()
    video = batch["inputs"]["video"]
    head.tokenizer(video["pixel_values"], video["frame_mask"])  # seed the codebook from data
    targets = target_codes(head.tokenizer, video)
    assert not torch.equal(targets[0], targets[1])  # two clips, two code sequences
    task = VideoGenerationTask("gen", 1.0, ("text",), "generator", condition_dropout=0.0)
    model.train()
    params = [p for n, p in model.named_parameters() if "tokenizer" not in n]
    optimizer = torch.optim.Adam(params, lr=3e-3)
    first = float(task(model, batch)["loss"])
    for _ in range(120):
        loss = task(model, batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss) < first / 3
    model.eval()
    with torch.no_grad():
        greedy = model({"text": batch["inputs"]["text"]}).heads["generator"]
    assert torch.equal(greedy, targets)  # each caption gives its own clip's codes


def test_config_problems_name_the_fix() -> None:
    model = tiny_model_config()
    leak = VideoGenerationTaskConfig(head="generator", inputs=["text", "video"])
    assert any(
        "contains 'video', the clip to generate" in p for p in task_problems("g", leak, model)
    )
    assert task_problems("g", VideoGenerationTaskConfig(head="generator"), model) == []
    tok = VideoTokenizerTaskConfig(head="generator")
    assert tok.resolved_inputs(model) == ("video",) and task_problems("t", tok, model) == []
    no_video = ModelConfig.model_construct(
        encoders=EncodersConfig(text=model.encoders.text), heads=model.heads
    )
    assert any("configure model.encoders.video" in p for p in task_problems("t", tok, no_video))
    wrong = VideoTokenizerTaskConfig(head="missing")
    assert any("'missing' is not in model.heads" in p for p in task_problems("t", wrong, model))
