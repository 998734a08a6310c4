"""A CSV logger that appends across resumes (Lightning's deletes the previous ``metrics.csv``).

After a resume, ``metrics.csv`` holds the rows of every attempt in order; a step logged by an
attempt that was killed after its last checkpoint appears again from the resumed attempt (the
later row is the one that counts).
"""

from __future__ import annotations

import csv

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    """Keeps an existing ``metrics.csv`` and continues its columns."""

    def _check_log_dir_exists(self) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
            header = next(csv.reader(handle), [])
        # Known columns: new rows append; a new metric rewrites the header over all rows.
        self.metrics_keys = sorted(header)


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` whose writer appends to an existing ``metrics.csv``."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """The (appending) experiment writer."""
        if not isinstance(self._experiment, ExperimentWriter):
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
