"""Recipes: configs, pieces, and the fortunes recipe end to end (quick mode)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omnifuse_experiments.recipes import list_recipes, run_recipe
from omnifuse_experiments.recipes._common import Stopwatch, markdown_table, recipe_config
from omnifuse_experiments.recipes.emoji import _chance
from omnifuse_experiments.recipes.speech import _verdict, scores_by_engine


@pytest.mark.parametrize("name", ["fortunes", "emoji", "speech", "speech-whisper"])
def test_shipped_recipe_configs_validate(name: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one two\n")
    overrides = {
        "fortunes": ["model.encoders.text.path=/models/minilm"],
        "emoji": ["model.encoders.text.path=/models/minilm"],
        "speech": [f"model.encoders.text.tokenizer.corpus=[{corpus}]"],
        "speech-whisper": [],
    }[name]
    config = recipe_config(name, overrides)
    assert config.name == f"recipe-{name}"
    assert config.training.max_steps > 0


def test_unknown_recipe_lists_the_valid_ones(tmp_path: Path) -> None:
    assert list_recipes() == ["fortunes", "emoji", "speech"]
    with pytest.raises(ValueError, match="unknown recipe 'nope'; valid choices: fortunes, emoji"):
        run_recipe("nope", tmp_path)


def test_markdown_table_and_stopwatch() -> None:
    watch = Stopwatch()
    with watch.step("fit"):
        pass
    assert set(watch.steps["fit"]) == {"seconds", "load_avg_1m"}
    table = markdown_table([("tf-idf", "accuracy", 0.75), ("ours", "note", "n/a")])
    assert table.splitlines()[2:] == ["| tf-idf | accuracy | 0.750 |", "| ours | note | n/a |"]


def test_speech_scores_split_by_engine() -> None:
    rows = [
        {"transcript": "a b c d", "engine": "flite"},
        {"transcript": "e f", "engine": "espeak"},
    ]
    scores = scores_by_engine(["a b c d", "e x"], rows)
    assert scores["flite"]["wer"] == 0.0
    assert scores["espeak"]["wer"] == pytest.approx(0.5)
    assert scores["all"]["wer"] == pytest.approx(1 / 6)
    assert scores["all"]["utterances"] == 2


def test_speech_verdict_names_the_voice_families_each_side_wins() -> None:
    def wer(**groups: float) -> dict[str, dict[str, float]]:
        return {g: {"wer": v} for g, v in groups.items()}

    split = _verdict(
        {
            "ours": wer(all=0.45, espeak=0.30, flite=0.70),
            "pocketsphinx": wer(all=0.51, espeak=0.85, flite=0.06),
        }
    )
    assert split.startswith("**Ours beats pocketsphinx** on all test audio (all WER 0.450")
    assert "Ours is better on espeak WER 0.300 against 0.850." in split
    assert "pocketsphinx is better on flite WER 0.700 against 0.060." in split
    lost = _verdict({"ours": wer(all=0.6, espeak=0.6), "pocketsphinx": wer(all=0.5, espeak=0.5)})
    assert lost.startswith("**Ours does not beat pocketsphinx**")
    assert "Ours is better" not in lost


def test_emoji_chance_levels() -> None:
    classes = ["faces", "flags", "food"]
    train = [{"label": "faces"}] * 3 + [{"label": "food"}]
    test = [{"label": "faces"}, {"label": "flags"}, {"label": "food"}, {"label": "faces"}]
    chance = _chance(train, test, classes)
    assert chance["recall@1"] == pytest.approx(0.25)
    assert chance["recall@5"] == 1.0  # K above the pool size
    assert chance["group_majority_accuracy"] == pytest.approx(0.5)
    assert chance["group_uniform_accuracy"] == pytest.approx(1 / 3)


def test_fortunes_quick_runs_end_to_end(tmp_path: Path) -> None:
    results = run_recipe("fortunes", tmp_path, quick=True)
    saved = json.loads((tmp_path / "results.json").read_text())
    for method in ("tfidf_logreg", "frozen_minilm_logreg", "ours"):
        assert 0.0 <= saved[method]["accuracy"] <= 1.0
    assert saved["ours"] == results["ours"]
    assert saved["steps"] == 2
    section = (tmp_path / "results.md").read_text()  # quick runs leave docs/results.md alone
    assert "<!-- begin:recipe-fortunes -->" in section
    assert "TF-IDF" in section and "load average" in section


def test_speech_section_reports_whisper_per_voice_family() -> None:
    from omnifuse_experiments.recipes.speech import section

    def wer(**groups: float) -> dict[str, dict[str, float]]:
        return {g: {"wer": v, "cer": v / 2, "utterances": 2.0} for g, v in groups.items()}

    results = {
        "samples": {"train": 8, "test": 4},
        "pocketsphinx": wer(all=0.5, espeak=0.9, flite=0.1),
        "ours": wer(all=0.4, espeak=0.3, flite=0.5),
        "whisper_zero_shot": wer(all=0.2, espeak=0.3, flite=0.1),
        "whisper_fine_tuned": wer(all=0.04, espeak=0.05, flite=0.03),
        "examples": [],
        "steps": 2,
        "whisper_steps": 1,
        "timing": {},
    }
    text = section(results)
    assert "| **Whisper tiny.en fine-tuned** | WER, flite (2 utt.) | 0.030 |" in text
    assert "flite: zero-shot 0.100, fine-tuned 0.030, pocketsphinx 0.100" in text


def test_speech_section_without_ours_reports_beam_and_greedy() -> None:
    from omnifuse_experiments.recipes.speech import section

    def wer(**groups: float) -> dict[str, dict[str, float]]:
        return {g: {"wer": v, "cer": v / 2, "utterances": 2.0} for g, v in groups.items()}

    results = {
        "samples": {"train": 8, "test": 4},
        "pocketsphinx": wer(all=0.5, flite=0.1),
        "whisper_zero_shot": wer(all=0.2, flite=0.1),
        "whisper_zero_shot_beam": wer(all=0.19, flite=0.09),
        "whisper_fine_tuned": wer(all=0.04, flite=0.03),
        "whisper_fine_tuned_beam": wer(all=0.035, flite=0.02),
        "examples": [
            {
                "reference": "a b",
                "voice": "flite:rms",
                "pocketsphinx": "a",
                "whisper_fine_tuned": "a b",
            }
        ],
        "whisper_steps": 1,
        "timing": {},
    }
    text = section(results)
    assert "left out of this run" in text and "Ours beats" not in text
    assert "| **Whisper tiny.en fine-tuned, beam 4** | WER, flite (2 utt.) | 0.020 |" in text
    assert (
        "flite: zero-shot 0.100, zero-shot beam 0.090, fine-tuned 0.030, "
        "fine-tuned beam 0.020, pocketsphinx 0.100" in text
    )
    assert "ref: a b | pocketsphinx: a | Whisper: a b" in text
