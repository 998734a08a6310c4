"""Real-data recipes: each makes its data, measures its baselines and trains ours in one run.

Example:
    >>> from omnifuse_experiments.recipes import run_recipe
    >>> results = run_recipe("fortunes", Path("runs/recipes/fortunes"))
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

RECIPES = ("fortunes", "emoji", "speech")


def list_recipes() -> list[str]:
    """Names accepted by :func:`run_recipe` and ``omnifuse recipe``."""
    return list(RECIPES)


def run_recipe(name: str, out_dir: Path, quick: bool = False, **options: Any) -> dict[str, Any]:
    """Run recipe ``name`` into ``out_dir``; returns what it wrote to ``results.json``.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; valid choices: {', '.join(RECIPES)}")
    module = import_module(f"omnifuse_experiments.recipes.{name}")
    result: dict[str, Any] = module.run(out_dir, quick=quick, **options)
    return result


__all__ = ["RECIPES", "list_recipes", "run_recipe"]
