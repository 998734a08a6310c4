"""Inference options and errors, re-exported where users of the inference API look for them.

:class:`DecodingOptions` lives with the decoding loops (:mod:`omnifuse.heads.decoding`) and
:class:`InferenceError` in :mod:`omnifuse.errors`, so task types below this package use them too.
"""

from omnifuse.errors import InferenceError
from omnifuse.heads.decoding import STRATEGIES, DecodingOptions, Strategy

__all__ = ["STRATEGIES", "DecodingOptions", "InferenceError", "Strategy"]
