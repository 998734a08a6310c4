"""Speech: held-out voices, transcripts, audio files and determinism."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from builtin_helpers import all_rows, read_card, read_rows

from omnifuse.datasets import speech
from omnifuse.datasets._common import sample_rng

SIZE = 30


@pytest.fixture(scope="module")
def spoken(generated: Callable[..., Path]) -> Path:
    return generated("speech", SIZE, workers=1)


def test_voice_pools_of_the_splits_are_disjoint() -> None:
    pools = {name: {*flite, *espeak} for name, (flite, _, espeak) in speech.VOICES.items()}
    assert not pools["train"] & pools["test"]
    assert not pools["train"] & pools["val"]
    assert not pools["val"] & pools["test"]
    assert "flite:rms" in pools["test"]
    assert "flite:kal" not in set().union(*pools.values())  # same speaker as kal16


def test_test_voices_never_speak_in_training(spoken: Path) -> None:
    rows = read_rows(spoken)
    voices = {name: {row["voice"] for row in split} for name, split in rows.items()}
    assert voices["train"] and voices["test"]
    assert not voices["train"] & voices["test"]
    assert not voices["train"] & voices["val"]
    card_voices = read_card(spoken)["generator"]["voices"]
    for name, used in voices.items():
        assert used <= set(card_voices[name])


def test_audio_matches_its_row(spoken: Path) -> None:
    for row in all_rows(spoken):
        samples, rate = sf.read(str(spoken / row["audio"]))
        assert rate == 16000
        assert samples.ndim == 1
        assert len(samples) / rate == pytest.approx(row["duration"], abs=1e-3)
        words = row["transcript"].split()
        assert 0.12 * len(words) < row["duration"] < 0.8 * len(words) + 1.0, row
        assert re.fullmatch(r"[a-z0-9' ]+", row["transcript"])
        assert row["engine"] == row["voice"].split(":")[0]


def test_same_seed_gives_identical_audio(spoken: Path, tmp_path: Path) -> None:
    again = speech.generate(tmp_path, size=SIZE, progress=False, workers=1).parent
    assert (spoken / "train.jsonl").read_bytes() == (again / "train.jsonl").read_bytes()
    for row in all_rows(spoken):
        assert (spoken / row["audio"]).read_bytes() == (again / row["audio"]).read_bytes()


def test_sentences_are_varied_and_already_normalised() -> None:
    sentences = [speech.make_sentence(sample_rng(0, i)) for i in range(200)]
    assert len(set(sentences)) > 180
    assert len({s.split()[0] for s in sentences}) > 10
    assert all(re.fullmatch(r"[a-z' ]+", s) for s in sentences)
    lengths = np.array([len(s.split()) for s in sentences])
    assert lengths.min() >= 4
    assert lengths.max() <= 15
