"""Manifest validation (errors name file, line, field) and dataset cards."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_helpers import write_jsonl

from omnifuse.data.card import (
    CardError,
    DatasetCard,
    FieldSpec,
    SplitSpec,
    card_for_manifests,
    read_card,
    validate_card,
    write_card,
)
from omnifuse.data.manifest import (
    ManifestError,
    Problem,
    Record,
    iter_manifest,
    read_manifest,
    root_problems,
)


def test_valid_manifest_resolves_media_relative_to_its_directory(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "text": "hi", "image": "img/a.png", "captions": ["x", "y"], "n": 3},
        {"id": "b", "audio": "b.wav", "image": None, "label": "cat"},
    ]
    manifest = write_jsonl(tmp_path / "train.jsonl", [*rows[:1], "", rows[1]])
    records = read_manifest(manifest)
    assert [r.id for r in records] == ["a", "b"]
    assert [r.line for r in records] == [1, 3]  # the blank line still counts
    assert records[0].media("image") == tmp_path / "img" / "a.png"
    assert records[1].media("image") is None  # null means absent
    assert records[1].targets == {"label": "cat"}


@pytest.mark.parametrize(
    ("line", "field", "kind", "text"),
    [
        ('{"id": "a", "text": "ok"', None, "invalid_json", "invalid JSON"),
        ('["a"]', None, "not_object", "JSON object"),
        ('{"id": 7}', "id", "wrong_type", "non-empty string"),
        ('{"id": "a", "text": "   "}', "text", "empty_text", "empty"),
        ('{"id": "a", "text": 5}', "text", "wrong_type", "must be a string"),
        ('{"id": "a", "image": 3}', "image", "wrong_type", "path string"),
        ('{"id": "a", "image": "/abs/x.png"}', "image", "bad_path", "relative"),
        ('{"id": "a", "captions": "one"}', "captions", "wrong_type", "list of strings"),
        ('{"id": "a", "captions": ["ok", 2]}', "captions", "wrong_type", "item 1"),
        ('{"id": "a", "label": 2}', "label", "wrong_type", "must be a string"),
    ],
)
def test_each_invalid_line_is_reported_with_line_and_field(
    tmp_path: Path, line: str, field: str | None, kind: str, text: str
) -> None:
    manifest = write_jsonl(tmp_path / "m.jsonl", ['{"id": "ok", "text": "fine"}', line])
    with pytest.raises(ManifestError) as info:
        read_manifest(manifest)
    (problem,) = info.value.problems
    assert (problem.line, problem.field, problem.kind) == (2, field, kind)
    assert text in problem.message
    where = f"{manifest}:2: {field}: " if field else f"{manifest}:2: "
    assert where in str(info.value)


def test_rows_without_id_get_a_stable_id(tmp_path: Path) -> None:
    rows = ['{"text": "no id"}', '{"text": "no id"}', '{"id": "x", "text": "has one"}']
    first = [r.id for r in read_manifest(write_jsonl(tmp_path / "a.jsonl", rows))]
    again = [r.id for r in read_manifest(write_jsonl(tmp_path / "b.jsonl", rows))]
    assert first == again  # the same rows give the same ids wherever the manifest lives
    assert first[0].startswith("L1-") and first[1].startswith("L2-") and first[2] == "x"


def test_bom_and_non_utf8_lines(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b'\xef\xbb\xbf{"id": "a", "text": "ok"}\n{"id": "b", "text": "\xff"}\n')
    items = list(iter_manifest(manifest))
    assert isinstance(items[0], Record) and items[0].id == "a"
    assert isinstance(items[1], Problem) and (items[1].line, items[1].kind) == (2, "not_utf8")


def test_paths_leaving_the_manifest_dir_are_outside_root(tmp_path: Path) -> None:
    (tmp_path / "d" / "img").mkdir(parents=True)
    (tmp_path / "d" / "link.png").symlink_to(tmp_path / "secret.png")
    rows = [
        {"id": "a", "image": "img/../img/x.png"},
        {"id": "b", "image": "../../etc/passwd"},
        {"id": "c", "image": "link.png"},
    ]
    records = read_manifest(write_jsonl(tmp_path / "d" / "m.jsonl", rows))
    outside = [p for r in records for p in root_problems(r, "m.jsonl")]
    assert [(p.line, p.kind) for p in outside] == [(2, "outside_root"), (3, "outside_root")]
    assert "data.allow_outside_root" in outside[0].message


def test_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"id": "x"}, {"id": "y"}, {"id": "x"}])
    items = list(iter_manifest(manifest))
    problems = [i for i in items if isinstance(i, Problem)]
    assert [p.kind for p in problems] == ["duplicate_id"]
    assert problems[0].line == 3 and "first on line 1" in problems[0].message
    assert len([i for i in items if isinstance(i, Record)]) == 2


def test_card_types_and_classes_are_enforced(tmp_path: Path) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl", [{"id": "a", "motion": "left", "n": 1.5}, {"id": "b", "motion": "up"}]
    )
    types, classes = {"motion": "class", "n": "int"}, {"motion": ["left", "right"]}
    problems = [i for i in iter_manifest(manifest, types, classes) if isinstance(i, Problem)]
    assert [(p.line, p.field, p.kind) for p in problems] == [
        (1, "n", "wrong_type"),
        (2, "motion", "unknown_label"),
    ]
    assert "'left', 'right'" in problems[1].message


def test_missing_manifest_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")


def _card() -> DatasetCard:
    return DatasetCard(
        name="toy",
        license="CC0",
        splits={"train": SplitSpec(manifest="train.jsonl", size=2)},
        fields={
            "text": FieldSpec(type="text"),
            "label": FieldSpec(type="class", classes=["a", "b"]),
        },
        generator={"name": "test", "seed": 1},
    )


def test_card_round_trip_keeps_extra_keys(tmp_path: Path) -> None:
    card = _card().model_copy(update={"homepage": "https://example.org"})
    loaded = read_card(write_card(card, tmp_path / "card.yaml"))
    assert loaded == card
    assert loaded.model_extra == {"homepage": "https://example.org"}
    assert loaded.targets() == ["label"] and loaded.inputs() == ["text"]


@pytest.mark.parametrize(
    ("yaml_text", "match"),
    [
        ("name: x\nfields: {label: {type: klass}}\n", r"fields\.label\.type: 'klass'"),
        ("name: x\nfields: {t: {type: string, classes: [a]}}\n", "only allowed for type 'class'"),
        ("name: x\nfields: {l: {type: class, classes: [a, a]}}\n", "repeated: a"),
        ("name: x\nsplits: {train: {manifest: t.jsonl, size: -1}}\n", r"splits\.train\.size"),
        ("fields: {}\n", "name: required field is missing"),
        ("name: [unclosed\n", "YAML syntax error"),
    ],
)
def test_invalid_cards_name_the_field(tmp_path: Path, yaml_text: str, match: str) -> None:
    path = tmp_path / "card.yaml"
    path.write_text(yaml_text)
    with pytest.raises(CardError, match=match):
        read_card(path)


def test_validate_card_finds_size_mismatch_unknown_labels_and_undeclared_fields(
    tmp_path: Path,
) -> None:
    write_jsonl(tmp_path / "train.jsonl", [{"id": "1", "text": "t", "label": "a", "extra": 1}])
    problems = validate_card(_card(), tmp_path)
    assert {(p.field, p.kind) for p in problems} == {
        ("splits.train.size", "size_mismatch"),
        ("fields.extra", "undeclared_field"),
    }
    write_jsonl(tmp_path / "train.jsonl", [{"id": "1", "label": "a"}, {"id": "2", "label": "z"}])
    (problem,) = validate_card(_card(), tmp_path)
    assert (problem.line, problem.kind) == (2, "unknown_label")


def test_card_for_manifests_infers_types_and_sorted_classes(tmp_path: Path) -> None:
    train = write_jsonl(
        tmp_path / "train.jsonl",
        [{"id": "1", "label": "dog", "score": 1, "w": 0.5, "captions": ["a"]}],
    )
    val = write_jsonl(tmp_path / "val.jsonl", [{"id": "2", "label": "cat", "score": 2, "w": 1}])
    card = card_for_manifests({"train": train, "val": val}, name="inferred")
    assert card.types() == {
        "captions": "strings",
        "label": "class",
        "score": "int",
        "w": "float",
    }
    assert card.classes() == {"label": ["cat", "dog"]}
    assert {k: s.size for k, s in card.splits.items()} == {"train": 1, "val": 1}
