"""The fast part of the SIGKILL campaign (scripts/reliability_campaign.py) in CI: one trial at each
of three targeted moments (a killed data-loader worker: tests/training/test_training_faults.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "reliability_campaign.py"
MOMENTS = ("checkpoint-write", "validation", "worker-start")


def test_targeted_kills_resume_identically_with_no_corrupt_checkpoint() -> None:
    spec = importlib.util.spec_from_file_location("reliability_campaign", SCRIPT)
    assert spec is not None and spec.loader is not None
    campaign = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = campaign  # its dataclass resolves annotations through it
    spec.loader.exec_module(campaign)
    result = campaign.campaign(trials=3, seed=1, budget_s=900.0, moments=MOMENTS)
    trials = {t["moment"]: t for t in result["per_trial"]}
    assert sorted(trials) == sorted(MOMENTS), result
    for moment in MOMENTS:
        assert trials[moment]["exit_code"] == -9, trials[moment]  # the fault point fired
    assert trials["checkpoint-write"]["hit"].startswith("partial temp file"), trials
    assert result["identical"] == 3, result
    assert result["corrupt"] == 0, result
