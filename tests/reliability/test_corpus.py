"""Every case of the bad-input corpus gives its documented outcome, and docs/reliability.md
reports the numbers of the current corpus (``python scripts/bad_inputs.py`` rewrites them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from corpus import Case, Env, all_cases, run_case

CASES = all_cases()
DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_is_clear(case: Case, env: Env, tmp_path: Path) -> None:
    outcome = run_case(case, env, tmp_path / case.name)
    assert outcome.kind == "clear", f"{case.name} ({case.via}): {outcome.kind}\n{outcome.detail}"


def test_corpus_is_large_and_covers_every_user_path() -> None:
    assert len(CASES) >= 80
    assert {c.via for c in CASES} >= {"data check", "train", "eval", "predict", "Pipeline"}
    refused = [c for c in CASES if c.exit_code != 0 or c.raises]
    assert all(c.needles for c in refused), "every refusal must name what is wrong"


def test_docs_report_the_current_corpus() -> None:
    """The table in docs/reliability.md counts this corpus: rerun scripts/bad_inputs.py after
    adding cases (the per-case tests above prove the clear / 0 / 0 part)."""
    text = DOC.read_text()
    numbers = r"\| (\d+) \| (\d+) \| (\d+) \| (\d+) \(\d+%\) \| (\d+) \| (\d+) \| (\d+) \|"
    row = re.search(f"^{numbers}$", text, re.M)
    assert row is not None, "docs/reliability.md has no corpus table"
    tried, bad, valid, clear, tracebacks, silent, unclear = map(int, row.groups())
    assert (tried, bad + valid) == (len(CASES), len(CASES))
    assert bad >= 80
    assert (clear, tracebacks, silent, unclear) == (tried, 0, 0, 0)
