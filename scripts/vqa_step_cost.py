"""CPU-seconds per training step of the VQA study's objectives, measured interleaved in one process.

Usage: python scripts/vqa_step_cost.py DATA_DIR PRETRAIN_DIR [--rounds 6] [--steps 5]

Builds the VQA study model (``scripts/configs/vqa-study.yaml``) with a ``scene_grounding`` head on
the image tower and one on the fusion and an attention-pooled answer head, collates real batches
of 16 from ``DATA_DIR/train.jsonl`` (question + image; answer and scene targets), and times one
optimiser step (forward, backward, Adam) of each objective in turn, ``--steps`` steps per
objective per round, for ``--rounds`` rounds. CPU-seconds are this process's user + system time
(one torch thread), which other jobs' load does not inflate; the objectives alternate so a load
change hits all of them alike. Prints one JSON object: objective -> CPU-s per step (median over
rounds) and its ratio to the plain VQA step.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
from pathlib import Path

import torch

from omnifuse.config import load_config
from omnifuse.data.card import read_card
from omnifuse.data.collate import LoadedSample, collate_samples, target_fields
from omnifuse.models import build_model
from omnifuse.tasks import build_tasks
from omnifuse.types import Batch

CONFIG = Path(__file__).parent / "configs" / "vqa-study.yaml"
HEADS = [
    "model.heads.ground={type: token_classification, num_classes: 14}",
    "model.heads.ground_fused={type: token_classification, num_classes: 14, source: fused}",
    "model.heads.answer_attn={type: classification, num_classes: 25, hidden_dim: 256, "
    "pooling: attention}",
]
TASKS = [
    "tasks.ground={type: scene_grounding, head: ground}",
    "tasks.ground_fused={type: scene_grounding, head: ground_fused}",
    "tasks.vqa_attn={type: classification, head: answer_attn, target: answer, "
    "inputs: [image, text], data: {text_field: question}}",
]
OBJECTIVES = {
    "vqa": ("vqa",),
    "ground (image tower)": ("ground",),
    "ground (fused)": ("ground_fused",),
    "vqa + ground (image), one step": ("vqa", "ground"),
    "vqa (attention pooling)": ("vqa_attn",),
}


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def batches(data: Path, processors: dict[str, object], count: int, size: int) -> list[Batch]:
    """``count`` batches of ``size`` training rows: question text, image, answer and scene."""
    card = read_card(data / "card.yaml")
    fields = target_fields(card, ["answer", "scene", "question_type"])
    rows = [json.loads(line) for line in (data / "train.jsonl").open(encoding="utf-8")]
    out = []
    for start in range(0, count * size, size):
        samples = [
            LoadedSample(
                row["id"],
                {
                    "text": processors["text"].load(row["question"]),  # type: ignore[attr-defined]
                    "image": processors["image"].load(data / row["image"]),  # type: ignore[attr-defined]
                },
                {name: f.encode(row.get(name), row["id"]) for name, f in fields.items()},
            )
            for row in rows[start : start + size]
        ]
        used = {m: processors[m] for m in ("image", "text")}
        out.append(collate_samples(samples, used, fields))  # type: ignore[arg-type]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("pretrain", type=Path)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = args.pretrain / "model" / "text" / "tokenizer.json"
    run = load_config(
        str(CONFIG), [f"model.encoders.text.tokenizer.path={tokenizer}", *HEADS, *TASKS]
    )
    model, processors = build_model(run.model)
    tasks = build_tasks(run, model, processors)
    params = [*model.parameters(), *(p for t in tasks.values() for p in t.parameters())]
    optimizer = torch.optim.AdamW(params)
    data = batches(args.data, dict(processors), args.steps, 16)

    def step(names: tuple[str, ...], batch: Batch) -> None:
        with model.shared_encodings():
            loss = sum((tasks[n](model, batch)["loss"] for n in names), torch.zeros(()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def timed(names: tuple[str, ...]) -> float:
        start = cpu()
        for batch in data:
            step(names, batch)
        return (cpu() - start) / len(data)

    def run_all() -> dict[str, float]:
        return {name: timed(objective) for name, objective in OBJECTIVES.items()}

    model.train()
    run_all()  # warm-up: allocator, autograd graphs
    rounds = [run_all() for _ in range(args.rounds)]
    median = {k: statistics.median(r[k] for r in rounds) for k in OBJECTIVES}
    base = median["vqa"]
    result = {k: {"cpu_s": round(v, 4), "ratio": round(v / base, 2)} for k, v in median.items()}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
