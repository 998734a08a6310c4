"""Run the bad-input corpus (tests/reliability/corpus.py) and write its numbers into
docs/reliability.md (between the ``<!-- corpus:begin -->`` / ``<!-- corpus:end -->`` markers).

    python scripts/bad_inputs.py             # run, print every non-clear case, update the doc
    python scripts/bad_inputs.py --no-write  # run and print only
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

import corpus  # noqa: E402

BEGIN, END = "<!-- corpus:begin -->", "<!-- corpus:end -->"


def table(summary: corpus.Summary) -> str:
    """The Markdown block written into docs/reliability.md."""
    counts = summary.counts()
    groups = Counter(o.case.group for o in summary.outcomes)
    paths = Counter(o.case.via for o in summary.outcomes)
    valid = sum(1 for o in summary.outcomes if o.case.valid_input)
    lines = [
        BEGIN,
        "| cases tried | bad inputs | valid inputs | clear | tracebacks | silent wrong results "
        "| unclear |",
        "|---|---|---|---|---|---|---|",
        f"| {summary.tried} | {summary.tried - valid} | {valid} | {counts['clear']} "
        f"({counts['clear'] / summary.tried:.0%}) | {counts['traceback']} | {counts['silent']} "
        f"| {counts['unclear']} |",
        "",
        "*Bad inputs* must be refused with a clear error; *valid inputs* are awkward but valid "
        "(CMYK, 96 kHz, one frame, rows without `id` ...) and must be accepted.",
        "",
        "By group: " + ", ".join(f"{g} {n}" for g, n in sorted(groups.items())) + ".",
        "By path: " + ", ".join(f"`{p}` {n}" for p, n in sorted(paths.items())) + ".",
        END,
    ]
    return "\n".join(lines)


def write_doc(doc: Path, block: str) -> None:
    text = doc.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    doc.write_text(text[:start] + block + text[end:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "reliability.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        summary = corpus.run_corpus(corpus.build_env(Path(tmp)))
    for outcome in summary.failures():
        print(f"{outcome.kind:9} {outcome.case.name}: {outcome.detail}\n")
    block = table(summary)
    print(block)
    if not args.no_write:
        write_doc(args.doc, block)
    return 0 if not summary.failures() else 1


if __name__ == "__main__":
    raise SystemExit(main())
