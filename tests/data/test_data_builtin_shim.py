"""The deprecated ``omnifuse.data.builtin`` alias warns and re-exports :mod:`omnifuse.datasets`."""

from __future__ import annotations

import importlib
import sys

import pytest

from omnifuse import datasets


def test_old_import_path_warns_and_reexports() -> None:
    sys.modules.pop("omnifuse.data.builtin", None)
    with pytest.warns(FutureWarning, match=r"omnifuse\.datasets"):
        old = importlib.import_module("omnifuse.data.builtin")
    assert old.make is datasets.make
    assert old.list_builtin() == datasets.list_builtin()
