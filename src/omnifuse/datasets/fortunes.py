"""Fortunes: real short texts of the BSD ``fortune`` program, labelled by category.

Eight clean categories of Debian's ``fortunes`` package (not ``fortunes-off``): computers,
science, food, sports, startrek, law, medicine, love. Texts keep their line breaks; terminal
overstrike sequences (``_\\bX`` underlining) are resolved to plain characters; exact duplicates
are kept once. Splits are stratified by category (80/10/10 per category, seeded).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omnifuse.datasets._common import (
    MissingResourceError,
    Row,
    check_options,
    field,
    generator_entry,
    prepare_out,
    sample_rng,
    split_sizes,
    write_card,
    write_manifests,
)

NAME = "fortunes"
VERSION = "1.0"
FORTUNE_DIR = Path("/usr/share/games/fortunes")
CATEGORIES = ("computers", "science", "food", "sports", "startrek", "law", "medicine", "love")
OPTIONS = ("categories",)
DESCRIPTION = (
    "Short real English texts (jokes, quotes, aphorisms) from the BSD fortune databases, "
    "labelled by category: text classification. Clean categories only; splits stratified by "
    "category (80/10/10)."
)


def resolve_overstrike(line: str) -> str:
    """Render backspace overstrikes like a terminal.

    Example: ``"_\\bI"`` -> ``"I"`` and ``"___\\b\\b\\bnot"`` -> ``"not"`` (underlining dropped).
    """
    cells: list[str] = []
    cursor = 0
    for char in line:
        if char == "\b":
            cursor = max(0, cursor - 1)
            continue
        if cursor < len(cells):
            cells[cursor] = char  # the later character wins (underscores are underlining)
        else:
            cells.append(char)
        cursor += 1
    return "".join(cells)


def clean(record: str) -> str:
    """Resolve overstrikes, strip trailing spaces and surrounding blank lines."""
    lines = [resolve_overstrike(line).rstrip() for line in record.split("\n")]
    return "\n".join(lines).strip("\n")


def read_category(category: str, directory: Path = FORTUNE_DIR) -> list[str]:
    """The cleaned, non-empty records of one fortune file (records end at a line ``%``)."""
    path = directory / category
    if not path.is_file():
        package = "fortunes-min" if category == "fortunes" else "fortunes"
        raise MissingResourceError(f"{NAME} needs {path}: run `sudo apt-get install {package}`")
    records: list[str] = []
    current: list[str] = []
    for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
        if line == "%":
            records.append(clean("\n".join(current)))
            current = []
        else:
            current.append(line)
    records.append(clean("\n".join(current)))
    return [record for record in records if record.strip()]


def collect(categories: Sequence[str]) -> list[Row]:
    """Rows ``{id, text, label}`` of every category, without exact duplicate texts."""
    rows: list[Row] = []
    seen: set[str] = set()
    for category in categories:
        for k, text in enumerate(read_category(category)):
            if text not in seen:
                seen.add(text)
                rows.append({"id": f"fortune-{category}-{k:04d}", "text": text, "label": category})
    return rows


def stratified_splits(labels: Sequence[str], seed: int) -> list[str]:
    """Split of each row: per label, a seeded shuffle cut 80/10/10."""
    splits = [""] * len(labels)
    for c, label in enumerate(sorted(set(labels))):
        members = [i for i, value in enumerate(labels) if value == label]
        order = sample_rng(seed, c, stream=1).permutation(len(members))
        names = [name for name, n in split_sizes(len(members)).items() for _ in range(n)]
        for position, name in zip(order, names, strict=True):
            splits[members[int(position)]] = name
    return splits


def _categories(options: dict[str, Any]) -> tuple[str, ...]:
    categories = tuple(options.get("categories", CATEGORIES))
    available = (
        sorted(p.name for p in FORTUNE_DIR.iterdir() if p.suffix == "" and p.is_file())
        if FORTUNE_DIR.is_dir()
        else []
    )
    bad = [c for c in categories if available and c not in available]
    if bad:
        raise ValueError(f"unknown fortune categories {bad}; available: {', '.join(available)}")
    return categories


def generate(
    out: Path, size: int | None = None, seed: int = 0, progress: bool = True, **options: Any
) -> Path:
    """Write the fortunes dataset under ``out``; return the card path.

    Args:
        out: Dataset directory.
        size: Number of texts (default: all, about 2,676); a smaller size takes a seeded subset.
        seed: Seeds the subset and the split.
        progress: Unused (reading the texts takes well under a second).
        **options: ``categories`` (default: the 8 clean ones; any file of the fortune dir).
    """
    del progress
    check_options(NAME, options, OPTIONS)
    categories = _categories(options)
    rows = collect(categories)
    if size is not None and size < len(rows):
        keep = sorted(
            int(i) for i in sample_rng(seed, 0, stream=2).choice(len(rows), size, replace=False)
        )
        rows = [rows[i] for i in keep]
    out = prepare_out(out, [])
    card = {
        "name": NAME,
        "description": DESCRIPTION,
        "license": "BSD (fortune-mod, Debian fortunes); quotations belong to their authors",
        "source": f"{FORTUNE_DIR}/{{{','.join(categories)}}} (Debian package fortunes)",
        "splits": write_manifests(out, rows, stratified_splits([r["label"] for r in rows], seed)),
        "fields": {
            "text": field("text", "The fortune (may span several lines; overstrikes resolved)."),
            "label": field("class", "Fortune category (file name).", list(categories)),
        },
        "generator": generator_entry(
            NAME, seed, VERSION, size=len(rows), categories=list(categories)
        ),
    }
    return write_card(out, card)
