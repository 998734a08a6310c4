"""Inference: load a trained run and serve it (``Pipeline``), with text decoding strategies.

Example:
    >>> from omnifuse.inference import DecodingOptions, Pipeline
    >>> pipe = Pipeline.load("runs/shapes")
    >>> pipe.caption(["scene.png"], DecodingOptions(strategy="beam", beam_size=4))
"""

from omnifuse.heads.decoding import (
    Decoded,
    DecoderStepper,
    StepDecoder,
    Stepper,
    TokenIds,
    beam_search,
    decode,
    greedy_search,
    nucleus_search,
)
from omnifuse.inference.options import DecodingOptions, InferenceError
from omnifuse.inference.pipeline import Pipeline
from omnifuse.inference.results import ClassPrediction
from omnifuse.inference.runs import RunFiles, locate

__all__ = [
    "ClassPrediction",
    "Decoded",
    "DecoderStepper",
    "DecodingOptions",
    "InferenceError",
    "Pipeline",
    "RunFiles",
    "StepDecoder",
    "Stepper",
    "TokenIds",
    "beam_search",
    "decode",
    "greedy_search",
    "locate",
    "nucleus_search",
]
