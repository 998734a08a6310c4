"""Runs one training for the subprocess tests: ``python training_script.py CONFIG RUN_DIR RESUME
BLOCK_AT MARKER``. With BLOCK_AT > 0 the run writes MARKER after optimiser step BLOCK_AT and then
hangs (so the test can SIGKILL it mid-run). Lightning's DDP launcher re-runs this file per rank.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import lightning as L

from omnifuse.config import load_config
from omnifuse.training import train


class BlockAfter(L.Callback):
    """Signal and hang after optimiser step ``step`` (before its batch-end checkpoint hook)."""

    def __init__(self, step: int, marker: Path) -> None:
        self.step, self.marker = step, marker

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            self.marker.write_text("blocked")
            time.sleep(600)


if __name__ == "__main__":
    config, run_dir, resume, block_at, marker = sys.argv[1:6]
    callbacks = [BlockAfter(int(block_at), Path(marker))] if int(block_at) > 0 else []
    train(load_config(config), Path(run_dir), resume == "1", callbacks=callbacks)
