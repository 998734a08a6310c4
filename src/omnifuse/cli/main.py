"""The ``omnifuse`` command line. Each command is a typed function; its docstring is its help.

Every command is wrapped by :func:`omnifuse.cli.errors.cli_errors`: user mistakes (bad config,
missing file) print one clear message and exit with status 2, broken data with status 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from torch import nn

from omnifuse.cli.chat import chat as chat_command
from omnifuse.cli.convert import app as convert_app
from omnifuse.cli.data import app as data_app
from omnifuse.cli.errors import cli_errors
from omnifuse.cli.evaluate import evaluate as eval_command
from omnifuse.cli.export import export as export_command
from omnifuse.cli.plugins import add_plugin_commands
from omnifuse.cli.predict import predict as predict_command
from omnifuse.cli.serve import serve as serve_command
from omnifuse.cli.train import train as train_command
from omnifuse.config import dump_config, list_presets, load_config

app = typer.Typer(
    name="omnifuse",
    help="Build, train, evaluate and serve multimodal models from one validated config.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Validate and inspect YAML configs.", no_args_is_help=True)
model_app = typer.Typer(help="Build, inspect and save models.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(model_app, name="model")
app.add_typer(data_app, name="data")
app.add_typer(convert_app, name="convert")
app.command("predict")(predict_command)
app.command("eval")(eval_command)
app.command("train")(train_command)
app.command("export")(export_command)
app.command("chat")(chat_command)
app.command("serve")(serve_command)

out = Console(soft_wrap=True)

ConfigArg = Annotated[str, typer.Argument(help="YAML config file or preset name.")]
OverridesArg = Annotated[
    list[str] | None, typer.Argument(help="Dotted overrides, e.g. model.fusion.type=hybrid")
]


@config_app.command("validate")
@cli_errors
def config_validate(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Validate CONFIG (+ overrides); exit 0 if valid, 2 with the problems otherwise."""
    run = load_config(config, overrides or [])
    modalities = ", ".join(run.model.encoders.configured())
    out.print(
        f"[green]valid[/]: {config} (encoders: {modalities}; fusion: {run.model.fusion.type}; "
        f"heads: {', '.join(sorted(run.model.heads)) or 'none'})"
    )


@config_app.command("show")
@cli_errors
def config_show(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Print the fully resolved config (defaults filled in, overrides applied) as YAML."""
    print(dump_config(load_config(config, overrides or [])), end="")


@config_app.command("docs")
@cli_errors
def config_docs() -> None:
    """Print the Markdown reference of every config field (the source of docs/config.md)."""
    from omnifuse.config.docs import render_config_docs

    print(render_config_docs(), end="")


@app.command("info")
@cli_errors
def info() -> None:
    """List registered encoders, fusions, heads and presets."""
    from omnifuse.registry import list_encoders, list_fusions, list_heads

    table = Table(title="omnifuse components")
    for column in ("kind", "name", "description"):
        table.add_column(column)
    for spec in list_encoders():
        table.add_row("encoder", f"{spec.modality}/{spec.type}", spec.description)
    for name, text in list_fusions().items():
        table.add_row("fusion", name, text)
    for name, text in list_heads().items():
        table.add_row("head", name, text)
    for name in list_presets():
        table.add_row("preset", name, "omnifuse.create_model(" + repr(name) + ")")
    out.print(table)


@model_app.command("summary")
@cli_errors
def model_summary(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Build the model of CONFIG and print parameter counts per component."""
    from omnifuse.models import create_model

    model, _ = create_model(config, overrides or [])
    table = Table(title=f"{config}: {model.num_parameters():,} parameters")
    table.add_column("component")
    table.add_column("parameters", justify="right")
    parts: dict[str, nn.Module] = {f"encoders.{m}": model.encoder(m) for m in model.modalities}
    parts["fusion"] = model.fusion
    parts.update({f"heads.{h}": head for h, head in model.heads.items()})
    for label, module in parts.items():
        table.add_row(label, f"{sum(p.numel() for p in module.parameters()):,}")
    out.print(table)


@model_app.command("init")
@cli_errors
def model_init(
    config: ConfigArg,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write the model to.")],
    overrides: OverridesArg = None,
) -> None:
    """Build the model of CONFIG (random init, or converted HF weights) and save it to --out."""
    from omnifuse.models import create_model, save

    run = load_config(config, overrides or [])
    model, processors = create_model(config, overrides or [])
    path = save(out_dir, model, processors, run)
    out.print(f"saved {model.num_parameters():,} parameters to {path}")


def _builtin_commands(group: typer.Typer) -> set[str]:
    """Names of the commands and groups registered on ``group`` so far."""
    names = {c.name or getattr(c.callback, "__name__", "") for c in group.registered_commands}
    return names | {g.name or "" for g in group.registered_groups}


# Last, so every built-in name is known: a plugin must not shadow one. Installed plugins are
# omnifuse_experiments' demo, study and recipe (see omnifuse.cli.plugins).
add_plugin_commands(app, _builtin_commands(app))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
