"""Marked sections: each writer replaces only its own section."""

from __future__ import annotations

from pathlib import Path

from omnifuse_experiments.reporting import write_section


def test_sections_are_replaced_in_place_and_appended(tmp_path: Path) -> None:
    doc = tmp_path / "docs" / "results.md"
    write_section(doc, "a", "first A", header="# Results\n")
    write_section(doc, "b", "first B")
    write_section(doc, "a", "second A")
    text = doc.read_text()
    assert text.startswith("# Results\n")
    assert "first A" not in text and "second A" in text and "first B" in text
    assert text.index("second A") < text.index("first B")  # A kept its place
