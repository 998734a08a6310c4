"""Run directories and crash-safe checkpoints.

A run directory holds::

    config.yaml          the resolved run config (defaults filled in, overrides applied)
    run.json             git commit, versions, argv, status, resumes, fine-tuning report
    checkpoints/         last.ckpt + step-NNNNNN.ckpt every training.checkpoint.every_n_steps
    metrics/metrics.csv  CSVLogger
    tensorboard/         TensorBoardLogger
    model/               the final model (omnifuse.save; open it with omnifuse.load)

Checkpoints are written to a temporary file in the same directory, flushed and fsynced, then
renamed over the target with ``os.replace`` (atomic on POSIX), and the directory entry is fsynced
too. A crash or SIGKILL at any moment leaves either the previous complete file or the new one
under the final name, never a truncated one.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import platform
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from omnifuse.config.loader import ConfigError
from omnifuse.config.run import RunConfig
from omnifuse.faults import fault_point

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"
PERIODIC_GLOB = "step-*.ckpt"
RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
MODEL_DIR = "model"
LOCK_FILE = ".lock"
RUN_DIR_ENV = "OMNIFUSE_RUN_DIR"
"""Set by the launching process so that DDP ranks it starts use the same run directory."""
CHECKPOINT_FORMAT = 1
"""Layout of what omnifuse keeps in a Lightning checkpoint (``checkpoint["omnifuse_format"]``)."""
FORMAT_KEY = "omnifuse_format"
TEMP_SUFFIX = ".tmp"
"""Checkpoints are first written to ``.<name>.<random><TEMP_SUFFIX>`` (atomic_torch_save)."""

log = logging.getLogger("omnifuse.training")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning ``CheckpointIO`` writing temp file -> fsync -> ``os.replace`` -> fsync(dir)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` atomically.

        Raises:
            TypeError: ``storage_options`` given (not supported).
        """
        if storage_options is not None:
            raise TypeError(f"storage_options are not supported by {type(self).__name__}")
        atomic_torch_save(checkpoint, Path(path))


class RunDirLocked(RuntimeError):
    """Another live process is training in this run directory (it holds ``RUN_DIR/.lock``)."""


class CheckpointWriteError(OSError):
    """A checkpoint write failed (disk full, ...); the previous file under its name is kept."""


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive POSIX record lock (``fcntl.lockf``) on ``RUN_DIR/.lock`` for the block.

    The kernel drops the lock when the holder exits, however it dies (SIGKILL included), so a
    stale ``.lock`` file never blocks a later run; only a live holder does. A record lock
    belongs to the process, so forked children (persistent DataLoader workers) do not hold it:
    with ``flock`` they shared the lock and, outliving a SIGKILLed trainer by a few seconds,
    made the immediate ``--resume`` fail with "in use".

    Raises:
        RunDirLocked: another process holds the lock (the message names the dir and its pid).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):  # EAGAIN or EACCES, by platform
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunDirLocked(
                f"run dir {run_dir} is in use by another omnifuse train (pid {holder}); wait for "
                "it to finish or choose another --run-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


class _WriteErrors:
    """A binary file that remembers the first ``OSError`` of a ``write``.

    torch's zip writer swallows the exception of a failed write and then fails with an unrelated
    ``RuntimeError`` ("[enforce fail at inline_container.cc] unexpected pos ..."): a disk that
    filled up mid-checkpoint would be reported as that. The recorded error says ENOSPC.
    """

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self.handle.flush()


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)`` such that ``path`` is never seen half-written.

    Raises:
        CheckpointWriteError: the write failed with an ``OSError`` (ENOSPC, EIO, ...), also one
            torch reported as a ``RuntimeError``; the temporary file is removed and whatever was
            under ``path`` before is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    writer: _WriteErrors | None = None
    try:
        with os.fdopen(fd, "wb") as handle:
            writer = _WriteErrors(handle)
            torch.save(obj, cast(IO[bytes], writer))  # torch calls write and flush only
            fault_point("checkpoint-write")  # the temp file is partly on disk (buffer unflushed)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        Path(tmp).unlink(missing_ok=True)
        cause = err if isinstance(err, OSError) else getattr(writer, "error", None)
        if cause is None:
            raise  # a RuntimeError that is not about the disk
        reason = os.strerror(cause.errno) if cause.errno else str(cause)
        raise CheckpointWriteError(
            f"cannot write checkpoint {path}: {reason}; the checkpoints written before are kept"
        ) from cause
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def remove_partial_writes(run_dir: Path) -> list[Path]:
    """Delete the temporary files of checkpoint writes a killed process left behind.

    Only call it while holding :func:`run_dir_lock`: then no live writer owns them. Returns the
    files removed.
    """
    partial = sorted((run_dir / CHECKPOINT_DIR).glob(f".*{TEMP_SUFFIX}"))
    for path in partial:
        path.unlink(missing_ok=True)
    if partial:
        log.warning("removed %d partly written checkpoint file(s) of a killed run", len(partial))
    return partial


