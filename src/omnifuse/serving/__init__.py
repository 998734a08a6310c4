"""Serving: an HTTP API and web page over the inference API (``omnifuse serve RUN_DIR``).

Example:
    >>> from omnifuse.inference import Pipeline
    >>> from omnifuse.serving import ServeSettings, create_app
    >>> app = create_app(Pipeline.load("runs/demo/finetune"), ServeSettings())
"""

from omnifuse.serving.app import ServeSettings, create_app
from omnifuse.serving.backend import Backend, TaskInfo, TorchBackend
from omnifuse.serving.batching import BatchSettings
from omnifuse.serving.limits import Limits

__all__ = [
    "Backend",
    "BatchSettings",
    "Limits",
    "ServeSettings",
    "TaskInfo",
    "TorchBackend",
    "create_app",
]
