"""Deprecated alias of :mod:`omnifuse.datasets` (the built-in dataset generators moved there).

Kept because ``from omnifuse.data.builtin import make`` is how scripts outside the repository
generate the built-in datasets; the submodules (``shapesworld``, ``emoji``, ...) are not
aliased, import them from :mod:`omnifuse.datasets`.
"""

from __future__ import annotations

import warnings

from omnifuse.datasets import MissingResourceError, list_builtin, make

__all__ = ["MissingResourceError", "list_builtin", "make"]

warnings.warn(
    "omnifuse.data.builtin moved to omnifuse.datasets; import from there "
    "(this alias will be removed in a future release)",
    FutureWarning,
    stacklevel=2,
)
