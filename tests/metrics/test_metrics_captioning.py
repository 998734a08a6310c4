"""BLEU / CIDEr / ROUGE-L / METEOR through pycocoevalcap, both tokenizer paths, Java failures."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from typing import Any

import pytest

from omnifuse.metrics import caption_metrics, captioning
from omnifuse.metrics.captioning import CaptionMetricError, run_meteor, simple_tokenize

needs_java = pytest.mark.skipif(not captioning.java_available(), reason="needs `java` on PATH")

REFERENCES = [
    ["a man is riding a horse on the beach", "a person rides a brown horse near the sea"],
    ["two dogs play with a red ball in the grass", "dogs playing with a ball on a lawn"],
    ["a plate of pasta with tomato sauce on a table", "pasta and sauce served on a plate"],
]


def test_identical_caption_scores_one() -> None:
    predictions = [refs[0] for refs in REFERENCES]
    result = caption_metrics(predictions, REFERENCES, tokenizer="simple", meteor=False)
    assert result.bleu4 == pytest.approx(1.0, abs=1e-6)
    assert result.rouge_l == pytest.approx(1.0, abs=1e-9)
    assert result.meteor is None
    assert result.meteor_skipped == "disabled (meteor=False)"


def test_disjoint_caption_scores_zero() -> None:
    predictions = ["blue sky over snowy mountains far away"] * 3
    result = caption_metrics(predictions, REFERENCES, tokenizer="simple", meteor=False)
    assert result.bleu4 == pytest.approx(0.0, abs=1e-6)
    assert result.rouge_l == 0.0
    assert result.cider == pytest.approx(0.0, abs=1e-9)


def test_cider_prefers_the_better_caption() -> None:
    others = [REFERENCES[1][1], REFERENCES[2][1]]
    good = ["a man rides a horse on the beach", *others]
    bad = ["a man stands in a kitchen", *others]
    good_cider = caption_metrics(good, REFERENCES, tokenizer="simple", meteor=False).cider
    bad_cider = caption_metrics(bad, REFERENCES, tokenizer="simple", meteor=False).cider
    assert good_cider is not None and bad_cider is not None
    assert good_cider > bad_cider + 0.5


def test_single_image_has_no_cider(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = caption_metrics(["a dog"], ["a dog"], tokenizer="simple", meteor=False)
    assert result.cider is None
    assert "CIDEr needs at least two images" in caplog.text


@needs_java
def test_fallback_tokenizer_matches_ptb_on_plain_text(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    predictions = ["a man rides a horse on the beach", "dogs play with a ball", "a plate of food"]
    ptb = caption_metrics(predictions, REFERENCES, tokenizer="ptb", meteor=False)
    monkeypatch.setattr(captioning, "java_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        fallback = caption_metrics(predictions, REFERENCES, tokenizer="auto", meteor=True)
    assert (ptb.tokenizer, fallback.tokenizer) == ("ptb", "simple")
    assert fallback.bleu == pytest.approx(ptb.bleu, abs=1e-12)
    assert fallback.rouge_l == pytest.approx(ptb.rouge_l, abs=1e-12)
    assert fallback.meteor is None
    assert fallback.meteor_skipped == "`java` not on PATH"
    assert "fallback tokenizer" in caplog.text


@needs_java
def test_ptb_tokenizer_splits_like_coco() -> None:
    tokens = captioning.ptb_tokenize(["The man's hat,\nred!", "", "Two dogs."])
    assert tokens == ["the man 's hat red", "", "two dogs"]
    assert simple_tokenize("The man's hat,\nred!") == "the mans hat red"


@pytest.mark.slow
@needs_java
def test_meteor_runs_java_once() -> None:
    # the only test that starts the METEOR JVM (several seconds); value from METEOR 1.5
    result = caption_metrics(
        ["a dog runs in the park", "a dog sleeps"],
        ["a dog runs in the park", "a cat sleeps"],
        tokenizer="ptb",
    )
    assert result.meteor_skipped is None
    assert result.meteor == pytest.approx(0.4592, abs=1e-3)


class _FakeMeteor:
    """Stands in for pycocoevalcap's Meteor around a Python child process."""

    script = "import time; time.sleep(30)"

    def __init__(self) -> None:
        code = self.script
        self.meteor_p = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def compute_score(self, gts: Any, res: Any) -> tuple[float, list[float]]:
        return float(self.meteor_p.stdout.readline()), []  # type: ignore[union-attr]


def test_meteor_timeout_returns_none_and_kills_the_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[_FakeMeteor] = []

    def make() -> _FakeMeteor:
        started.append(_FakeMeteor())
        return started[-1]

    monkeypatch.setattr(captioning, "Meteor", make)
    score, reason = run_meteor({0: ["a"]}, {0: ["a"]}, timeout_s=0.5)
    assert score is None
    assert reason == "METEOR timed out after 0.5 s"
    assert started[0].meteor_p.poll() is not None  # the child was stopped


def test_meteor_crash_reports_java_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    class Crashing(_FakeMeteor):
        script = "import sys; sys.stderr.write('Error: Unable to access jarfile'); sys.exit(1)"

    monkeypatch.setattr(captioning, "Meteor", Crashing)
    score, reason = run_meteor({0: ["a"]}, {0: ["a"]}, timeout_s=10)
    assert score is None
    assert reason is not None and "Unable to access jarfile" in reason


def test_ptb_timeout_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(*args: Any, **kwargs: Any) -> None:
        raise subprocess.TimeoutExpired(cmd="java", timeout=1.0)

    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setattr(subprocess, "run", slow)
    with pytest.raises(CaptionMetricError, match=r"timed out after 1\.0 s.*tokenizer='simple'"):
        captioning.ptb_tokenize(["a dog"], timeout_s=1.0)


def test_ptb_without_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(CaptionMetricError, match="needs `java` on PATH"):
        caption_metrics(["a"], ["a"], tokenizer="ptb", meteor=False)


@pytest.mark.parametrize(
    ("preds", "refs", "kwargs", "match"),
    [
        (["a", "b"], [["a"], []], {}, r"references\[1\] is empty"),
        (["a"], [["a"]], {"tokenizer": "nltk"}, "tokenizer must be one of"),
        (["a"], [["a"], ["b"]], {}, "1 predictions but 2 references"),
        (["a"], [["a", 3]], {}, r"references\[0\]\[1\] must be a str"),
    ],
)
def test_bad_input_is_rejected(
    preds: list[str], refs: list[Any], kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        caption_metrics(preds, refs, meteor=False, **kwargs)
