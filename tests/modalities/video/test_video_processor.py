"""VideoProcessor: PyAV decoding, uniform frame sampling, padding, augmentation, broken files."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch

from omnifuse.config.video import VideoProcessorConfig
from omnifuse.modalities.base import MediaError
from omnifuse.modalities.video import VideoProcessor, decode_video, uniform_indices
from omnifuse.modalities.video import processor as video_processor

Media = dict[str, Callable[..., Path]]
STEP = 20  # brightness step between consecutive frames of the index-coded clips


def write_index_clip(path: Path, frames: int, codec: str = "libx264", size: int = 32) -> Path:
    """A clip whose frame i is a flat grey of brightness 10 + STEP * i."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv444p" if codec == "ffv1" else "yuv420p"
        for i in range(frames):
            image = np.full((size, size, 3), 10 + STEP * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make(num_frames: int = 8, raw_pixels: bool = False, **fields: Any) -> VideoProcessor:
    if raw_pixels:  # identity normalisation: outputs are pixel values in [0, 1]
        fields = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), **fields}
    return VideoProcessor(VideoProcessorConfig(num_frames=num_frames, image_size=32, **fields))


def frame_indices(clip: torch.Tensor) -> list[int]:
    """Recover each frame's index from its brightness (see :func:`write_index_clip`)."""
    levels = clip.mean(dim=(1, 2, 3)) * 255
    return [round((float(v) - 10) / STEP) for v in levels]


def test_uniform_indices() -> None:
    assert uniform_indices(12, 8) == [0, 2, 3, 5, 6, 8, 9, 11]
    assert uniform_indices(8, 8) == list(range(8))
    assert uniform_indices(5, 8) == [0, 1, 2, 3, 4]
    assert uniform_indices(100, 4) == [12, 37, 62, 87]
    assert uniform_indices(0, 4) == []


def test_decodes_the_media_fixture_mp4(media: Media) -> None:
    clip = make().load(media["mp4"]("a.mp4", frames=12, size=32))
    assert clip.shape == (8, 3, 32, 32) and clip.dtype == torch.float32
    assert torch.isfinite(clip).all()
    # The square moves right over time: the frames are not all the same.
    assert not torch.allclose(clip[0], clip[-1])


def test_uniform_sampling_picks_expected_frames(tmp_path: Path) -> None:
    path = write_index_clip(tmp_path / "index.mp4", frames=12)
    clip = make(raw_pixels=True).load(path)
    assert frame_indices(clip) == [0, 2, 3, 5, 6, 8, 9, 11]


def test_container_without_frame_count_is_counted(tmp_path: Path) -> None:
    path = write_index_clip(tmp_path / "index.mkv", frames=12, codec="ffv1")
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # Matroska stores no frame count
    assert video_processor.count_frames(path) == 12
    assert frame_indices(make(raw_pixels=True).load(path)) == [0, 2, 3, 5, 6, 8, 9, 11]


def test_overcounted_metadata_falls_back_to_real_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_index_clip(tmp_path / "index.mp4", frames=12)
    monkeypatch.setattr(video_processor, "metadata_frames", lambda _: 20)
    assert frame_indices(make(raw_pixels=True).load(path)) == [0, 2, 3, 5, 6, 8, 9, 11]


def test_decoding_stops_after_last_sampled_frame(tmp_path: Path) -> None:
    path = write_index_clip(tmp_path / "index.mp4", frames=12)
    frames, decoded = video_processor._decode(path, [1, 3], lambda image: torch.zeros(()))
    assert len(frames) == 2 and decoded == 4


def test_short_clip_keeps_all_frames_and_is_padded(tmp_path: Path) -> None:
    short = write_index_clip(tmp_path / "short.mp4", frames=5)
    full = write_index_clip(tmp_path / "full.mp4", frames=12)
    processor = make(raw_pixels=True)
    clip = processor.load(short)
    assert clip.shape == (5, 3, 32, 32) and frame_indices(clip) == [0, 1, 2, 3, 4]
    batch = processor.collate([clip, processor.load(full)])
    assert batch["pixel_values"].shape == (2, 8, 3, 32, 32)
    assert batch["frame_mask"].dtype == torch.bool
    assert batch["frame_mask"].tolist() == [[True] * 5 + [False] * 3, [True] * 8]
    assert bool((batch["pixel_values"][0, 5:] == 0).all())
    torch.testing.assert_close(batch["pixel_values"][0, :5], clip)


def test_array_input_samples_like_files() -> None:
    frames = np.stack([np.full((20, 30, 3), 10 + STEP * i, np.uint8) for i in range(12)])
    clip = make(raw_pixels=True).load(frames)
    assert clip.shape == (8, 3, 32, 32)
    expected = torch.tensor([10 + STEP * i for i in [0, 2, 3, 5, 6, 8, 9, 11]]) / 255
    torch.testing.assert_close(clip.mean(dim=(1, 2, 3)), expected)


