"""The command line: command map, help, exit codes."""

from __future__ import annotations

from pathlib import Path

from typer.main import get_command
from typer.testing import CliRunner

from omnifuse.cli.main import app

runner = CliRunner()


def test_command_map() -> None:
    group = get_command(app)
    assert {
        "config",
        "convert",
        "model",
        "info",
        "demo",
        "data",
        "predict",
        "eval",
        "train",
        "study",
        "recipe",
    } <= set(group.commands)  # type: ignore[attr-defined]


def test_every_command_has_help() -> None:
    group = get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert command.help, f"command {name!r} has no help text"
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, result.output


def test_validate_ok_and_error_exit_codes() -> None:
    ok = runner.invoke(app, ["config", "validate", "tiny"])
    assert ok.exit_code == 0 and "valid" in ok.output
    bad = runner.invoke(app, ["config", "validate", "tiny", "model.fusion.type=hybird"])
    assert bad.exit_code == 2
    assert "valid choices: 'concat', 'parallel', 'hybrid'" in bad.output
    assert "Traceback" not in bad.output


def test_missing_config_file_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "show", str(tmp_path / "x.yaml")])
    assert result.exit_code == 2 and "config file not found" in result.output


def test_show_prints_resolved_config() -> None:
    result = runner.invoke(app, ["config", "show", "tiny", "training.max_steps=7"])
    assert result.exit_code == 0
    assert "max_steps: 7" in result.output and "norm_eps" in result.output


def test_info_lists_components() -> None:
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    for name in (
        "text/transformer",
        "image/vit",
        "audio/conv_transformer",
        "video/tubelet_vit",
        "concat",
        "parallel",
        "hybrid",
        "tiny",
    ):
        assert name in result.output
