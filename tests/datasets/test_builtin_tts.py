"""Speech synthesis: voices, determinism, resampling, errors and a recognisability check."""

from __future__ import annotations

import shutil

import jiwer
import numpy as np
import pytest

from omnifuse.datasets import MissingResourceError, tts

TEXT = "the red circle is left of the blue square"


def test_espeak_output_does_not_depend_on_what_was_said_before() -> None:
    # libespeak-ng carries state between utterances; the generator must not.
    voice, other = tts.Voice("espeak", "en-us+f3"), tts.Voice("espeak", "en-gb-x-rp+klatt2")
    first = tts.synthesize(TEXT, voice, rate=1.1, pitch=60, seed=3)
    tts.synthesize("something else entirely", other, seed=9)
    again = tts.synthesize(TEXT, voice, rate=1.1, pitch=60, seed=3)
    np.testing.assert_array_equal(first, again)
    assert first.dtype == np.float32
    assert 1.0 < first.size / tts.SAMPLE_RATE < 4.0
    assert np.abs(first).max() == pytest.approx(0.9, abs=1e-3)


def test_espeak_voice_rate_and_pitch_change_the_audio() -> None:
    base = tts.synthesize(TEXT, tts.Voice("espeak", "en-us+m1"))
    faster = tts.synthesize(TEXT, tts.Voice("espeak", "en-us+m1"), rate=1.5)
    assert faster.size < 0.8 * base.size
    other = tts.synthesize(TEXT, tts.Voice("espeak", "en-us+f2"))
    assert other.size != base.size or not np.array_equal(other, base)


def test_flite_voices_are_deterministic_and_resampled_to_16k() -> None:
    kal16 = tts.synthesize(TEXT, tts.Voice("flite", "kal16"))
    kal8 = tts.synthesize(TEXT, tts.Voice("flite", "kal"))  # an 8 kHz voice
    np.testing.assert_array_equal(kal16, tts.synthesize(TEXT, tts.Voice("flite", "kal16")))
    # same speaker, same text: after resampling both last about as long at 16 kHz
    assert 0.8 < kal8.size / kal16.size < 1.25


def test_flite_speech_is_recognised_as_its_transcript() -> None:
    from pocketsphinx import Decoder  # type: ignore[import-untyped]  # no stubs

    decoder = Decoder(samprate=tts.SAMPLE_RATE)
    sentence = "my sister bought three green apples at the market on monday"
    samples = tts.synthesize(sentence, tts.Voice("flite", "rms"))
    decoder.start_utt()
    decoder.process_raw((samples * 32767).astype(np.int16).tobytes(), full_utt=True)
    decoder.end_utt()
    hypothesis = decoder.hyp().hypstr if decoder.hyp() is not None else ""
    assert jiwer.wer(sentence, hypothesis) <= 0.34, hypothesis


def test_bad_voices_and_rates_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="espeak rejected voice 'xx-nowhere'"):
        tts.synthesize("hi", tts.Voice("espeak", "xx-nowhere"))
    with pytest.raises(ValueError, match="unknown flite voice 'nobody'; valid: kal16, slt"):
        tts.synthesize("hi", tts.Voice("flite", "nobody"))
    with pytest.raises(ValueError, match=r"rate=5\.0 is out of range"):
        tts.synthesize("hi", tts.espeak_voices()[0], rate=5.0)
    with pytest.raises(ValueError, match="bad voice id 'slt'"):
        tts.Voice.parse("slt")


def test_missing_flite_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert tts.flite_voices() == []
    with pytest.raises(MissingResourceError, match="sudo apt-get install flite"):
        tts.synthesize("hi", tts.Voice("flite", "slt"))


def test_voice_ids_round_trip_and_cover_all_engines() -> None:
    voices = tts.espeak_voices() + tts.flite_voices()
    assert len(tts.espeak_voices()) == len(tts.ESPEAK_ACCENTS) * len(tts.ESPEAK_VARIANTS)
    assert {v.engine for v in voices} == {"espeak", "flite"}
    assert all(tts.Voice.parse(v.id) == v for v in voices)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Three shapes: a Red circle, and a star!", "three shapes a red circle and a star"),
        ("seven o'clock", "seven o'clock"),
        ("an x-ray / scan", "an x ray scan"),
        ("  spaced   out  ", "spaced out"),
    ],
)
def test_normalise_transcript(raw: str, expected: str) -> None:
    assert tts.normalise_transcript(raw) == expected