def test_augmentation_is_shared_by_all_frames_and_training_only() -> None:
    still = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    frames = np.stack([still] * 6)
    augment = {"enabled": True, "crop_scale": (0.3, 0.5), "hflip": True, "color_jitter": 0.3}
    processor = make(num_frames=4, augment=augment)
    reference = processor.load(frames)
    torch.testing.assert_close(processor.load(frames), reference)  # eval: deterministic
    processor.train()
    clip = processor.load(frames)
    for frame in clip[1:]:  # same crop, flip and jitter on every frame
        torch.testing.assert_close(frame, clip[0])
    assert not torch.allclose(clip[0], reference[0])


def test_seeded_generator_reproduces_augmentation() -> None:
    frames = np.random.default_rng(0).integers(0, 255, (4, 40, 48, 3), dtype=np.uint8)
    config = VideoProcessorConfig(num_frames=4, image_size=32, augment={"enabled": True})
    outs = [
        VideoProcessor(config, torch.Generator().manual_seed(3)).train().load(frames)
        for _ in range(2)
    ]
    torch.testing.assert_close(outs[0], outs[1])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="file not found") as info:
        make().load(tmp_path / "gone.mp4")
    assert info.value.source == str(tmp_path / "gone.mp4")


@pytest.mark.parametrize("content", [b"", b"this is text, not a video\n"])
def test_undecodable_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaError, match=r"bad\.mp4: cannot open video") as info:
        make().load(path)
    assert info.value.source == str(path)


def test_truncated_mp4(media: Media, tmp_path: Path) -> None:
    data = media["mp4"]("a.mp4").read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match=r"cut\.mp4"):
        make().load(path)


def test_audio_only_file_has_no_video_stream(media: Media) -> None:
    with pytest.raises(MediaError, match="no video stream"):
        make().load(media["wav"]("tone.wav"))


def test_bad_array_and_type() -> None:
    with pytest.raises(MediaError, match=r"expected \[T, H, W, 3\]"):
        make().load(np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(MediaError, match="uint8"):
        make().load(np.zeros((2, 8, 8, 3), dtype=np.float64))
    with pytest.raises(TypeError, match="valid inputs"):
        make().load(3.5)  # type: ignore[arg-type]


def test_collate_rejects_mismatched_or_too_long_clips() -> None:
    processor = make(num_frames=4)
    with pytest.raises(ValueError, match="different shapes"):
        processor.collate([torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 16, 16)])
    with pytest.raises(ValueError, match="at most num_frames=4"):
        processor.collate([torch.zeros(6, 3, 32, 32)])


def test_decode_video_function_direct(tmp_path: Path) -> None:
    path = write_index_clip(tmp_path / "index.mp4", frames=6)
    frames = decode_video(path, 3, lambda image: torch.tensor(np.asarray(image)).float().mean())
    assert [round((float(f) - 10) / STEP) for f in frames] == [1, 3, 5]


def write_noise_clip(path: Path, frames: int = 10, width: int = 48, height: int = 40) -> Path:
    """A clip of random RGB noise: every pixel and every resize tap matters."""
    rng = np.random.default_rng(3)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(frames):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def reference_clip(path: Path, processor: VideoProcessor, params: Any = None) -> torch.Tensor:
    """The straightforward computation: decode every frame with ``to_image``, keep the uniform
    indices, transform each frame on its own (resize, crop, to float, jitter, normalise)."""
    with av.open(str(path)) as container:
        images = [frame.to_image() for frame in container.decode(video=0)]
    indices = uniform_indices(len(images), processor.num_frames)
    return torch.stack([processor.transform(images[i], params) for i in indices])


def test_fast_path_is_bit_identical_to_the_per_frame_reference(tmp_path: Path) -> None:
    path = write_noise_clip(tmp_path / "noise.mp4")
    for num_frames, image_size, resize in ((4, 32, None), (8, 24, 36)):
        config = VideoProcessorConfig(
            num_frames=num_frames, image_size=image_size, resize_size=resize
        )
        processor = VideoProcessor(config)
        assert torch.equal(processor.load(path), reference_clip(path, processor))


def test_augmented_clip_is_bit_identical_to_the_per_frame_reference(tmp_path: Path) -> None:
    path = write_noise_clip(tmp_path / "noise.mp4")
    augment = {"enabled": True, "hflip": True, "color_jitter": 0.4}
    config = VideoProcessorConfig(num_frames=4, image_size=32, augment=augment)
    processor = VideoProcessor(config, generator=torch.Generator().manual_seed(5)).train()
    clip = processor.load(path)
    params = processor.transform.sample(48, 40, torch.Generator().manual_seed(5))
    assert params.jitter is not None  # jitter uses each frame's own grey level
    assert torch.equal(clip, reference_clip(path, processor, params))


def _load_in_child(path: Path) -> tuple[int, ...]:
    return tuple(make().load(path).shape)


def test_a_forked_worker_decodes_after_the_parent_did(tmp_path: Path) -> None:
    # DataLoader workers are forked after the main process decoded clips (e.g. an in-process
    # validation loader): the child must not reuse the parent's libswscale state, whose
    # threads do not exist in the child (it used to wait on them forever).
    path = write_noise_clip(tmp_path / "noise.mp4")
    make().load(path)  # the parent's converter now exists
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply_async(_load_in_child, (path,)).get(timeout=60) == (8, 3, 32, 32)
