"""Emoji: real image-text pairs, the fully-qualified emoji of Unicode's ``emoji-test.txt`` drawn
with the Noto Color Emoji font, named by their Unicode names and labelled by group/subgroup.

The split unit is the emoji *without its skin tones*: "waving hand" and its five skin-tone
variants all land in the same split, so test emoji are never seen in training, in any tone.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from omnifuse.datasets._common import (
    Row,
    check_options,
    default_workers,
    field,
    generator_entry,
    parallel_map,
    prepare_out,
    require_file,
    sample_rng,
    split_sizes,
    write_card,
    write_manifests,
)

NAME = "emoji"
VERSION = "1.0"
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FONT_SIZE = 109  # the only size of this bitmap font's glyphs (136x128 px)
IMAGE_SIZE = 64
OPTIONS = ("workers",)
DESCRIPTION = (
    "Fully-qualified Unicode emoji rendered with Noto Color Emoji, with their names, groups and "
    "subgroups: image-text retrieval, captioning and image classification on real images. "
    "Split rule: an emoji and its skin-tone variants form one unit; per group, units are "
    "shuffled (seeded) and cut 80/10/10 into train/val/test, so test emoji are unseen in training."
)
LICENSE = (
    "images: Noto Color Emoji glyphs, SIL Open Font License 1.1; names and groups: Unicode "
    "emoji-test.txt, Unicode License (https://www.unicode.org/copyright.html)"
)
_LINE = re.compile(r"^([0-9A-F ]+?)\s*; fully-qualified\s*# (\S+) E(\d+\.\d+) (.+)$")
_SKIN_TONE = re.compile(r"^(light|medium-light|medium|medium-dark|dark) skin tone$")


@dataclass(frozen=True)
class EmojiEntry:
    """One fully-qualified emoji of ``emoji-test.txt``."""

    codepoints: str  # "1F44B 1F3FD"
    char: str
    version: str  # emoji version that introduced it, e.g. "1.0"
    name: str  # "waving hand: medium skin tone"
    group: str
    subgroup: str

    @property
    def id(self) -> str:
        """``"emoji-1f44b-1f3fd"``: stable across Unicode versions."""
        return "emoji-" + "-".join(cp.lower() for cp in self.codepoints.split())

    @property
    def unit(self) -> str:
        """The name without skin-tone qualifiers: the split unit (``"waving hand"``)."""
        base, _, qualifiers = self.name.partition(": ")
        kept = [q for q in qualifiers.split(", ") if q and not _SKIN_TONE.match(q)]
        return f"{base}: {', '.join(kept)}" if kept else base


def read_emoji_test(path: Path = EMOJI_TEST) -> list[EmojiEntry]:
    """Every fully-qualified emoji of ``emoji-test.txt``, in file order."""
    require_file(path, "unicode-data", NAME)
    entries, group, subgroup = [], "", ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group: "):
            group = line.removeprefix("# group: ").strip()
        elif line.startswith("# subgroup: "):
            subgroup = line.removeprefix("# subgroup: ").strip()
        elif (match := _LINE.match(line)) is not None:
            codepoints, char, version, name = match.groups()
            entries.append(
                EmojiEntry(codepoints.strip(), char, version, name.strip(), group, subgroup)
            )
    return entries


@functools.cache
def _font() -> ImageFont.FreeTypeFont:
    """Noto Color Emoji, loaded once per process (a 10 MB file)."""
    path = require_file(FONT, "fonts-noto-color-emoji", NAME)
    return ImageFont.truetype(str(path), FONT_SIZE)


def render_emoji(char: str, size: int = IMAGE_SIZE) -> Image.Image:
    """Draw ``char`` with Noto Color Emoji on white; return a ``size``² RGB image.

    The 136x128 glyph is centred on a white square canvas and downscaled (Lanczos).
    """
    font = _font()
    left, top, right, bottom = (int(v) for v in font.getbbox(char))
    side = max(right - left, bottom - top)
    glyph = Image.new("RGBA", (side, side), (255, 255, 255, 0))
    offset = ((side - (right - left)) // 2 - left, (side - (bottom - top)) // 2 - top)
    ImageDraw.Draw(glyph).text(offset, char, font=font, embedded_color=True)
    canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    canvas.alpha_composite(glyph)
    return canvas.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


@dataclass(frozen=True)
class _Task:
    out: str
    entry: EmojiEntry


def make_row(task: _Task) -> Row:
    """Render one emoji and return its manifest row."""
    entry = task.entry
    relative = f"images/{entry.id}.png"
    render_emoji(entry.char).save(Path(task.out) / relative)
    return {
        "id": entry.id,
        "image": relative,
        "text": entry.name,
        "caption": entry.name,
        "label": entry.group,
        "subgroup": entry.subgroup,
        "emoji": entry.char,
        "unit": entry.unit,
    }


def assign_splits(entries: list[EmojiEntry], seed: int) -> list[str]:
    """Split of each entry: per group, its units are shuffled and cut 80/10/10, so every group
    is in every split and all skin tones of an emoji share a split."""
    split_of_unit: dict[str, str] = {}
    groups = sorted({e.group for e in entries})
    for g, group in enumerate(groups):
        units = sorted({e.unit for e in entries if e.group == group})
        order = sample_rng(seed, g, stream=1).permutation(len(units))
        names = [name for name, n in split_sizes(len(units)).items() for _ in range(n)]
        split_of_unit |= {units[int(i)]: name for i, name in zip(order, names, strict=True)}
    return [split_of_unit[e.unit] for e in entries]


def _fields(groups: list[str], subgroups: list[str]) -> dict[str, Row]:
    return {
        "image": field(
            "image", f"{IMAGE_SIZE}x{IMAGE_SIZE} RGB PNG of the emoji (Noto Color Emoji) on white."
        ),
        "text": field(
            "text",
            "Unicode CLDR short name, e.g. 'grinning face', 'waving hand: medium skin tone'.",
        ),
        "caption": field("string", "Same as `text`."),
        "label": field("class", "Unicode emoji group.", groups),
        "subgroup": field("class", "Unicode emoji subgroup.", subgroups),
        "emoji": field("string", "The emoji itself (a Unicode string)."),
        "unit": field(
            "string", "Split unit: the name without skin tones (all tones share a split)."
        ),
    }


def generate(
    out: Path, size: int | None = None, seed: int = 0, progress: bool = True, **options: Any
) -> Path:
    """Render the emoji under ``out``; return the card path.

    Args:
        out: Dataset directory.
        size: Number of emoji (default: all 3,655); a smaller size takes a seeded random subset.
        seed: Seeds the subset and the split.
        progress: Show a progress bar.
        **options: ``workers`` (processes, default 2).
    """
    check_options(NAME, options, OPTIONS)
    entries = read_emoji_test()
    if size is not None and size < len(entries):
        keep = sorted(
            int(i) for i in sample_rng(seed, 0, stream=2).choice(len(entries), size, replace=False)
        )
        entries = [entries[i] for i in keep]
    require_file(FONT, "fonts-noto-color-emoji", NAME)
    out = prepare_out(out, ["images"])
    tasks = [_Task(str(out), entry) for entry in entries]
    rows = parallel_map(
        make_row,
        tasks,
        workers=int(options.get("workers", default_workers())),
        progress=progress,
        label=NAME,
    )
    groups = list(dict.fromkeys(e.group for e in entries))
    subgroups = list(dict.fromkeys(e.subgroup for e in entries))
    card = {
        "name": NAME,
        "description": DESCRIPTION,
        "license": LICENSE,
        "source": f"{EMOJI_TEST} (Debian unicode-data) drawn with {FONT} (fonts-noto-color-emoji)",
        "splits": write_manifests(out, rows, assign_splits(entries, seed)),
        "fields": _fields(groups, subgroups),
        "generator": generator_entry(
            NAME, seed, VERSION, size=len(entries), split_unit="name without skin tones"
        ),
    }
    return write_card(out, card)
