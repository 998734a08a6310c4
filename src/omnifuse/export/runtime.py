"""Run exported graphs with onnxruntime + numpy: ``OnnxPredictor.load(out_dir).predict(...)``.

Predictions have the JSON shape of ``Pipeline.predict`` for the exported task types. What still
touches torch, and why:

- preprocessing: raw inputs go through the run's own processors (rebuilt from the manifest),
  which return torch tensors; they are converted to numpy before any graph runs;
- masked modelling draws its random patch mask with torch's generator seeded as
  ``Pipeline.predict`` seeds it, so both give the same mask (and the same error);
- generated clips are written by the existing mp4/gif writer, which takes a torch tensor (the
  numpy frames are wrapped, not recomputed).

Graph execution, softmax/top-k, the greedy decoding loop and decoding ids to text never call torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from omnifuse.errors import InferenceError
from omnifuse.tasks.base import class_prediction

MANIFEST = "manifest.json"
VIDEO_TYPES = ("video_generation", "video_tokenizer")
Array = npt.NDArray[Any]
Feeds = dict[str, Array]
"""Graph inputs by name (``"text.input_ids"``, ``"image.pixel_values"`` ...)."""


@dataclass(frozen=True)
class GreedyIds:
    """Special ids and limits of a caption decoder (from the manifest)."""

    bos: int
    eos: int
    pad: int
    max_length: int


def greedy_decode(
    step: ort.InferenceSession, context: Array, context_mask: Array, ids: GreedyIds
) -> Array:
    """Greedy decoding with a decoder-step graph and its KV cache, as ``heads.decoding``'s
    ``greedy_search``: ``[B, T]`` ids without BOS, EOS kept then PAD, stopping once every row
    has ended."""
    batch = context.shape[0]
    past = {i.name: _empty(i, batch) for i in step.get_inputs() if i.name.startswith("past_")}
    present = [o.name for o in step.get_outputs()][1:]
    tokens = np.full((batch, 1), ids.bos, dtype=np.int64)
    finished = np.zeros(batch, dtype=bool)
    for _ in range(ids.max_length):
        feeds = {"input_ids": tokens[:, -1:], "context": context, "context_mask": context_mask}
        logits, *cache = step.run(None, feeds | past)
        token = np.where(finished, ids.pad, logits.argmax(axis=-1)).astype(np.int64)  # (B,)
        tokens = np.concatenate([tokens, token[:, None]], axis=1)
        finished |= token == ids.eos
        past = {
            name.replace("present_", "past_"): v for name, v in zip(present, cache, strict=True)
        }
        if finished.all():
            break
    return tokens[:, 1:]


def prior_greedy(
    step: ort.InferenceSession,
    context: Array,
    context_mask: Array,
    bos: int,
    num_tokens: int,
    guidance: float = 1.0,
) -> Array:
    """Greedy codes ``[B, N]`` from a video prior's step graph, as ``VideoPrior.sample`` with
    temperature 0: with guidance, the unconditional rows (condition masked out) run in the same
    batch and the logits are ``u + guidance * (c - u)``."""
    batch = context.shape[0]
    guided = guidance != 1.0
    if guided:
        context = np.concatenate([context, context])
        context_mask = np.concatenate([context_mask, np.zeros_like(context_mask)])
    rows = context.shape[0]
    past = {i.name: _empty(i, rows) for i in step.get_inputs() if i.name.startswith("past_")}
    present = [o.name for o in step.get_outputs()][1:]
    tokens = np.full((rows, 1), bos, dtype=np.int64)
    for _ in range(num_tokens):
        feeds = {"input_ids": tokens[:, -1:], "context": context, "context_mask": context_mask}
        logits, *cache = step.run(None, feeds | past)
        if guided:
            logits = logits[batch:] + guidance * (logits[:batch] - logits[batch:])
        token = logits.argmax(axis=-1).astype(np.int64)  # (B,)
        tokens = np.concatenate([tokens, np.tile(token, rows // batch)[:, None]], axis=1)
        past = {n.replace("present_", "past_"): v for n, v in zip(present, cache, strict=True)}
    return tokens[:batch, 1:]


def _empty(info: Any, batch: int) -> Array:
    """A ``[B, H, 0, Dh]`` past key/value for the first step (H, Dh are static in the graph)."""
    _, heads, _, head_dim = info.shape
    return np.zeros((batch, int(heads), 0, int(head_dim)), dtype=np.float32)


def softmax(logits: Array) -> Array:
    """Softmax over the last axis (max-shifted, so large logits do not overflow)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)  # type: ignore[no-any-return]


