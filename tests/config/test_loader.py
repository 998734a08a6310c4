"""Config loading, overrides and the error messages users see."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from omnifuse.config import ConfigError, RunConfig, apply_overrides, list_presets, load_config
from omnifuse.config.docs import render_config_docs

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def minimal() -> dict[str, object]:
    return {"model": {"encoders": {"text": {"type": "transformer", "dim": 32, "num_heads": 2}}}}


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_validates(name: str) -> None:
    config = load_config(name)
    assert isinstance(config, RunConfig)
    assert config.model.encoders.configured()


def test_presets_exist() -> None:
    assert {"tiny", "small", "base", "dual-encoder", "perceiver"} <= set(list_presets())


def test_overrides_are_parsed_as_yaml() -> None:
    config = load_config(
        "tiny", ["model.fusion.type=hybrid", "model.fusion.num_queries=3", "training.lr=0.01"]
    )
    assert config.model.fusion.type == "hybrid"
    assert config.model.fusion.num_queries == 3  # type: ignore[union-attr]
    assert config.training.lr == pytest.approx(0.01)


def test_override_creates_nested_sections() -> None:
    data = apply_overrides({}, ["a.b.c=1", "a.b.d=[1, 2]"])
    assert data == {"a": {"b": {"c": 1, "d": [1, 2]}}}


@pytest.mark.parametrize("bad", ["novalue", "=3", "a..b=1"])
def test_malformed_override(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"must look like 'section\.field=value'"):
        apply_overrides({}, [bad])


def test_unknown_key_names_path_and_suggests(tmp_path: Path) -> None:
    data = minimal()
    data["model"]["encoders"]["text"]["nmu_layers"] = 3  # type: ignore[index]
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    message = str(info.value)
    assert "model.encoders.text.nmu_layers: unknown key (did you mean 'num_layers'?)" in message
    assert "valid keys:" in message and "tokenizer" in message


def test_bad_choice_lists_valid_choices(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"model\.fusion\.type: 'hybird' is not a valid choice; "
        r"valid choices: 'concat', 'parallel', 'hybrid'",
    ):
        load_config(write(tmp_path, minimal()), ["model.fusion.type=hybird"])


def test_bad_literal_lists_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"training\.precision: 'fp16' is not a valid choice"):
        load_config(write(tmp_path, minimal()), ["training.precision=fp16"])


def test_wrong_type_names_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.encoders\.text\.dim: .*integer.*'wide'"):
        load_config(write(tmp_path, minimal()), ["model.encoders.text.dim=wide"])


def test_inconsistent_widths(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"model\.encoders\.text: dim=30 must be divisible by num_heads=4"
    ):
        load_config(
            write(tmp_path, minimal()),
            ["model.encoders.text.dim=30", "model.encoders.text.num_heads=4"],
        )


def test_patch_size_must_divide_image(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"image_size=64 must be a multiple of patch_size=7"):
        load_config(write(tmp_path, minimal()), ["model.encoders.image.patch_size=7"])


def test_head_source_must_be_configured(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"heads\.h\.source='audio' is not a configured encoder"):
        load_config(
            write(tmp_path, minimal()),
            [
                "model.heads.h.type=classification",
                "model.heads.h.num_classes=3",
                "model.heads.h.source=audio",
            ],
        )


def test_task_must_use_existing_head(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tasks\.t\.head='nope' is not in model\.heads"):
        load_config(write(tmp_path, minimal()), ["tasks.t.head=nope"])


def test_unknown_task_key_suggests_the_field() -> None:
    with pytest.raises(
        ConfigError, match=r"tasks\.t\.tagret: unknown key \(did you mean 'target'\?\)"
    ):
        load_config("tiny", ["tasks.t.head=classify", "tasks.t.tagret=label"])


def test_no_encoder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configure at least one of audio, image, text, video"):
        load_config(write(tmp_path, {"model": {"encoders": {}}}))


def test_missing_file_and_unknown_preset(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"neither a YAML file nor a preset.*did you mean 'tiny'"):
        load_config("tiyn")


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="YAML syntax error"):
        load_config(path)


def test_config_docs_are_current() -> None:
    """docs/config.md is generated from the schema; regenerate with `make docs`."""
    assert (ROOT / "docs" / "config.md").read_text() == render_config_docs()


def test_config_docs_cover_every_section() -> None:
    text = render_config_docs()
    for name in ("RunConfig", "ViTConfig", "HybridFusionConfig", "TokenizerConfig", "DataConfig"):
        assert f"## {name}" in text
