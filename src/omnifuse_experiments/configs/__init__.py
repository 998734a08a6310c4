"""The run configs of the experiments (demo, studies, recipes, video generation and its judge).

They are package data beside this module, not library presets: ``omnifuse train`` takes them by
path, e.g. ``omnifuse train $(python -c "from omnifuse_experiments.configs import config_path;
print(config_path('video-judge'))")``, or from a checkout, ``src/omnifuse_experiments/configs/``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def configs_dir() -> Path:
    """Directory of the shipped run configs."""
    return Path(str(resources.files("omnifuse_experiments") / "configs"))


def list_configs() -> list[str]:
    """Names of the shipped run configs (``<name>.yaml``), sorted."""
    return sorted(p.stem for p in configs_dir().glob("*.yaml"))


def config_path(name: str) -> Path:
    """Path of the shipped run config ``name``.

    Raises:
        FileNotFoundError: no such config (the message lists the valid names).
    """
    path = configs_dir() / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"no experiment run config {name!r}; valid: {', '.join(list_configs())}"
        )
    return path


__all__ = ["config_path", "configs_dir", "list_configs"]
