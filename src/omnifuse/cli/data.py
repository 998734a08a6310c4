"""``omnifuse data``: make built-in datasets, import common layouts, write shards, check data,
write tokenizer corpora.

Exit status: 0 success; 1 the data has problems (``check`` found some, an import source or a
manifest is malformed); 2 a usage mistake (unknown name, missing path, bad option value).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from omnifuse.cli.errors import CommandError, cli_errors
from omnifuse.data.check import CheckReport, check_path
from omnifuse.data.corpus import write_corpus
from omnifuse.data.importers import ImportOptions, import_dataset
from omnifuse.data.manifest import Problem
from omnifuse.data.shards import write_shards

app = typer.Typer(
    name="data",
    help="Make, import, shard and check datasets (JSONL manifests + card.yaml).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class ImportFormat(StrEnum):
    """Source layouts ``omnifuse data import`` understands."""

    coco = "coco"
    imagefolder = "imagefolder"
    librispeech = "librispeech"
    audio_csv = "audio-csv"
    video_csv = "video-csv"
    conversations = "conversations"


@contextmanager
def _progress(label: str, total: int | None, enabled: bool = True) -> Iterator[Callable[[], None]]:
    """A rich progress bar on stderr; yields the function that advances it."""
    if not enabled:
        yield lambda: None
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda: progress.advance(task)


@app.command("make")
@cli_errors
def make(
    name: Annotated[
        str, typer.Argument(help="Built-in dataset name (see `omnifuse data make --help`).")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Output directory.")],
    size: Annotated[
        int | None, typer.Option(help="Number of samples (default: the dataset's).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
) -> None:
    """Generate built-in dataset NAME (manifests, media, card.yaml) under --out."""
    from omnifuse import datasets as builtin

    names = builtin.list_builtin()
    if name not in names:
        raise ValueError(f"unknown built-in dataset {name!r}; valid choices: {', '.join(names)}")
    try:
        card = builtin.make(name, out_dir, size=size, seed=seed, progress=True)
    except builtin.MissingResourceError as exc:  # a system package to install: usage, exit 2
        raise CommandError(str(exc)) from None
    out.print(f"[green]wrote[/] {name} to {out_dir} (card: {card})")


@app.command("import")
@cli_errors
def import_(
    fmt: Annotated[ImportFormat, typer.Argument(metavar="FORMAT", help="Source layout.")],
    src: Annotated[Path, typer.Argument(help="Captions JSON, CSV file or source directory.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output dataset directory.")],
    media_root: Annotated[
        Path | None,
        typer.Option(
            help="Directory media paths are relative to (coco, *-csv, conversations; "
            "default: SRC's dir)."
        ),
    ] = None,
    val_fraction: Annotated[float, typer.Option(help="Share of groups put in val.jsonl.")] = 0.1,
    test_fraction: Annotated[float, typer.Option(help="Share of groups put in test.jsonl.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the deterministic split.")] = 0,
    copy: Annotated[bool, typer.Option("--copy", help="Copy media into --out.")] = False,
    name: Annotated[str | None, typer.Option(help="Dataset name in the card.")] = None,
) -> None:
    """Import SRC in FORMAT as manifests + card.yaml (media referenced in place unless --copy)."""
    options = ImportOptions(val_fraction, test_fraction, seed, copy, name)
    summary = import_dataset(fmt.value, src, out_dir, media_root, options)
    sizes = ", ".join(f"{split}: {n}" for split, n in summary.splits.items())
    out.print(f"[green]imported[/] {fmt.value} from {src} -> {summary.card.parent} ({sizes})")
    if not copy:
        out.print(
            "media are referenced outside the dataset directory: train with "
            "data.allow_outside_root: true and check with --allow-outside-root (or use --copy)"
        )
    for reason, count in summary.skipped.items():
        out.print(f"[yellow]left out[/] {count} {reason}")


@app.command("shard")
@cli_errors
def shard(
    manifest: Annotated[Path, typer.Argument(help="JSONL manifest to pack.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output shard directory.")],
    shard_size: Annotated[int, typer.Option(help="Samples per tar shard.")] = 1000,
    allow_outside_root: Annotated[
        bool, typer.Option(help="Pack media paths that resolve outside the manifest's dir.")
    ] = False,
) -> None:
    """Pack MANIFEST and its media into WebDataset tar shards + index.json + card.yaml."""
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest not found: {manifest}")
    with _progress("sharding", None) as advance:
        index = write_shards(
            manifest, out_dir, shard_size, on_sample=advance, allow_outside_root=allow_outside_root
        )
    out.print(
        f"[green]wrote[/] {index.num_samples} samples in {len(index.shards)} shard(s) to {out_dir}"
    )


@app.command("corpus")
@cli_errors
def corpus(
    manifest: Annotated[Path, typer.Argument(help="JSONL manifest to read.")],
    out_file: Annotated[Path, typer.Option("--out", help="Text file to write.")],
    field: Annotated[list[str], typer.Option(help="Text field(s) to include (repeat the option).")],
) -> None:
    """Write the texts of MANIFEST's --field(s), one per line, for a tokenizer to train on
    (``model.encoders.text.tokenizer.corpus``)."""
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest not found: {manifest}")
    lines = write_corpus(manifest, field, out_file)
    out.print(f"[green]wrote[/] {lines} lines to {out_file}")


@app.command("check")
@cli_errors
def check(
    path: Annotated[
        Path, typer.Argument(help="A manifest (.jsonl), a shard dir or a dataset dir.")
    ],
    media: Annotated[
        bool, typer.Option(help="Open every media file (--no-media: existence only).")
    ] = True,
    show: Annotated[int, typer.Option(help="Examples listed per problem kind.")] = 3,
    allow_outside_root: Annotated[
        bool, typer.Option(help="Accept media paths that resolve outside the manifest's dir.")
    ] = False,
) -> None:
    """Validate every row of PATH and open its media; exit 1 if anything is wrong."""
    with _progress("checking", None) as advance:
        report = check_path(path, media, advance, allow_outside_root)
    print_report(report, show)
    if not report.ok:
        raise typer.Exit(1)


def _short(problem: Problem) -> str:
    """``file.jsonl:LINE field: message`` (the summary line names the full manifest paths)."""
    where = f"{Path(problem.source).name}:{problem.line}" if problem.line else problem.source
    return (
        f"{where} {problem.field}: {problem.message}"
        if problem.field
        else f"{where} {problem.message}"
    )


def print_report(report: CheckReport, show: int = 3) -> None:
    """Summary line and, when there are problems, a table: kind, count, first examples."""
    status = "[green]ok[/]" if report.ok else f"[red]{len(report.problems)} problem(s)[/]"
    out.print(
        f"{status}: {report.rows} rows, {report.media_checked} media files checked in "
        f"{len(report.manifests)} file(s)"
    )
    if report.ok:
        return
    table = Table("problem", "count", "first examples", show_lines=True)
    for kind, count in report.counts().items():
        examples = "\n".join(_short(p) for p in report.examples(kind, show))
        table.add_row(kind, str(count), examples)
    out.print(table)
