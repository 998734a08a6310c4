"""A judge of generated clips: a separately trained video classifier
(``omnifuse_experiments/configs/video-judge.yaml``).

Generated clips are scored by what the judge recognises in them: every classification task of the
judge run that reads only video is one *attribute* (its target field, e.g. ``video_colour``), and a
clip generated for a prompt is right on that attribute when the judge's label equals the prompt's
(the evaluated data's target). The judge's pooled video features of generated and real clips give
a Fréchet distance (FVD-style, with the judge as feature network). Labels are compared by class
*name*, so the judge and the generator may come from datasets whose cards order classes
differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from omnifuse.errors import InferenceError
from omnifuse.inference.pipeline import Pipeline
from omnifuse.inference.runs import task_classes
from omnifuse.tasks import ClassificationTask


@dataclass(frozen=True)
class Attribute:
    """One attribute the judge recognises.

    Attributes:
        task: the judge's classification task.
        field: its target field (what the evaluated data must label).
        classes: class names in the judge head's order.
        head: the task's classification head.
    """

    task: str
    field: str
    classes: tuple[str, ...]
    head: str


@dataclass(frozen=True)
class Verdict:
    """What the judge sees in ``B`` clips.

    Attributes:
        features: ``[B, D]`` pooled video-encoder features (on the CPU).
        labels: attribute field -> ``B`` predicted class names.
    """

    features: Tensor
    labels: dict[str, list[str]]


class Judge:
    """A loaded judge run: its video processor geometry, encoder and attribute heads.

    Args:
        pipe: the judge run, loaded.
        attributes: its video classification tasks.
    """

    def __init__(self, pipe: Pipeline, attributes: list[Attribute]) -> None:
        self.pipe, self.attributes = pipe, attributes
        config = pipe.processors["video"].config  # type: ignore[attr-defined]  # VideoProcessor
        self.num_frames, self.image_size = int(config.num_frames), int(config.image_size)
        self.mean = torch.tensor(config.mean, device=pipe.device).view(1, 1, 3, 1, 1)
        self.std = torch.tensor(config.std, device=pipe.device).view(1, 1, 3, 1, 1)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> Judge:
        """Load a judge run directory.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            InferenceError: not a run, no video encoder, no classification task over video
                alone, or class names that cannot be found (its dataset card).
        """
        try:
            pipe = Pipeline.load(path, device)
        except InferenceError as err:
            raise InferenceError(f"judge {path}: {err}") from None
        if "video" not in pipe.processors:
            raise InferenceError(f"judge {path} has no video encoder; train one with video-judge")
        attributes = [_attribute(pipe, task, path) for task in _video_classifiers(pipe)]
        if not attributes:
            raise InferenceError(
                f"judge {path} has no classification task reading only video (tasks: "
                f"{', '.join(f'{n} ({t})' for n, t in pipe.tasks.items())})"
            )
        return cls(pipe, attributes)

    def prepare(self, clips: Tensor) -> dict[str, Tensor]:
        """Clips ``[B, T, 3, H, W]`` in ``[0, 1]`` -> the judge's video input dict.

        Clips of another length or size are resampled (trilinear) to the judge's processor.
        """
        clips = clips.to(self.pipe.device, torch.float32)
        b, t, _, h, w = clips.shape
        if (t, h, w) != (self.num_frames, self.image_size, self.image_size):
            size = (self.num_frames, self.image_size, self.image_size)
            volume = F.interpolate(clips.transpose(1, 2), size=size, mode="trilinear")
            clips = volume.transpose(1, 2).clamp(0.0, 1.0)  # (B, T_j, 3, S_j, S_j)
        pixels = (clips - self.mean) / self.std
        mask = torch.ones(b, self.num_frames, dtype=torch.bool, device=self.pipe.device)
        return {"pixel_values": pixels, "frame_mask": mask}

    @torch.no_grad()
    def __call__(self, clips: Tensor) -> Verdict:
        """Features and attribute labels of clips ``[B, T, 3, H, W]`` in ``[0, 1]``."""
        model = self.pipe.model
        encoded = model.encode({"video": self.prepare(clips)})
        labels = {}
        for attribute in self.attributes:
            head = attribute.head
            logits = model.heads[head](model.features(head, encoded))  # (B, C)
            labels[attribute.field] = [attribute.classes[i] for i in logits.argmax(-1).tolist()]
        return Verdict(encoded["video"].pooled.float().cpu(), labels)

    def features(self, clips: Tensor) -> Tensor:
        """``[B, D]`` pooled features (a :data:`~omnifuse.metrics.video.FeatureExtractor`)."""
        return self(clips).features


def _video_classifiers(pipe: Pipeline) -> list[str]:
    return [
        name
        for name in pipe.tasks
        if isinstance(pipe.task(name), ClassificationTask) and pipe.task_inputs(name) == ("video",)
    ]


def _attribute(pipe: Pipeline, name: str, path: str | Path) -> Attribute:
    task = pipe.task(name)
    if not isinstance(task, ClassificationTask):
        raise InferenceError(f"judge {path}: task {name!r} is not a classification task")
    if task.class_names is None:
        reason = task_classes(pipe.config, name, task.num_classes).reason
        raise InferenceError(f"judge {path}: class names of task {name!r}: {reason}")
    return Attribute(name, task.target_field, task.class_names, task.head)
