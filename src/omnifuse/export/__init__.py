"""Export a trained run to ONNX and serve the graphs with onnxruntime (see ``docs/export.md``).

from omnifuse.export import OnnxPredictor, export_onnx

export_onnx("runs/shapes", "runs/shapes/onnx")     # graphs + manifest.json, parity-checked
OnnxPredictor.load("runs/shapes/onnx").predict("shape", image=["cat.png"])
"""

from omnifuse.export.onnx import ATOL, FRAMES_ATOL, ExportReport, Parity, export_onnx
from omnifuse.export.runtime import OnnxPredictor
from omnifuse.export.specs import ExportError

__all__ = [
    "ATOL",
    "FRAMES_ATOL",
    "ExportError",
    "ExportReport",
    "OnnxPredictor",
    "Parity",
    "export_onnx",
]
