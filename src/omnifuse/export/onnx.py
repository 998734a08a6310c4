"""``export_onnx(run_dir, out_dir)``: every exportable task of a run as ONNX graphs, each checked
against PyTorch on export, plus a ``manifest.json`` from which :class:`OnnxPredictor` serves them.

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)``. It ships with torch
2.13 and needs nothing else; the dynamo-based default needs ``onnxscript`` (not a dependency
here). Tracing records Python ints as constants, so a shape the model turns into an ``int``
would be baked in: the parity check runs every graph on two batches of other sizes (and other
sequence and cache lengths) than the traced one, and fails the export if a baked axis shows.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
import yaml

from omnifuse.errors import InferenceError
from omnifuse.export.graphs import GraphSpec, as_tuple, context_of
from omnifuse.export.runtime import MANIFEST, GreedyIds, greedy_decode, prior_greedy
from omnifuse.export.specs import ExportError, NotExportable, TaskExport, task_export
from omnifuse.heads.caption_decoder import CaptionDecoder
from omnifuse.heads.decoding import DecodingOptions, decode
from omnifuse.inference import Pipeline
from omnifuse.inference.runs import locate
from omnifuse.layers.sampling import SamplingOptions
from omnifuse.tasks.video_generation import generator_head

ATOL = 1e-4
"""Largest allowed |onnxruntime - PyTorch| of any float output (fp32, CPU)."""
FRAMES_ATOL = 1e-3
"""Generated frames (values in ``[0, 1]``, a quarter of one 8-bit level): an untrained prior's
greedy grid is one repeated code, and the VQ decoder's GroupNorms over such near-constant
activations magnify float rounding (2e-4 seen here; 3e-7 on random codes)."""
OPSET = 17
FORMAT_VERSION = 1


@dataclass
class Parity:
    """One graph's check: the largest absolute difference over both samples and all outputs."""

    graph: str
    max_abs_diff: float
    atol: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.atol

    def line(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        diff = f"max |ort - torch| = {self.max_abs_diff:.2e} (atol {self.atol:.0e})"
        return f"{self.graph}: {diff} {verdict}"


@dataclass
class ExportReport:
    """What :func:`export_onnx` did."""

    out_dir: Path
    parity: list[Parity] = field(default_factory=list)
    greedy: dict[str, bool] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def export_onnx(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    atol: float = ATOL,
    tasks: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
) -> ExportReport:
    """Export every task of ``run_dir`` that has an ONNX export (or only ``tasks``) to
    ``out_dir`` (default: ``RUN_DIR/onnx``), check each graph against PyTorch and write
    ``manifest.json``.

    Raises:
        ExportError: no task could be exported, or a graph (or greedy decoding) failed parity.
        InferenceError: ``tasks`` names a task the run does not have.
    """
    start = time.perf_counter()
    pipe = Pipeline.load(run_dir, device="cpu")
    selected = _select(pipe, tasks)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "onnx"
    out.mkdir(parents=True, exist_ok=True)
    # A previous export's manifest would describe graphs this one overwrites, even if it fails.
    (out / MANIFEST).unlink(missing_ok=True)
    report = ExportReport(out)
    exported_tasks: dict[str, Any] = {}
    for name, kind in selected.items():
        try:
            exported = task_export(pipe.task(name), pipe.model, pipe.processors)
        except NotExportable as exc:
            report.skipped[name] = str(exc)
            log(f"skipped {name} ({kind}): {exc}")
            continue
        exported_tasks[name] = _export_task(name, kind, exported, out, atol, report, log)
        if kind == "captioning":
            _check_greedy(pipe, name, exported, out, report, log)
        elif "prior_step" in exported_tasks[name]["graphs"]:
            _check_video(pipe, name, exported, out, atol, report, log)
    if not exported_tasks:
        raise ExportError(f"no task of {run_dir} can be exported: {report.skipped}")
    failed = [p.line() for p in report.parity if not p.ok]
    failed += [f"{t}: greedy token ids differ" for t, same in report.greedy.items() if not same]
    if failed:
        raise ExportError("ONNX parity check failed: " + "; ".join(failed))
    report.seconds = time.perf_counter() - start
    _write_manifest(out, run_dir, exported_tasks, report, atol)
    log(f"exported {len(exported_tasks)} task(s) to {out} in {report.seconds:.1f} s")
    return report


def _select(pipe: Pipeline, tasks: Sequence[str] | None) -> dict[str, str]:
    """Task name -> type of the tasks to export (all of the run's by default)."""
    if tasks is None:
        return pipe.tasks
    unknown = [t for t in tasks if t not in pipe.tasks]
    if unknown:
        listing = ", ".join(f"{n} ({k})" for n, k in pipe.tasks.items())
        raise InferenceError(f"unknown task(s) {unknown}; the run's tasks: {listing}")
    return {t: pipe.tasks[t] for t in tasks}


def _export_task(
    name: str,
    kind: str,
    exported: TaskExport,
    out: Path,
    atol: float,
    report: ExportReport,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Export and check each graph of one task; its manifest entry."""
    graphs = {}
    for spec in exported.graphs:
        path = out / f"{spec.name}.onnx"
        export_graph(spec, path)
        parity = check_parity(spec, path, atol)
        report.parity.append(parity)
        log(parity.line())
        graphs[spec.role] = {
            "file": path.name,
            "inputs": list(spec.inputs),
            "outputs": list(spec.outputs),
            "dynamic_axes": {
                k: {str(a): n for a, n in v.items()} for k, v in spec.dynamic_axes.items()
            },
        }
    return {"type": kind, "graphs": graphs, **exported.meta}


def export_graph(spec: GraphSpec, path: Path) -> None:
    """Trace ``spec.module`` on its first sample and write the ONNX graph to ``path``."""
    spec.module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter warns that it is deprecated, and the tracer warns about every
        # Python-level shape check; the parity check is what tells whether tracing went right.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            spec.module,
            spec.samples[0],
            str(path),
            input_names=list(spec.inputs),
            output_names=list(spec.outputs),
            dynamic_axes={k: dict(v) for k, v in spec.dynamic_axes.items()},
            opset_version=OPSET,
            dynamo=False,
        )


def session(path: Path) -> ort.InferenceSession:
    """A CPU onnxruntime session of one graph."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_parity(spec: GraphSpec, path: Path, atol: float) -> Parity:
    """Run both samples through onnxruntime and PyTorch; integer and bool outputs must match
    exactly (a mismatch counts as an infinite difference)."""
    sess = session(path)
    worst = 0.0
    for sample in spec.samples:
        with torch.no_grad():
            expected = [t.numpy() for t in as_tuple(spec.module(*sample))]
        feeds = {n: t.numpy() for n, t in zip(spec.inputs, sample, strict=True)}
        for want, got in zip(expected, sess.run(list(spec.outputs), feeds), strict=True):
            worst = max(worst, _difference(want, got))
    return Parity(spec.name, worst, atol)


def _difference(want: np.ndarray[Any, Any], got: np.ndarray[Any, Any]) -> float:
    if want.shape != got.shape:
        return float("inf")
    if np.issubdtype(want.dtype, np.floating):
        return float(np.abs(want - got).max()) if want.size else 0.0
    return 0.0 if np.array_equal(want, got) else float("inf")


def _check_greedy(
    pipe: Pipeline,
    name: str,
    exported: TaskExport,
    out: Path,
    report: ExportReport,
    log: Callable[[str], None],
) -> None:
    """Greedy decoding in onnxruntime (numpy loop over the decoder-step graph) must give the
    token ids of PyTorch's ``decode`` on both sample batches."""
    encoder, step = exported.graphs
    decoder = pipe.model.heads[str(exported.meta["head"])]
    if not isinstance(decoder, CaptionDecoder):
        raise ExportError(f"task {name!r}: its head is not a CaptionDecoder")
    ids = GreedyIds(decoder.bos_id, decoder.eos_id, decoder.pad_id, decoder.max_length)
    enc, dec = session(out / f"{encoder.name}.onnx"), session(out / f"{step.name}.onnx")
    same = True
    for sample in encoder.samples:
        with torch.no_grad():
            want = decode(decoder, context_of(encoder.module, sample), DecodingOptions()).tokens
        feeds = {n: t.numpy() for n, t in zip(encoder.inputs, sample, strict=True)}
        context, mask = enc.run(None, feeds)
        got = greedy_decode(dec, context, mask, ids)
        same = same and np.array_equal(want.numpy(), got)
    report.greedy[name] = same
    log(f"{name}: greedy decoding in onnxruntime {'matches' if same else 'DIFFERS from'} torch")


def _check_video(
    pipe: Pipeline,
    name: str,
    exported: TaskExport,
    out: Path,
    atol: float,
    report: ExportReport,
    log: Callable[[str], None],
) -> None:
    """Greedy video codes in onnxruntime must be PyTorch's (``VideoPrior.sample`` at
    temperature 0, the head's guidance), and the decoded frames within ``max(atol,
    FRAMES_ATOL)`` (the graphs themselves are checked at ``atol``)."""
    condition = exported.graphs[0]
    generator = generator_head(pipe.model, str(exported.meta["head"]), name)
    options = SamplingOptions(temperature=0.0, guidance=float(exported.meta["guidance"]))
    sessions = [session(out / f"{g.name}.onnx") for g in exported.graphs]
    same, worst = True, 0.0
    for sample in condition.samples:
        with torch.no_grad():
            codes = generator.prior.sample(context_of(condition.module, sample), options)
            frames = generator.decode(codes).float().numpy()
        feeds = {n: t.numpy() for n, t in zip(condition.inputs, sample, strict=True)}
        context, mask = sessions[0].run(None, feeds)
        meta = exported.meta
        got = prior_greedy(
            sessions[1], context, mask, meta["bos_id"], meta["num_tokens"], options.guidance
        )
        same = same and np.array_equal(codes.numpy(), got)
        worst = max(worst, _difference(frames, sessions[2].run(None, {"codes": got})[0]))
    report.greedy[name] = same
    report.parity.append(Parity(f"{name}.frames", worst, max(atol, FRAMES_ATOL)))
    log(f"{name}: greedy video codes in onnxruntime {'match' if same else 'DIFFER from'} torch")
    log(report.parity[-1].line())


def _write_manifest(
    out: Path, run_dir: str | Path, tasks: Mapping[str, Any], report: ExportReport, atol: float
) -> None:
    """``manifest.json`` + the processors' assets (``processors/<modality>/``)."""
    model_dir = locate(run_dir).model_dir
    saved = yaml.safe_load((model_dir / "config.yaml").read_text())
    encoders = {m: c for m, c in saved["model"]["encoders"].items() if c is not None}
    for modality in encoders:
        source = model_dir / modality
        if source.is_dir():
            shutil.copytree(source, out / "processors" / modality, dirs_exist_ok=True)
    manifest = {
        "format": "omnifuse-onnx",
        "format_version": FORMAT_VERSION,
        "exporter": f"torch.onnx.export(dynamo=False), torch {torch.__version__}",
        "opset": OPSET,
        "run": str(Path(run_dir).resolve()),
        "atol": atol,
        "frames_atol": max(atol, FRAMES_ATOL),
        "encoders": encoders,
        "tasks": dict(tasks),
        "skipped": report.skipped,
        "parity": {
            p.graph: {"max_abs_diff": p.max_abs_diff, "atol": p.atol} for p in report.parity
        },
        "greedy_parity": report.greedy,
        "export_seconds": round(report.seconds, 3),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
