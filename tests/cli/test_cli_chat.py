"""End to end: conversations (LLaMA-Factory format) -> `omnifuse data import conversations` ->
`omnifuse train` with an `instruction` task on a tiny Qwen2-style LM -> `Pipeline.predict`,
`omnifuse eval` and `omnifuse chat` on the saved run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lm_helpers import lm_run_config, write_conversations
from omnifuse.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def trained_run(tiny_lm_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lm_run")
    source = write_conversations(root / "source")
    args = ["data", "import", "conversations", str(source), "--out", str(root / "data")]
    imported = runner.invoke(app, [*args, "--val-fraction", "0", "--copy"])
    assert imported.exit_code == 0, imported.output
    checked = runner.invoke(app, ["data", "check", str(root / "data")])
    assert checked.exit_code == 0, checked.output
    config = lm_run_config(tiny_lm_dirs["qwen2"], kind="chat")
    config["data"] = {
        "train": str(root / "data" / "train.jsonl"),
        "val": str(root / "data" / "train.jsonl"),
        "batch_size": 2,
        "augment": False,
    }
    config["training"] = {"max_steps": 3, "lr": 1e-3, "progress_bar": False}
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run_dir = root / "run"
    trained = runner.invoke(app, ["train", str(path), "--run-dir", str(run_dir)])
    assert trained.exit_code == 0, trained.output
    assert "trained 3 steps" in trained.output
    return run_dir


def test_conversations_import_as_a_messages_manifest(tmp_path: Path) -> None:
    source = write_conversations(tmp_path / "source")
    turns = [{"role": "user", "content": "<image><image>two"}]
    extra = {"messages": [*turns, {"role": "assistant", "content": "yes"}]}
    extra |= {"images": ["red.png", "blue.png"]}
    with source.open("a") as handle:
        handle.write(json.dumps(extra) + "\n")
    result = runner.invoke(
        app, ["data", "import", "conversations", str(source), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert "left out 1 rows with more than one image" in result.output
    rows = [
        json.loads(line)
        for line in (tmp_path / "out" / "train.jsonl").read_text().split("\n")
        if line
    ]
    rows += (
        [
            json.loads(line)
            for line in (tmp_path / "out" / "val.jsonl").read_text().split("\n")
            if line
        ]
        if (tmp_path / "out" / "val.jsonl").exists()
        else []
    )
    by_id = {row["id"]: row for row in rows}
    assert set(by_id) == {"red", "blue"}
    assert by_id["red"]["image"] == "../source/red.png"
    assert by_id["red"]["messages"][1] == {"role": "assistant", "content": "a red square"}
    card = yaml.safe_load((tmp_path / "out" / "card.yaml").read_text())
    assert card["fields"]["messages"]["type"] == "messages"


def test_malformed_conversations_name_the_line(tmp_path: Path) -> None:
    source = tmp_path / "c.jsonl"
    source.write_text(json.dumps({"messages": [{"role": "bot", "content": "x"}]}) + "\n")
    result = runner.invoke(
        app, ["data", "import", "conversations", str(source), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code != 0 and "c.jsonl:1" in result.output and "'bot'" in result.output


@pytest.mark.slow
def test_trained_run_predicts_evaluates_and_chats(trained_run: Path, tmp_path: Path) -> None:
    from omnifuse.inference import Pipeline

    pipe = Pipeline.load(trained_run, device="cpu")
    image = str(tmp_path / "red.png")
    from lm_helpers import write_image

    write_image(Path(image), (220, 30, 30))
    rows = pipe.predict("chat", image=[image, image], text=["describe the input", "hi"])
    assert len(rows) == 2 and all(isinstance(r["text"], str) for r in rows)
    assert pipe.answer([image], ["describe the input"]) == [rows[0]["text"]]
    default = pipe.predict("chat", image=[image])  # the configured prompt
    assert isinstance(default[0]["text"], str)
    evaluated = runner.invoke(app, ["eval", str(trained_run), "--split", "val", "--no-plots"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "exact_match" in evaluated.output
    session = runner.invoke(
        app,
        ["chat", str(trained_run), "--max-length", "4"],
        input=f"/image {image}\ndescribe the input\nwhat colour is it\n/image nope.png\n/exit\n",
    )
    assert session.exit_code == 0, session.output
    assert session.output.count("assistant:") == 2
    assert "[attached image:" in session.output and "[no such file: nope.png]" in session.output
