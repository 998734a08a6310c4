"""Supply chain and trust: weights are safetensors only, nothing is unpickled unrestricted, no
remote code is trusted, and every dependency is pinned to the range the suite ran on."""

from __future__ import annotations

import re
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

from corpus import Env
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "src").rglob("*.py"))
PICKLE_MAGIC = b"\x80"
SAFE_SUFFIXES = {".safetensors", ".yaml", ".json", ".txt", ".model"}


def _calls(pattern: str) -> list[tuple[Path, str]]:
    found = []
    for path in SOURCES:
        text = path.read_text()
        found += [(path, m.group(0)) for m in re.finditer(pattern, text, re.S)]
    return found


def test_a_saved_model_holds_safetensors_and_text_only(env: Env) -> None:
    files = [p for p in (env.run / "model").rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)
    for path in files:
        assert path.suffix in SAFE_SUFFIXES, f"unexpected file in a model dir: {path}"
        head = path.read_bytes()[:2]
        assert not head.startswith(PICKLE_MAGIC) and not zipfile.is_zipfile(path), path


def test_nothing_is_unpickled_without_weights_only() -> None:
    assert not _calls(r"\bpickle\.loads?\("), "use safetensors / JSON, never pickle.load"
    for path, call in _calls(r"torch\.load\([^)]*\)"):
        assert "weights_only=True" in call, f"{path}: {call}"
    for path, call in _calls(r"\.fit\([^)]*ckpt_path[^)]*\)"):
        assert "weights_only=True" in call, f"{path}: {call}"


def test_remote_code_is_never_trusted() -> None:
    assert not _calls(r"trust_remote_code\s*=\s*True"), "trust_remote_code must never be set"


def test_dependencies_are_pinned_to_the_tested_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    for line in requirements:
        requirement = Requirement(line)
        operators = {spec.operator for spec in requirement.specifier}
        if requirement.name.lower().startswith("types-"):
            continue  # stub packages follow their library; any version type-checks the same
        assert operators & {"<", "=="}, f"{line}: add an upper bound (next major)"
        installed = metadata.version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), (line, installed)
