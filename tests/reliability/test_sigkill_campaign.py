"""The fast part of the SIGKILL campaign (scripts/reliability_campaign.py) in CI: 2 trials."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "reliability_campaign.py"


def test_two_sigkill_trials_resume_identically_with_no_corrupt_checkpoint() -> None:
    spec = importlib.util.spec_from_file_location("reliability_campaign", SCRIPT)
    assert spec is not None and spec.loader is not None
    campaign = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(campaign)
    result = campaign.campaign(trials=2, seed=1, budget_s=600.0)
    assert result["trials"] == 2
    assert result["identical"] == 2, result
    assert result["corrupt"] == 0, result
