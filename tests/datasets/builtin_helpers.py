"""Readers of generated datasets shared by the built-in dataset tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def read_card(root: Path) -> dict[str, Any]:
    card: dict[str, Any] = yaml.safe_load((root / "card.yaml").read_text(encoding="utf-8"))
    return card


def read_rows(root: Path) -> dict[str, list[dict[str, Any]]]:
    """Split name -> rows, for every split the card lists."""
    splits = read_card(root)["splits"]
    return {
        name: [json.loads(line) for line in (root / spec["manifest"]).read_text().splitlines()]
        for name, spec in splits.items()
    }


def all_rows(root: Path) -> list[dict[str, Any]]:
    return [row for rows in read_rows(root).values() for row in rows]
