"""``make`` / ``list_builtin``: the entry points the ``omnifuse data make`` CLI calls."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from omnifuse.datasets import _common, list_builtin, make


def test_list_builtin_names_every_dataset() -> None:
    assert list_builtin() == ["emoji", "fortunes", "shapesworld", "speech"]


def test_make_returns_the_card_path(tmp_path: Path) -> None:
    card = make("fortunes", tmp_path / "f", size=20, progress=False)
    assert card == (tmp_path / "f" / "card.yaml").resolve()
    assert card.is_file()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"name": "mnist"},
            "unknown built-in dataset 'mnist'; valid: emoji, fortunes, shapesworld",
        ),
        ({"size": 0}, "size=0 must be a positive number"),
        ({"seed": -1}, "seed=-1 must be >= 0"),
        ({"workers": 2}, r"unknown option\(s\) \['workers'\] for dataset 'fortunes'"),
    ],
)
def test_bad_arguments_raise_clear_errors(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"name": "fortunes", "out": tmp_path, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=message):
        make(**args)  # type: ignore[arg-type]


def test_split_sizes_sum_and_keep_small_splits() -> None:
    assert _common.split_sizes(10) == {"train": 8, "val": 1, "test": 1}
    assert _common.split_sizes(5) == {"train": 3, "val": 1, "test": 1}
    assert _common.split_sizes(2) == {"train": 2, "val": 0, "test": 0}
    assert sum(_common.split_sizes(5003).values()) == 5003


def test_parallel_map_keeps_order_over_processes() -> None:
    out = _common.parallel_map(abs, list(range(-20, 0)), workers=2, progress=False, label="t")
    assert out == list(range(20, 0, -1))


@pytest.mark.slow  # starts three interpreters, each importing torch via omnifuse
def test_unguarded_script_fails_fast_instead_of_hanging(tmp_path: Path) -> None:
    # Spawned workers re-import the calling script; without a __main__ guard they die at start.
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from omnifuse.datasets._common import parallel_map\n"
        "parallel_map(abs, list(range(16)), workers=2, progress=False, label='demo')\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode != 0
    assert "demo: worker processes died" in done.stderr
    assert "if __name__ == '__main__':" in done.stderr