class OnnxPredictor:
    """The exported tasks of a run, served by onnxruntime.

    Args:
        directory: the export directory (``manifest.json``, ``*.onnx``, ``processors/``).
        manifest: its parsed manifest.
        processors: the run's processors, keyed by modality.
        providers: onnxruntime execution providers.
        threads: intra-op threads per session (None: onnxruntime's default, every core).
    """

    def __init__(
        self,
        directory: Path,
        manifest: Mapping[str, Any],
        processors: Mapping[str, Any],
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: int | None = None,
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self.processors = processors
        self.providers = list(providers)
        self.threads = threads
        self._sessions: dict[str, ort.InferenceSession] = {}

    @classmethod
    def load(
        cls,
        directory: str | Path,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: int | None = None,
    ) -> OnnxPredictor:
        """Load an ``omnifuse export --format onnx`` directory.

        Raises:
            FileNotFoundError: no ``manifest.json`` in ``directory``.
        """
        path = Path(directory)
        if not (path / MANIFEST).is_file():
            raise FileNotFoundError(f"{path} has no {MANIFEST}; run `omnifuse export` first")
        manifest = json.loads((path / MANIFEST).read_text())
        processors = rebuild_processors(path, manifest["encoders"])
        return cls(path, manifest, processors, providers, threads)

    @property
    def tasks(self) -> dict[str, str]:
        """Exported task name -> task type."""
        return {name: str(t["type"]) for name, t in self.manifest["tasks"].items()}

    def session(self, task: str, graph: str) -> ort.InferenceSession:
        """The onnxruntime session of one graph of ``task`` (created once)."""
        spec = self.manifest["tasks"][task]["graphs"][graph]
        key = str(spec["file"])
        if key not in self._sessions:
            options = ort.SessionOptions()
            options.log_severity_level = 3  # keep shape-inference notes off stderr
            if self.threads is not None:
                options.intra_op_num_threads = self.threads
            self._sessions[key] = ort.InferenceSession(
                str(self.directory / key), options, providers=self.providers
            )
        return self._sessions[key]

    def predict(
        self,
        task: str | None = None,
        top_k: int = 5,
        out_dir: str | Path | None = None,
        generate: Mapping[str, Any] | None = None,
        **inputs: Sequence[Any] | None,
    ) -> list[dict[str, Any]]:
        """Predictions of ``task`` (default: the only exported task) on raw inputs:
        :meth:`process`, :meth:`run`, and for video tasks write the clips to ``out_dir``.

        Args:
            task: an exported task.
            top_k: candidates per ``[MASK]`` (mlm).
            out_dir: where generated clips are written (video tasks).
            generate: video sampling overrides; only ``temperature=0`` (greedy, the only
                exported sampling) and ``guidance`` are accepted.
            inputs: raw inputs per modality, one list entry per sample.

        Raises:
            InferenceError: an unknown task, missing or unexpected inputs, unsupported options.
        """
        name = self._find(task)
        if self.manifest["tasks"][name]["type"] in VIDEO_TYPES and out_dir is None:
            raise InferenceError(f"task {name!r} writes clips; pass an output directory (out_dir)")
        predictions = self.run(name, self.process(name, **inputs), top_k, generate)
        if out_dir is not None and any("frames" in p for p in predictions):
            return write_clips(np.stack([p["frames"] for p in predictions]), Path(out_dir))
        return predictions

    def process(self, task: str | None = None, **inputs: Sequence[Any] | None) -> Feeds:
        """Raw inputs -> the graphs' numpy inputs (``"modality.key"``). This is where torch is
        still used: the run's processors, and a masked-modelling task's random patch mask.

        Raises:
            InferenceError: an unknown task, missing or unexpected inputs.
        """
        name = self._find(task)
        meta = self.manifest["tasks"][name]
        given = {m: list(v) for m, v in inputs.items() if v is not None}
        feeds = self._feeds(name, meta, given)
        if meta["type"] == "masked_modeling":
            from omnifuse.export.specs import image_token_mask  # torch's generator (see above)

            batch = feeds["image.pixel_values"].shape[0]
            ratio, seed = float(meta["mask_ratio"]), int(meta["mask_seed"])
            mask = image_token_mask(batch, int(meta["num_patches"]), ratio, seed)
            feeds["image.token_mask"] = mask.numpy()
        return feeds

    def run(
        self,
        task: str,
        feeds: Mapping[str, Array],
        top_k: int = 5,
        generate: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Run the graphs of ``task`` on processed ``feeds`` (from :meth:`process`) and
        post-process with numpy; never calls torch. Video tasks give ``frames`` arrays
        ``[T, 3, H, W]`` per prompt (``predict`` writes them)."""
        name = self._find(task)
        meta = self.manifest["tasks"][name]
        kind = meta["type"]
        if kind in ("classification", "matching"):
            probs = self.session(name, "probabilities").run(None, dict(feeds))[0]
            return [class_prediction(row, meta["class_names"]) for row in probs]
        if kind == "contrastive":
            return self._embed(name, meta, feeds)
        if kind == "mlm":
            return self._fill_mask(name, meta, feeds, top_k)
        if kind == "masked_modeling":
            return self._reconstruct(name, feeds)
        if kind == "captioning":
            return self._caption(name, meta, feeds)
        return [{"frames": clip} for clip in self._frames(name, feeds, generate or {})]

    def _find(self, task: str | None) -> str:
        tasks = self.manifest["tasks"]
        if task is None and len(tasks) == 1:
            return str(next(iter(tasks)))
        if task is None or task not in tasks:
            listing = ", ".join(f"{n} ({t['type']})" for n, t in tasks.items()) or "none"
            skipped = self.manifest.get("skipped", {})
            why = f"; not exported: {task}: {skipped[task]}" if task in skipped else ""
            raise InferenceError(f"unknown task {task!r}; exported tasks: {listing}{why}")
        return task

    def _feeds(
        self, name: str, meta: Mapping[str, Any], given: Mapping[str, list[Any]]
    ) -> dict[str, Array]:
        """Processed inputs as ``"modality.key"`` numpy arrays (the graphs' input names)."""
        wanted = list(meta["inputs"])
        extra = sorted(set(given) - set(wanted))
        # Contrastive embeds either modality alone; the other graphs take all of their inputs.
        missing = [] if meta["type"] == "contrastive" else [m for m in wanted if m not in given]
        if extra or missing or not given:
            problems = [f"it does not read {m}" for m in extra] + [
                f"missing input {m}" for m in missing
            ]
            reason = "; ".join(problems) or "no input given"
            raise InferenceError(
                f"exported task {name!r} reads {', '.join(wanted)}: {reason} (an exported fused "
                "task needs every one of its inputs)"
            )
        feeds: dict[str, Array] = {}
        for modality in sorted(given):
            if len(given[modality]) == 0:
                raise InferenceError(f"{modality}: got an empty list; pass at least one sample")
            batch = self.processors[modality](given[modality])
            feeds |= {f"{modality}.{key}": value.numpy() for key, value in batch.items()}
        return feeds

    def _embed(
        self, name: str, meta: Mapping[str, Any], feeds: Mapping[str, Array]
    ) -> list[dict[str, Any]]:
        embeddings: dict[str, Array] = {}
        for modality in (meta["a"], meta["b"]):
            own = {k: v for k, v in feeds.items() if k.startswith(f"{modality}.")}
            if own:
                embeddings[modality] = self.session(name, modality).run(None, own)[0]
        both = len(embeddings) == 2
        similarity = (embeddings[meta["a"]] * embeddings[meta["b"]]).sum(axis=-1) if both else None
        rows = next(iter(embeddings.values())).shape[0]
        return [
            {"embeddings": {m: e[i].tolist() for m, e in embeddings.items()}}
            | ({} if similarity is None else {"similarity": float(similarity[i])})
            for i in range(rows)
        ]

    def _fill_mask(
        self, name: str, meta: Mapping[str, Any], feeds: Mapping[str, Array], top_k: int
    ) -> list[dict[str, Any]]:
        if top_k < 1:
            raise InferenceError(f"top_k={top_k} must be >= 1")
        logits = self.session(name, "logits").run(None, dict(feeds))[0]  # (B, L, V)
        ids = feeds["text.input_ids"]
        tokenizer = self.processors["text"].tokenizer
        return [
            fill_row(ids[row], logits[row], tokenizer, int(meta["mask_id"]), top_k)
            for row in range(ids.shape[0])
        ]

    def _reconstruct(self, name: str, feeds: Mapping[str, Array]) -> list[dict[str, Any]]:
        names = ("image.pixel_values", "image.token_mask")
        mse, masked = self.session(name, "reconstruction").run(None, {n: feeds[n] for n in names})
        return [
            {"reconstruction_mse": float(m), "masked": int(c)}
            for m, c in zip(mse, masked, strict=True)
        ]

    def _caption(
        self, name: str, meta: Mapping[str, Any], feeds: Mapping[str, Array]
    ) -> list[dict[str, Any]]:
        context, context_mask = self.session(name, "encoder").run(None, dict(feeds))
        ids = GreedyIds(meta["bos_id"], meta["eos_id"], meta["pad_id"], meta["max_length"])
        tokens = greedy_decode(self.session(name, "decoder_step"), context, context_mask, ids)
        tokenizer = self.processors["text"].tokenizer
        return [{"text": text} for text in decode_texts(tokenizer, tokens, ids.eos)]

    def _frames(self, name: str, feeds: Mapping[str, Array], generate: Mapping[str, Any]) -> Array:
        meta = self.manifest["tasks"][name]
        unsupported = sorted(set(generate) - {"temperature", "guidance"})
        if unsupported or float(generate.get("temperature", 0.0)) != 0.0:
            raise InferenceError(
                f"the ONNX export of {name!r} generates greedily only (temperature=0, guidance); "
                f"got {dict(generate)} (sampling draws from torch's generator: use Pipeline)"
            )
        guidance = float(generate.get("guidance", meta["guidance"]))
        context, context_mask = self.session(name, "condition").run(None, dict(feeds))
        step = self.session(name, "prior_step")
        codes = prior_greedy(
            step, context, context_mask, meta["bos_id"], meta["num_tokens"], guidance
        )
        frames: Array = self.session(name, "decode").run(None, {"codes": codes})[0]
        return frames


def write_clips(frames: Array, out_dir: Path) -> list[dict[str, Any]]:
    """Write each clip as mp4 + gif, as ``Pipeline.predict`` does: ``{"files": [...]}`` per
    clip. The existing writer takes torch tensors, so the frames are wrapped (not computed)."""
    import torch

    from omnifuse.inference.video import check_formats
    from omnifuse.inference.video import write_clips as write

    paths = write(torch.from_numpy(frames), out_dir, check_formats(("mp4", "gif")))
    return [{"files": [str(p) for p in row]} for row in paths]


def fill_row(ids: Array, logits: Array, tokenizer: Any, mask_id: int, top_k: int) -> dict[str, Any]:
    """One text: ``ids [L]``, ``logits [L, V]`` -> its masks' top tokens and the filled text
    (as ``omnifuse.tasks.mlm.fill_row``)."""
    filled = ids.copy()
    masks = []
    for position in np.flatnonzero(ids == mask_id).tolist():
        probs = softmax(logits[position].astype(np.float64)).astype(np.float32)
        top = np.argsort(-probs, kind="stable")[:top_k]
        filled[position] = top[0]
        masks.append(
            {
                "position": position,
                "tokens": [tokenizer.decode([int(t)]) for t in top],
                "scores": [float(probs[t]) for t in top],
            }
        )
    return {"text": tokenizer.decode(filled.tolist()).strip(), "masks": masks}


def decode_texts(tokenizer: Any, tokens: Array, eos: int) -> list[str]:
    """``[B, T]`` ids -> texts cut at the first EOS (as ``omnifuse.tasks.base.decode_texts``)."""
    out = []
    for row in tokens.tolist():
        kept = row[: row.index(eos)] if eos in row else row
        out.append(tokenizer.decode(kept).strip())
    return out


def rebuild_processors(directory: Path, encoders: Mapping[str, Any]) -> dict[str, Any]:
    """The run's processors from the manifest's encoder configs and ``processors/`` assets."""
    from omnifuse.config.model import EncodersConfig, ModelConfig
    from omnifuse.models.persistence import resolve_paths
    from omnifuse.registry import build_processors

    config = EncodersConfig.model_validate(dict(encoders))
    resolve_paths(config, (directory / "processors").resolve())
    processors = build_processors(ModelConfig(encoders=config))
    for processor in processors.values():
        processor.eval()
    return processors
