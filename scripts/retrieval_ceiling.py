"""The image->text R@1 a perfect model could reach on a ShapesWorld pool.

Usage: python scripts/retrieval_ceiling.py data/shapesworld/val.jsonl [--candidates 500]

Reads the first ``--candidates`` rows (the pool ``omnifuse eval`` ranks among) and prints the
expected R@1 of an oracle that knows every scene and picks, at random, one of the captions in the
pool that fit it (:func:`omnifuse.datasets.language.retrieval_ceiling`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omnifuse.data import read_manifest
from omnifuse.datasets.language import retrieval_ceiling
from omnifuse.datasets.scenes import Scene, parse_scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="ShapesWorld manifest (JSONL)")
    parser.add_argument("--candidates", type=int, default=500, help="pool size")
    parser.add_argument("--draws", type=int, default=5000, help="captions drawn per scene")
    args = parser.parse_args()
    rows = [record.data for record in read_manifest(args.manifest)[: args.candidates]]
    scenes = [Scene(parse_scene(row["scene"])) for row in rows]
    ceiling = retrieval_ceiling(scenes, [row["text"] for row in rows], draws=args.draws)
    print(f"{len(rows)} candidates: oracle image->text R@1 = {ceiling:.4f}")


if __name__ == "__main__":
    main()
