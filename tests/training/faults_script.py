"""``omnifuse train`` as a subprocess for the fault tests: ``python faults_script.py HOLD_AT MARKER
CONFIG [train args...]``. With HOLD_AT > 0 the run writes MARKER after optimiser step HOLD_AT and
waits there (up to 120 s) until it gets SIGTERM, so that a test can signal it at a known step or
start a second process against the same run dir while this one holds the lock.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L

import omnifuse.training.run as run_module
from omnifuse.cli.main import main


class HoldAfter(L.Callback):
    """Write ``marker`` after optimiser step ``step``, then wait for SIGTERM (or 120 s)."""

    def __init__(self, step: int, marker: Path) -> None:
        self.step, self.marker = step, marker

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            self.marker.write_text("held")
            deadline = time.monotonic() + 120
            while not trainer.received_sigterm and time.monotonic() < deadline:
                time.sleep(0.05)


if __name__ == "__main__":
    hold_at, marker, rest = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    original = run_module.build_trainer

    def build_trainer(
        training: Any, run_dir: Path, has_val: bool, callbacks: Sequence[L.Callback] = ()
    ) -> L.Trainer:
        return original(training, run_dir, has_val, [*callbacks, HoldAfter(hold_at, marker)])

    if hold_at > 0:
        run_module.build_trainer = build_trainer
    sys.argv = ["omnifuse", "train", *rest]
    main()
