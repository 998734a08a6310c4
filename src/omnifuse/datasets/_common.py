"""Shared machinery of the built-in generators: seeding, parallel map, manifests, cards, resources.

Every generator follows the same recipe: build one picklable task per sample, map a top-level
worker function over the tasks (in a pool of spawned processes), write one JSONL manifest per
split and a ``card.yaml``. Each sample draws its randomness from ``sample_rng(seed, index)``, so
the output does not depend on how the samples are spread over processes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import yaml

T = TypeVar("T")
R = TypeVar("R")

FieldType = Literal["text", "image", "audio", "video", "class", "string", "strings", "int", "float"]
Row = dict[str, Any]

DEFAULT_WORKERS = 2
SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


class MissingResourceError(RuntimeError):
    """A system file or program a generator needs is not installed."""


def sample_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """The random generator of one sample, independent of every other sample.

    Args:
        seed: Dataset seed (``>= 0``).
        index: Sample index.
        stream: Separates independent uses for the same sample (e.g. scene vs. video).
    """
    return np.random.default_rng([seed, stream, index])


def require_file(path: Path, package: str, dataset: str) -> Path:
    """Return ``path`` or raise a :class:`MissingResourceError` with the install command."""
    if not path.is_file():
        raise MissingResourceError(f"{dataset} needs {path}: run `sudo apt-get install {package}`")
    return path


def require_program(name: str, package: str, dataset: str) -> str:
    """Return the full path of program ``name`` or raise with the install command."""
    found = shutil.which(name)
    if found is None:
        raise MissingResourceError(
            f"{dataset} needs the `{name}` program on PATH: run `sudo apt-get install {package}`"
        )
    return found


def default_workers() -> int:
    """Two processes (the generators' target machine has 2 cores), fewer on a 1-core machine."""
    return max(1, min(DEFAULT_WORKERS, os.cpu_count() or 1))


@contextmanager
def _progress_bar(enabled: bool, label: str, total: int) -> Iterator[Callable[[], None]]:
    """Yield an ``advance()`` callback driving a rich progress bar (a no-op when disabled)."""
    if not enabled:
        yield lambda: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)


def parallel_map(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    *,
    workers: int,
    progress: bool,
    label: str,
) -> list[R]:
    """``[fn(t) for t in tasks]`` in order, over ``workers`` spawned processes.

    Spawned (not forked) workers: the caller may hold threads (torch, a progress bar), and a
    fork of a threaded process can deadlock. ``fn`` must be a module-level function.

    Args:
        fn: Picklable worker function.
        tasks: Picklable task descriptions.
        workers: Number of processes; ``<= 1`` runs in this process.
        progress: Show a rich progress bar.
        label: Progress bar title.

    Raises:
        RuntimeError: The worker processes could not start (typically: the calling script
            lacks an ``if __name__ == "__main__":`` guard, which spawned workers need).
    """
    results: list[R] = []
    with _progress_bar(progress, label, len(tasks)) as advance:
        if workers <= 1 or len(tasks) < 4 * workers:
            for task in tasks:
                results.append(fn(task))
                advance()
            return results
        chunksize = max(1, min(16, len(tasks) // (workers * 8)))
        context = multiprocessing.get_context("spawn")
        try:
            # An executor (unlike multiprocessing.Pool) fails fast when a worker dies at start-up
            # instead of respawning it forever.
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                for result in pool.map(fn, tasks, chunksize=chunksize):
                    results.append(result)
                    advance()
        except BrokenProcessPool as err:
            raise RuntimeError(
                f"{label}: worker processes died. If make() runs from a script, put the call under "
                "`if __name__ == '__main__':` (spawned workers re-import the script), or pass "
                "workers=1."
            ) from err
    return results


def split_sizes(total: int, fractions: Mapping[str, float] = SPLIT_FRACTIONS) -> dict[str, int]:
    """Integer split sizes summing to ``total``; every split gets at least one sample if it can.

    Example: ``split_sizes(10) == {"train": 8, "val": 1, "test": 1}``.
    """
    names = list(fractions)
    sizes = {name: int(total * fractions[name]) for name in names[1:]}
    if total >= len(names):
        sizes = {name: max(1, size) for name, size in sizes.items()}
    sizes = {names[0]: total - sum(sizes.values()), **sizes}
    return sizes


def contiguous_splits(total: int) -> list[str]:
    """Split name of each index when samples are i.i.d.: first 80 % train, then val, then test."""
    names: list[str] = []
    for name, size in split_sizes(total).items():
        names.extend([name] * size)
    return names


def field(type_: FieldType, description: str, classes: Sequence[str] | None = None) -> Row:
    """One entry of a card's ``fields`` section."""
    entry: Row = {"type": type_, "description": description}
    if classes is not None:
        entry["classes"] = list(classes)
    return entry


def write_manifests(out: Path, rows: Sequence[Row], splits: Sequence[str]) -> dict[str, Row]:
    """Write ``<split>.jsonl`` per split; return the card's ``splits`` (train, val, test first).

    Args:
        out: Dataset directory.
        rows: One JSON object per sample.
        splits: Split name of each row (same length as ``rows``).
    """
    by_split: dict[str, list[Row]] = {}
    for row, split in zip(rows, splits, strict=True):
        by_split.setdefault(split, []).append(row)
    card_splits: dict[str, Row] = {}
    order = list(SPLIT_FRACTIONS)
    for split in sorted(by_split, key=lambda s: (order.index(s) if s in order else len(order), s)):
        split_rows = by_split[split]
        manifest = f"{split}.jsonl"
        with (out / manifest).open("w", encoding="utf-8") as handle:
            for row in split_rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        card_splits[split] = {"manifest": manifest, "size": len(split_rows)}
    return card_splits


def write_card(out: Path, card: Mapping[str, Any]) -> Path:
    """Write ``card.yaml`` (keys in the given order) and return its path."""
    path = out / "card.yaml"
    text = yaml.safe_dump(dict(card), sort_keys=False, allow_unicode=True, width=100)
    path.write_text(text, encoding="utf-8")
    return path


def generator_entry(name: str, seed: int, version: str, **extra: Any) -> Row:
    """The card's ``generator`` section: ``{name, seed, version}`` plus generator options."""
    return {"name": f"omnifuse.datasets.{name}", "seed": seed, "version": version, **extra}


def prepare_out(out: Path, subdirs: Sequence[str]) -> Path:
    """Create ``out`` and its media subfolders; return ``out`` as an absolute path."""
    out = Path(out).expanduser().resolve()
    for sub in subdirs:
        (out / sub).mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def check_options(dataset: str, options: Mapping[str, Any], valid: Sequence[str]) -> None:
    """Reject generator options the dataset does not know, naming the valid ones."""
    unknown = sorted(set(options) - set(valid))
    if unknown:
        choices = ", ".join(valid) if valid else "none"
        raise ValueError(f"unknown option(s) {unknown} for dataset {dataset!r}; valid: {choices}")