def _fsync_dir(directory: Path) -> None:
    """Persist a rename: fsync the directory (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def last_checkpoint(run_dir: Path) -> Path | None:
    """``<run_dir>/checkpoints/last.ckpt`` if it exists."""
    path = run_dir / CHECKPOINT_DIR / LAST
    return path if path.is_file() else None


def periodic_checkpoints(run_dir: Path) -> list[Path]:
    """The ``step-*.ckpt`` files, oldest first."""
    return sorted((run_dir / CHECKPOINT_DIR).glob(PERIODIC_GLOB))


def default_run_dir(name: str, root: Path = Path("runs")) -> Path:
    """``runs/<name>-<UTC timestamp>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return root / f"{name}-{stamp}"


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuse to overwrite a run, or to resume one that has no checkpoint.

    Raises:
        ConfigError: ``resume`` without ``last.ckpt`` or with one that is not a PyTorch
            archive or comes from a newer omnifuse (:func:`check_format`), or a fresh start in a
            dir with checkpoints.
    """
    last = last_checkpoint(run_dir)
    if resume and last is None:
        raise ConfigError(
            [f"--resume: {run_dir / CHECKPOINT_DIR / LAST} does not exist; nothing to resume"]
        )
    if resume and last is not None:
        check_archive(last)
        check_format(last)
    if not resume and (last is not None or periodic_checkpoints(run_dir)):
        raise ConfigError(
            [
                f"run dir {run_dir} already holds checkpoints; pass --resume to continue it or "
                "choose another --run-dir"
            ]
        )


def check_archive(path: Path) -> None:
    """Refuse a checkpoint that is not a ``torch.save`` zip archive, before anything reads it.

    A bare pickle renamed ``.ckpt`` (or a truncated file) is never handed to the unpickler;
    archives are loaded with ``weights_only=True``, which refuses code objects.

    Raises:
        ConfigError: naming the file.
    """
    if not zipfile.is_zipfile(path):
        raise ConfigError(
            [
                f"{path} is not a PyTorch checkpoint archive (a bare pickle, truncated or another "
                "format); it was not loaded. Resume from an intact last.ckpt or start a new run"
            ]
        )


def format_stamp() -> dict[str, Any]:
    """What every checkpoint records about the omnifuse that wrote it."""
    from omnifuse import __version__

    return {"format_version": CHECKPOINT_FORMAT, "omnifuse": __version__}


def check_format(path: Path) -> None:
    """Refuse a checkpoint written by a newer omnifuse; accept (migrate) an unversioned one.

    A checkpoint without the stamp was written before checkpoints carried one; its layout is
    format 1, so it is read as that (logged). A higher format than this omnifuse reads is
    refused before Lightning touches it, since its state would be restored wrongly or not at all.

    Raises:
        ConfigError: naming the file, the omnifuse and format that wrote it and this one's.
    """
    from omnifuse import __version__

    stamp = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get(FORMAT_KEY)
    if stamp is None:
        log.warning(
            "%s has no omnifuse format version (written by an omnifuse before %s); reading it as "
            "checkpoint format %d",
            path,
            __version__,
            CHECKPOINT_FORMAT,
        )
        return
    found = stamp.get("format_version") if isinstance(stamp, dict) else None
    if not isinstance(found, int) or found > CHECKPOINT_FORMAT:
        writer = stamp.get("omnifuse", "unknown") if isinstance(stamp, dict) else "unknown"
        raise ConfigError(
            [
                f"{path} was written by omnifuse {writer} (checkpoint format {found!r}); this is "
                f"omnifuse {__version__}, which reads checkpoint formats up to "
                f"{CHECKPOINT_FORMAT}: resume it with omnifuse {writer} or newer, or start a new "
                "run"
            ]
        )


def git_commit(path: Path) -> dict[str, Any]:
    """Commit and dirty flag of the git checkout containing ``path`` (read-only git calls)."""
    try:
        commit = _git(path, "rev-parse", "HEAD")
        dirty = bool(_git(path, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def _git(path: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(path), *args], capture_output=True, text=True, timeout=10, check=True
    )
    return result.stdout.strip()


def environment() -> dict[str, Any]:
    """Versions and host facts worth keeping with a run."""
    from omnifuse import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "omnifuse": __version__,
        "platform": platform.platform(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "cpu_threads": torch.get_num_threads(),
    }


def write_run_files(run_dir: Path, config: RunConfig, resume: bool, argv: Sequence[str]) -> None:
    """Write ``config.yaml`` and create/extend ``run.json`` (a resume appends to ``resumes``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(
        yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    )
    now = datetime.now(UTC).isoformat(timespec="seconds")
    record = read_run_json(run_dir) if resume else {}
    if resume:
        record.setdefault("resumes", []).append({"time": now, "argv": list(argv)})
    else:
        record = {
            "name": config.name,
            "started": now,
            "argv": list(argv),
            "git": git_commit(Path(__file__).resolve().parent),
            "environment": environment(),
        }
    record["status"] = "running"
    write_run_json(run_dir, record)


def read_run_json(run_dir: Path) -> dict[str, Any]:
    """``run.json`` as a dict (empty when missing)."""
    path = run_dir / RUN_FILE
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def write_run_json(run_dir: Path, record: dict[str, Any]) -> None:
    """Replace ``run.json`` atomically."""
    path = run_dir / RUN_FILE
    tmp = path.with_name(f".{RUN_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def update_run_json(run_dir: Path, **fields: Any) -> None:
    """Merge ``fields`` into ``run.json``."""
    record = read_run_json(run_dir)
    record.update(fields)
    write_run_json(run_dir, record)


class StepCheckpoint(ModelCheckpoint):
    """``last.ckpt`` + ``step-NNNNNN.ckpt`` every ``every_n_steps``, keeping the newest ``keep``.

    Args:
        run_dir: The run directory (checkpoints go to its ``checkpoints/``).
        every_n_steps: Optimiser steps between checkpoints.
        keep: Periodic checkpoints kept (None: all); ``last.ckpt`` is never removed.
    """

    def __init__(self, run_dir: Path, every_n_steps: int, keep: int | None = None) -> None:
        super().__init__(
            dirpath=run_dir / CHECKPOINT_DIR,
            filename="step-{step:06d}",
            auto_insert_metric_name=False,
            every_n_train_steps=every_n_steps,
            save_last=True,
            save_top_k=-1,
            save_on_train_epoch_end=False,
        )
        self.run_dir = run_dir
        self.keep = keep
        self.preempted_at: int | None = None
        """The step ``last.ckpt`` was written at after a SIGTERM (None: no SIGTERM)."""

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Stamp every checkpoint with the omnifuse version and format (:func:`check_format`)."""
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        checkpoint[FORMAT_KEY] = format_stamp()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        """Save as ModelCheckpoint does, then delete periodic checkpoints beyond ``keep``.

        After a SIGTERM (Lightning sets ``trainer.received_sigterm`` and stops right after this
        hook) ``last.ckpt`` is written at the current step, so that ``--resume`` continues
        exactly where the preempted run stopped.
        """
        super().on_train_batch_end(trainer, *args)
        if trainer.received_sigterm and self.preempted_at != trainer.global_step:
            trainer.save_checkpoint(self.run_dir / CHECKPOINT_DIR / LAST)
            self.preempted_at = trainer.global_step
        if self.keep is not None and trainer.is_global_zero:
            for old in periodic_checkpoints(self.run_dir)[: -self.keep]:
                old.unlink(missing_ok=True)
