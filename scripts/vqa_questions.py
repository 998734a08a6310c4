"""Add extra VQA questions to an existing ShapesWorld manifest, without regenerating media.

Usage: python scripts/vqa_questions.py data/shapesworld/train.jsonl --count 8 [--out PATH]

Writes one row per question (the row's own first, then ``--count`` extra distinct ones) to
``--out`` (default ``<split>_vqa.jsonl`` beside the manifest). The rows are exactly those the
generator writes with ``questions=COUNT`` (:func:`omnifuse.datasets.shapesworld.vqa_rows`): the
extra questions depend only on the dataset seed (read from ``card.yaml`` beside the manifest,
or ``--seed``), the sample index and its ``scene``. Image paths stay relative to the manifest's
directory, so ``--out`` must be in that directory or beside the same ``images/``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from omnifuse.data import read_manifest
from omnifuse.datasets.shapesworld import row_index, vqa_rows


def _seed(manifest: Path, seed: int | None) -> int:
    """``--seed``, else the ``generator.seed`` of the dataset's card."""
    if seed is not None:
        return seed
    card = manifest.parent / "card.yaml"
    if not card.is_file():
        raise SystemExit(f"{card} not found: pass --seed (the dataset's generator seed)")
    return int(yaml.safe_load(card.read_text(encoding="utf-8"))["generator"]["seed"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="ShapesWorld manifest (JSONL)")
    parser.add_argument("--count", type=int, default=8, help="extra questions per scene")
    parser.add_argument("--seed", type=int, default=None, help="dataset seed (default: card)")
    parser.add_argument("--out", type=Path, default=None, help="output manifest")
    args = parser.parse_args()
    seed = _seed(args.manifest, args.seed)
    out = args.out or args.manifest.with_name(f"{args.manifest.stem}_vqa.jsonl")
    written = 0
    with out.open("w", encoding="utf-8") as handle:
        for record in read_manifest(args.manifest):
            row = record.data
            for vqa in vqa_rows(row, seed, row_index(row["id"]), args.count):
                handle.write(json.dumps(vqa, ensure_ascii=False) + "\n")
                written += 1
    print(f"{out}: {written} questions")


if __name__ == "__main__":
    main()
