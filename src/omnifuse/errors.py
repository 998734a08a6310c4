"""Errors every layer may raise for a user's request (as opposed to a config error)."""

from __future__ import annotations


class InferenceError(ValueError):
    """A request the loaded run cannot serve: unknown task, missing input, bad option.

    The message names the bad value and the valid choices; ``omnifuse predict``/``eval`` print
    it and exit with status 2.
    """
