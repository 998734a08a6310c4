"""Video processor: file (decoded with PyAV) or uint8 ``[T, H, W, 3]`` array -> sampled frames.

``num_frames`` frames are sampled uniformly (the centre of each of ``num_frames`` equal
segments, as in TSN); a shorter clip keeps all its frames and is padded at collate time with
``frame_mask`` False. Every frame goes through the image :class:`FrameTransform`, with one
augmentation draw per clip so that all frames of a clip are cropped/flipped alike.

Memory: frames are decoded in order and only the sampled ones are converted and kept (already
resized), and decoding stops after the last sampled frame.

Speed (a clip costs about one training step of a small model, so it matters; profile in
docs/benchmarks.md): the container is opened once for its metadata and its frames; small frames
are decoded on one codec thread (a thread pool per clip costs more CPU than it saves, and
DataLoader workers already decode clips in parallel); frames are converted to RGB by one
reused libswscale context per thread (``frame.to_image()`` builds a new one for every frame,
which cost more than decoding the frame; same pixels); the float conversion and normalisation
run once per clip on the stacked frames instead of once per frame.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from PIL import Image
from torch import Tensor

from omnifuse.config.video import TubeletViTConfig, VideoProcessorConfig
from omnifuse.modalities.base import MediaError, Processor
from omnifuse.modalities.image.processor import ARRAY_SOURCE, image_from_array
from omnifuse.modalities.image.transforms import (
    AugmentParams,
    FrameTransform,
    to_rgb,
    to_tensor,
)

FrameT = TypeVar("FrameT")

FrameFn = Callable[[Image.Image], FrameT]
"""One decoded RGB frame -> what the caller keeps of it (the processor: the resized, cropped
frame as a uint8 ``[S, S, 3]`` array)."""

THREADED_PIXELS = 640 * 480
"""Frames of at least this many pixels are decoded with FFmpeg's frame/slice threads; smaller
ones on one thread (below this the pool's start-up per clip costs more CPU than it saves)."""


_local = threading.local()


def _reformatter() -> VideoReformatter:
    """This thread's reformatter, made anew in a forked child (DataLoader workers): one
    inherited from the parent would hold the parent's libswscale state."""
    held: tuple[int, VideoReformatter] | None = getattr(_local, "held", None)
    if held is None or held[0] != os.getpid():
        held = _local.held = (os.getpid(), VideoReformatter())
    return held[1]


def _to_rgb_array(frame: Any) -> np.ndarray[Any, Any]:
    """A decoded frame as uint8 RGB ``[H, W, 3]``, through this thread's reformatter (it keeps
    its libswscale context while the frame size and format stay the same). One thread: a
    libswscale slice-thread pool costs more than it saves on small frames, and its threads
    would not survive a fork."""
    rgb = _reformatter().reformat(frame, format="rgb24", threads=1)
    return np.asarray(rgb.to_ndarray())


def uniform_indices(total: int, num: int) -> list[int]:
    """``num`` frame indices spread uniformly over ``total`` frames (segment centres).

    A clip with ``total <= num`` frames keeps all of them. Example: 12 frames, 8 samples ->
    ``[0, 2, 3, 5, 6, 8, 9, 11]``.
    """
    if total <= num:
        return list(range(total))
    return [((2 * k + 1) * total) // (2 * num) for k in range(num)]


def _open(path: Path) -> Any:
    """An open PyAV container and its first video stream (container must be closed)."""
    if path.is_dir():
        raise MediaError(path, "is a directory, not a video file")
    if not path.is_file():
        raise MediaError(path, "file not found")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise MediaError(path, f"cannot open video: {err}") from None
    if not container.streams.video:
        container.close()
        raise MediaError(path, "no video stream in file")
    return container


def metadata_frames(stream: Any) -> int:
    """The frame count a stream's container metadata states (0 when it states none)."""
    return max(0, int(stream.frames))


def count_frames(path: Path) -> int:
    """Frames in the first video stream: container metadata, else a demux-only packet count."""
    with _open(path) as container:
        stream = container.streams.video[0]
        if metadata_frames(stream) > 0:
            return metadata_frames(stream)
        try:  # e.g. WebM/MKV carry no frame count; demuxing is cheap, decoding is not
            return sum(1 for packet in container.demux(stream) if packet.size > 0)
        except av.error.FFmpegError as err:
            raise MediaError(path, f"cannot read video packets: {err}") from None


def _decode_from(
    container: Any, path: Path, indices: Sequence[int], frame_fn: FrameFn[FrameT]
) -> tuple[list[FrameT], int]:
    """The frames at ``indices`` of an open container through ``frame_fn``, and how many
    frames were decoded (decoding stops after the last index)."""
    wanted, last = set(indices), max(indices, default=-1)
    frames: list[FrameT] = []
    decoded = 0
    stream = container.streams.video[0]
    width, height = _size(stream)
    if width * height < THREADED_PIXELS:
        stream.thread_count = 1
    else:
        stream.thread_type = "AUTO"
    try:
        for frame in container.decode(stream):
            if decoded in wanted:
                frames.append(frame_fn(Image.fromarray(_to_rgb_array(frame))))
            decoded += 1
            if decoded > last:
                break
    except av.error.FFmpegError as err:
        raise MediaError(path, f"cannot decode video frame {decoded}: {err}") from None
    return frames, decoded


def _decode(
    path: Path, indices: Sequence[int], frame_fn: FrameFn[FrameT]
) -> tuple[list[FrameT], int]:
    """Transform the frames at ``indices``; also return how many frames were decoded."""
    with _open(path) as container:
        return _decode_from(container, path, indices, frame_fn)


@dataclass(frozen=True)
class VideoLimits:
    """Bounds checked from a video's metadata before any frame is decoded.

    Attributes:
        max_frames: most frames the stream may hold (``video.processor.max_frames``).
        max_resolution: most pixels of a frame's width or height
            (``video.processor.max_resolution``).
    """

    max_frames: int | None = None
    max_resolution: int | None = None

    def check_size(self, path: Path, width: int, height: int) -> None:
        """Refuse frames larger than ``max_resolution`` (names the limit and the size)."""
        if self.max_resolution is not None and max(width, height) > self.max_resolution:
            raise MediaError(
                path,
                f"video frames are {width}x{height}, larger than video.processor.max_resolution="
                f"{self.max_resolution}; refused before decoding (downscale it or raise the limit)",
            )

    def check_frames(self, path: Path, total: int) -> None:
        """Refuse streams of more than ``max_frames`` frames."""
        if self.max_frames is not None and total > self.max_frames:
            raise MediaError(
                path,
                f"video has {total:,} frames, more than video.processor.max_frames="
                f"{self.max_frames:,}; refused before decoding (trim it or raise the limit)",
            )


def _size(stream: Any) -> tuple[int, int]:
    """``(width, height)`` of a video stream from its metadata (nothing decoded); 0 when the
    metadata does not say."""
    # A damaged header can leave no codec context: size unknown (0), decoding then fails with
    # its own error.
    context = stream.codec_context
    return int(getattr(context, "width", 0) or 0), int(getattr(context, "height", 0) or 0)


def decode_video(
    path: str | Path, num_frames: int, frame_fn: FrameFn[FrameT], limits: VideoLimits | None = None
) -> list[FrameT]:
    """Uniformly sample up to ``num_frames`` frames of a video file, each through ``frame_fn``.

    Raises:
        MediaError: missing file, no video stream, a stream over ``limits``, undecodable data
            or no frames.
    """
    path = Path(path)
    limits = VideoLimits() if limits is None else limits
    with _open(path) as container:  # one open for the metadata checks and the frames
        stream = container.streams.video[0]
        limits.check_size(path, *_size(stream))
        # Without a stated count, count packets in a second open: demuxing here would consume
        # the stream before its frames are decoded.
        total = metadata_frames(stream) or count_frames(path)
        limits.check_frames(path, total)
        indices = uniform_indices(total, num_frames)
        frames, decoded = _decode_from(container, path, indices, frame_fn)
    if len(frames) < len(indices) and decoded > 0:
        # The metadata promised more frames than the stream holds: sample the real count.
        frames, _ = _decode(path, uniform_indices(decoded, num_frames), frame_fn)
    if not frames:
        raise MediaError(path, "video has no decodable frames")
    return frames


def frames_from_array(
    array: np.ndarray[Any, Any],
    num_frames: int,
    frame_fn: FrameFn[FrameT],
    limits: VideoLimits | None = None,
) -> list[FrameT]:
    """Uniformly sample a uint8 ``[T, H, W, 3]`` array, each frame through ``frame_fn``."""
    if array.ndim != 4 or array.shape[0] == 0:
        raise MediaError(
            ARRAY_SOURCE, f"video array shape is {array.shape}; expected [T, H, W, 3] with T > 0"
        )
    limits = VideoLimits() if limits is None else limits
    limits.check_size(Path(ARRAY_SOURCE), array.shape[2], array.shape[1])
    limits.check_frames(Path(ARRAY_SOURCE), array.shape[0])
    indices = uniform_indices(array.shape[0], num_frames)
    return [frame_fn(image_from_array(array[i])) for i in indices]


class VideoProcessor(Processor[Tensor]):
    """Raw videos -> ``{"pixel_values": [B, T, 3, S, S], "frame_mask": [B, T]}``.

    ``load`` returns ``[t, 3, S, S]`` with ``t <= num_frames``; ``collate`` pads to
    ``T = num_frames`` with zero frames marked False in ``frame_mask``.

    Args:
        config: frame sampling and per-frame preprocessing settings.
        generator: source of augmentation randomness; None uses torch's global generator.
    """

    modality = "video"

    def __init__(
        self, config: VideoProcessorConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.num_frames = config.num_frames
        self.limits = VideoLimits(config.max_frames, config.max_resolution)
        self.generator = generator
        self.transform = FrameTransform(config)

    @property
    def augmenting(self) -> bool:
        """Whether :meth:`load` applies random augmentation now."""
        return self.training and self.config.augment.enabled

    def _clip_transform(self) -> tuple[FrameFn[np.ndarray[Any, Any]], list[AugmentParams]]:
        """A frame function (the geometric transform, to uint8 ``[S, S, 3]``) that draws
        augmentation once, at the clip's first frame, into the returned list."""
        drawn: list[AugmentParams] = []

        def apply(image: Image.Image) -> np.ndarray[Any, Any]:
            image = to_rgb(image)
            if self.augmenting and not drawn:
                drawn.append(self.transform.sample(image.width, image.height, self.generator))
            return np.asarray(self.transform.geometry(image, drawn[0] if drawn else None))

        return apply, drawn

    def load(self, raw: str | Path | np.ndarray[Any, Any]) -> Tensor:
        """One video (path or uint8 ``[T, H, W, 3]`` array) -> ``[t, 3, S, S]``, t <= num_frames.

        Raises:
            MediaError: the input cannot be decoded (names the path).
        """
        frame_fn, drawn = self._clip_transform()
        if isinstance(raw, str | Path):
            frames = decode_video(raw, self.num_frames, frame_fn, self.limits)
        elif isinstance(raw, np.ndarray):
            frames = frames_from_array(raw, self.num_frames, frame_fn, self.limits)
        else:
            raise TypeError(
                f"cannot load a video from {type(raw).__name__}; "
                "valid inputs: a path or a uint8 [T, H, W, 3] numpy array"
            )
        # One float conversion and normalisation for the clip: [t, S, S, 3] -> [t, 3, S, S].
        return self.transform.finish(to_tensor(np.stack(frames)), drawn[0] if drawn else None)

    def collate(self, samples: Sequence[Tensor]) -> dict[str, Tensor]:
        """``[t_i, 3, S, S]`` clips -> padded ``pixel_values`` ``[B, T, 3, S, S]`` and
        ``frame_mask`` ``[B, T]`` (True at real frames), ``T = num_frames``."""
        if len(samples) == 0:
            raise ValueError("cannot collate an empty list of videos")
        frame_shapes = {tuple(s.shape[1:]) for s in samples}
        if len(frame_shapes) > 1:
            raise ValueError(f"video frames have different shapes {sorted(frame_shapes)}")
        longest = max(s.shape[0] for s in samples)
        if longest > self.num_frames:
            raise ValueError(f"a clip has {longest} frames; at most num_frames={self.num_frames}")
        pixels = samples[0].new_zeros((len(samples), self.num_frames, *frame_shapes.pop()))
        mask = torch.zeros(len(samples), self.num_frames, dtype=torch.bool)
        for i, clip in enumerate(samples):
            pixels[i, : clip.shape[0]] = clip
            mask[i, : clip.shape[0]] = True
        return {"pixel_values": pixels, "frame_mask": mask}


def build_video_processor(config: TubeletViTConfig) -> VideoProcessor:
    """The processor of a video encoder config."""
    return VideoProcessor(config.processor)
