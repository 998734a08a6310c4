"""Recipe ``speech``: speech recognition on voices held out from training.

Baseline: pocketsphinx (its bundled English acoustic model, language model and dictionary) on
the same test audio. Ours: an audio encoder + caption decoder trained from scratch with omnifuse
on the training voices. Both are scored by the same corpus WER, on the whole test split and per
engine: pocketsphinx recognises flite speech well and espeak speech hardly at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from omnifuse.data.corpus import write_corpus
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
    results: dict[str, Any] = {
        "samples": {"train": len(read_rows(data / "train.jsonl")), "test": len(test)},
        "pocketsphinx": scores_by_engine(baseline, test),
        "ours": scores_by_engine(ours, test),
        "examples": [
            {"reference": row["transcript"], "voice": row["voice"], "pocketsphinx": b, "ours": o}
            for row, b, o in list(zip(test, baseline, ours, strict=True))[:6]
        ],
        "steps": config.training.max_steps,
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


def transcribe(model_dir: Path, paths: Sequence[Path], batch_size: int = 32) -> list[str]:
    """Greedy transcripts of ``paths`` by the saved model (the inference Pipeline)."""
    from omnifuse.inference import Pipeline

    pipe = Pipeline.load(model_dir)
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


def section(results: dict[str, Any]) -> str:
    """The docs/results.md section of ``results`` (what ``run`` returned)."""
    rows: list[Row] = []
    for label, key in (("pocketsphinx (default English LM)", "pocketsphinx"), ("**ours**", "ours")):
        for group, scores in results[key].items():
            subset = f"{group} ({int(scores['utterances'])} utt.)"
            rows += [
                (label, f"WER, {subset}", scores["wer"]),
                (label, f"CER, {subset}", scores["cer"]),
            ]
    examples = "\n".join(
        f"- `{e['voice']}` ref: {e['reference']} | pocketsphinx: {e['pocketsphinx']} | "
        f"ours: {e['ours']}"
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
            "scratch), greedy decoding.",
            markdown_table(rows),
            _verdict(results),
            "First test utterances:\n\n" + examples,
            "Wall times (2 shared cores; the load average shows how busy they were):\n\n"
            + timing_lines(results["timing"]),
        ]
    )
