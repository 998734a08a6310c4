"""``omnifuse.faults``: OMNIFUSE_FAULT=<moment>:<n> SIGKILLs at the n-th arrival; the log counts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from omnifuse.faults import FAULT_ENV, FAULT_LOG_ENV, MOMENTS, parse_fault

# Reaches "step" three times and "validation" once, printing after each arrival.
PROGRAM = (
    "from omnifuse.faults import fault_point\n"
    "for moment in ('step', 'validation', 'step', 'step'):\n"
    "    fault_point(moment)\n"
    "    print(moment, flush=True)\n"
)


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in (FAULT_ENV, FAULT_LOG_ENV)}
    return subprocess.run(
        [sys.executable, "-c", PROGRAM], env={**clean, **env}, capture_output=True, text=True
    )


def test_parse_fault() -> None:
    assert parse_fault("checkpoint-write:3") == ("checkpoint-write", 3)


@pytest.mark.parametrize("value", ["step", "step:0", "step:x", "mid-step:1", ":2"])
def test_bad_values_name_the_variable_and_the_moments(value: str) -> None:
    with pytest.raises(ValueError, match=f"{FAULT_ENV}={value!r}: expected <moment>:<n>") as e:
        parse_fault(value)
    assert ", ".join(MOMENTS) in str(e.value)


def test_the_nth_arrival_is_killed() -> None:
    killed = run({FAULT_ENV: "step:2"})
    assert killed.returncode == -signal.SIGKILL
    assert killed.stdout.split() == ["step", "validation"]  # died at the second "step"


def test_unset_or_never_reached_changes_nothing(tmp_path: Path) -> None:
    assert run({}).stdout.split() == ["step", "validation", "step", "step"]
    assert run({FAULT_ENV: "step:4"}).returncode == 0  # only three arrivals


def test_the_log_counts_every_arrival(tmp_path: Path) -> None:
    log = tmp_path / "arrivals.log"
    done = run({FAULT_LOG_ENV: str(log)})
    assert done.returncode == 0
    lines = [line.split() for line in log.read_text().splitlines()]
    assert [moment for _, moment in lines] == ["step", "validation", "step", "step"]
    assert len({pid for pid, _ in lines}) == 1
