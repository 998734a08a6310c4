"""Audio modality: waveform -> log-mel processor and the conv-subsampled Transformer encoder.

Importing this package registers the ``("audio", "conv_transformer")`` encoder and Hugging Face
speech towers (``("audio", "hf")``: Whisper encoder, wav2vec2, HuBERT).
"""

from omnifuse.modalities.audio.adapters import (
    WaveformHFEncoder,
    WhisperHFEncoder,
    build_audio_hf,
)
from omnifuse.modalities.audio.encoder import (
    AudioTransformer,
    ConvSubsampler,
    build_audio_transformer,
)
from omnifuse.modalities.audio.features import LogMelSpectrogram, mel_filters, spec_augment
from omnifuse.modalities.audio.processor import AudioProcessor, build_audio_processor

__all__ = [
    "AudioProcessor",
    "AudioTransformer",
    "ConvSubsampler",
    "LogMelSpectrogram",
    "WaveformHFEncoder",
    "WhisperHFEncoder",
    "build_audio_hf",
    "build_audio_processor",
    "build_audio_transformer",
    "mel_filters",
    "spec_augment",
]
