"""``data.alternatives``: training draws a field from its list of alternatives (seeded)."""

from __future__ import annotations

import pytest
from data_helpers import CharProcessor
from pydantic import ValidationError

from omnifuse.config.data import DataConfig
from omnifuse.data.collate import TargetField
from omnifuse.data.decode import SampleDecoder
from omnifuse.data.sources import RawSample
from omnifuse.modalities.base import MediaError

CAPTIONS = ["a red circle", "one circle", "a circle in the middle", "a big red circle"]
FIELDS = {"caption": TargetField("caption", "string")}


def _raw(captions: object = CAPTIONS) -> RawSample:
    fields = {"text": "a red circle", "caption": "a red circle", "captions": captions}
    return RawSample("s0", fields, {}, "m.jsonl:1")


def _decoder(training: bool) -> SampleDecoder:
    return SampleDecoder(
        {"text": CharProcessor()}, FIELDS, training=training, alternatives={"caption": "captions"}
    )


def test_training_draws_every_alternative_and_repeats_per_seed() -> None:
    decoder = _decoder(training=True)
    drawn = [decoder.decode(_raw(), seed=s).targets["caption"] for s in range(40)]
    assert set(drawn) == set(CAPTIONS)  # 40 draws of 4: all seen (probability ~1 - 4e-5)
    again = [decoder.decode(_raw(), seed=s).targets["caption"] for s in range(40)]
    assert again == drawn


def test_evaluation_reads_the_field_as_stored() -> None:
    decoder = _decoder(training=False)
    assert {decoder.decode(_raw(), seed=s).targets["caption"] for s in range(10)} == {
        "a red circle"
    }


def test_the_text_input_can_be_drawn_too() -> None:
    decoder = SampleDecoder(
        {"text": CharProcessor()}, {}, training=True, alternatives={"text": "captions"}
    )
    lengths = {decoder.decode(_raw(), seed=s).inputs["text"].numel() for s in range(40)}
    assert lengths == {len(c) + 1 for c in CAPTIONS}  # +1: CharProcessor's training code


def test_an_empty_list_keeps_the_stored_value_and_a_string_is_an_error() -> None:
    decoder = _decoder(training=True)
    assert decoder.decode(_raw([]), seed=0).targets["caption"] == "a red circle"
    with pytest.raises(MediaError, match=r"'captions' \(alternatives to 'caption'\) must be a"):
        decoder.decode(_raw("one circle"), seed=0)


@pytest.mark.parametrize("bad", [{"caption": "caption"}, {"image": "captions"}, {"id": "x"}])
def test_config_refuses_a_field_mapped_to_itself_or_an_input(bad: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="alternatives"):
        DataConfig(alternatives=bad)
