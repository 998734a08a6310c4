"""The import-linter ``layers`` contract in pyproject.toml places every package of omnifuse.

import-linter's own ``exhaustive`` option needs ``containers``, which cannot also hold the
separate ``omnifuse_experiments`` package, so the completeness check lives here: a new package
or top-level module that nobody placed in the order fails this test, not silently passes.
"""

from __future__ import annotations

import pkgutil
import re
import tomllib
from pathlib import Path
from typing import Any

import omnifuse

ROOT = Path(__file__).resolve().parents[1]


def contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return found


def layer_modules(contract: dict[str, Any]) -> list[str]:
    return [name.strip() for layer in contract["layers"] for name in re.split(r"[|:]", layer)]


def test_one_layers_contract_covers_every_package() -> None:
    (contract,) = contracts()
    assert contract["type"] == "layers"
    placed = layer_modules(contract)
    children = {f"omnifuse.{m.name}" for m in pkgutil.iter_modules(omnifuse.__path__)}
    assert children - set(placed) == set(), "place these in the layers contract"
    assert set(placed) - children == {"omnifuse_experiments"}, "stale names in the contract"
    assert placed[0] == "omnifuse_experiments"  # the library never imports the experiments


def test_library_never_writes_into_a_cwd_relative_docs_dir() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "src" / "omnifuse").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"""Path\(\s*["']docs\b""", line)
    ]
    assert offenders == []
