"""Builds a tiny run directory without the training engine: config.yaml + model/ (omnifuse.save).

Shared by tests/inference and tests/evaluation. The model is the ``tiny`` preset without its video
encoder, with one head per task type; the data is a 24-sample ShapesWorld.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml

import omnifuse
from omnifuse.config import load_config
from omnifuse.datasets import make


@contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread: these models are tiny, and extra threads only contend for the CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


HEADS = {
    "shape": "{type: classification, num_classes: 6}",
    "image_embed": "{type: projection, dim: 16, source: image}",
    "text_embed": "{type: projection, dim: 16, source: text}",
    "itm": "{type: classification, num_classes: 2}",
    "mlm": "{type: mlm, source: text}",
    "recon": "{type: reconstruction, source: image}",
    "captioner": "{type: caption_decoder, dim: 32, num_layers: 1, num_heads: 2, max_length: 12}",
    "asr": "{type: caption_decoder, dim: 32, num_layers: 1, num_heads: 2, max_length: 12}",
    "vqa": "{type: classification, num_classes: 25}",
}


def task_overrides(data_dir: Path) -> list[str]:
    """One task per type; the VQA task reads the question as its text input."""
    vqa_data = (
        f"{{train: {data_dir}/train.jsonl, val: {data_dir}/val.jsonl, "
        f"test: {data_dir}/test.jsonl, text_field: question, batch_size: 4}}"
    )
    pair = "a: image, b: text, head_a: image_embed, head_b: text_embed"
    return [
        "tasks.shape={type: classification, head: shape, target: label, inputs: [image]}",
        f"tasks.itc={{type: contrastive, {pair}}}",
        f"tasks.itm={{type: matching, head: itm, {pair}}}",
        "tasks.mlm={type: mlm, head: mlm}",
        "tasks.mim={type: masked_modeling, modality: image, head: recon}",
        "tasks.caption={type: captioning, head: captioner, target: caption, inputs: [image]}",
        "tasks.asr={type: captioning, head: asr, target: transcript, inputs: [audio]}",
        "tasks.answer={type: classification, head: vqa, target: answer, inputs: [image, text], "
        f"data: {vqa_data}}}",
    ]


def build_tiny_run(root: Path) -> Path:
    """Write data under ``root/data`` and a run under ``root/run``; returns the run dir."""
    data_dir = root / "data"
    make("shapesworld", data_dir, size=24, seed=0, workers=1, progress=False)
    overrides = [
        "model.encoders.video=null",
        "model.heads={}",
        *(f"model.heads.{name}={spec}" for name, spec in HEADS.items()),
        *task_overrides(data_dir),
        f"data.train={data_dir}/train.jsonl",
        f"data.val={data_dir}/val.jsonl",
        f"data.test={data_dir}/test.jsonl",
        "data.batch_size=4",
    ]
    run = load_config("tiny", overrides)
    model, processors = omnifuse.create_model("tiny", overrides)
    run_dir = root / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump(run.model_dump(mode="json"), sort_keys=False)
    )
    omnifuse.save(run_dir / "model", model, processors, run)
    return run_dir
