"""A task type added from outside the package (``examples/ordinal_task.py``) works everywhere:
config validation and errors, training loss, ``Pipeline.predict``, evaluation and the CLI's
task listing — with no change to omnifuse. This is the worked example of docs/architecture.md."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
import yaml

import omnifuse
from omnifuse.config import ConfigError, load_config
from omnifuse.evaluation import EvalOptions, evaluate
from omnifuse.inference import Pipeline
from omnifuse.tasks import build_tasks, list_tasks

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ordinal_task.py"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))

from tiny_run import one_thread  # noqa: E402


@pytest.fixture(scope="module")
def ordinal() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("ordinal_task", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ordinal_task"] = module  # as `import ordinal_task` would (pydantic needs it)
    spec.loader.exec_module(module)
    yield module
    # Other tests list the built-in task types exactly: take the example out again.
    from omnifuse.config import tasks as task_configs
    from omnifuse.tasks import base

    base._TASKS.pop("ordinal")
    task_configs._TASK_CONFIGS.pop("ordinal")
    sys.modules.pop("ordinal_task")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from omnifuse.datasets import make

    root = tmp_path_factory.mktemp("ordinal") / "data"
    make("shapesworld", root, size=12, seed=0, workers=1, progress=False)
    return root


def overrides(data: Path) -> list[str]:
    return [
        "model.encoders.video=null",
        "model.heads={shape: {type: classification, num_classes: 6, source: image}}",
        "tasks={rank: {type: ordinal, head: shape, target: label, distance_weight: 0.5}}",
        f"data.train={data}/train.jsonl",
        f"data.val={data}/val.jsonl",
        "data.batch_size=4",
    ]


def test_the_config_validates_and_names_mistakes(ordinal: ModuleType) -> None:
    assert list_tasks()["ordinal"].startswith("Ordinal regression")
    run = load_config("tiny", ["tasks.rank={type: ordinal, head: classify}"])
    assert isinstance(run.tasks["rank"], ordinal.OrdinalTaskConfig)
    with pytest.raises(ConfigError, match=r"tasks\.rank\.distance_weight"):
        load_config("tiny", ["tasks.rank={type: ordinal, head: classify, distance_weight: -1}"])
    with pytest.raises(ConfigError, match=r"tasks\.rank\.head='embed' has type 'projection'"):
        load_config("tiny", ["tasks.rank={type: ordinal, head: embed}"])


def test_trains_predicts_and_is_evaluated(
    ordinal: ModuleType, data_dir: Path, tmp_path: Path
) -> None:
    with one_thread():
        run = load_config("tiny", overrides(data_dir))
        torch.manual_seed(0)
        model, processors = omnifuse.create_model("tiny", overrides(data_dir))
        task = build_tasks(run, model, processors)["rank"]
        from omnifuse.data.datamodule import OmnifuseDataModule

        batch = next(iter(OmnifuseDataModule(run.data, processors=processors).train_dataloader()))
        out = task(model, batch)
        out["loss"].backward()
        assert (
            set(out) == {"loss", "mae"}
            and model.heads["shape"].parameters().__next__().grad is not None
        )

        run_dir = tmp_path / "run"
        run_dir.mkdir()
        (run_dir / "config.yaml").write_text(yaml.safe_dump(run.model_dump(mode="json")))
        omnifuse.save(run_dir / "model", model, processors, run)
        pipe = Pipeline.load(run_dir, device="cpu")
        rows = [json.loads(line) for line in (data_dir / "val.jsonl").read_text().splitlines()]
        images = [str(data_dir / r["image"]) for r in rows]
        predictions = pipe.predict("rank", image=images)
        assert len(predictions) == len(rows)
        assert all(
            0.0 <= p["value"] <= 5.0 and p["index"] == round(p["value"]) for p in predictions
        )
        report = evaluate(run_dir, options=EvalOptions(plots=False), device="cpu")
    metrics = report["tasks"]["rank"]["metrics"]
    assert report["tasks"]["rank"]["type"] == "ordinal" and 0.0 <= metrics["mae"] <= 5.0
    assert report["tasks"]["rank"]["samples"] == len(rows)
