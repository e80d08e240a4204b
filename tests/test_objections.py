"""Objections (docs/objections.md): a household that refuses automated profiling is left out of
the next run's feature rounds, so of its scores, lists, report pages and training rows; the
other households' features are unchanged; the ledger records the registry (never a key) and
still verifies; the report counts the objections; a bad registry is one clear line and changes
nothing.

One private copy of the session's scored sample: ``ingest`` with a registry, then the round
scored again (``--force``, its feature round rebuilt first as a prerequisite, with the already
registered model: no second training) and its report. The training rows are the training pool
of the past rounds rebuilt by ``outreach features``.
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from _cli_helpers import run_captured
from conftest import ScoredSample, copy_outputs, write_config_file

from pipeline.catalogues import load_catalogues
from pipeline.config import Config
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.datasets.features import (
    FEATURES_TABLE,
    LABELS_TABLE,
    MANIFEST,
    FeatureRounds,
    round_status,
)
from pipeline.datasets.objections import (
    REGISTRY_CHANGED,
    read_objections,
    staged_objections_file,
)
from pipeline.datasets.rounds import SCORES
from pipeline.errors import DataError
from pipeline.ingest.objections import load_registry
from pipeline.io import sha256_file, sha256_tree
from pipeline.lineage import ledger
from pipeline.months import format_month, parse_month

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
)

KEY = "household_key"


def _messages(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("outreach:")]


def _write_registry(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["household_key,date,kind", *(",".join(r) for r in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _with_registry(sample: ScoredSample, registry: Path, folder: Path) -> tuple[Config, Path]:
    config = sample.config.with_overrides(
        objections={"registry": str(registry)}, report={"small_count": 1}
    )
    return config, write_config_file(config, folder / "config_objections.yaml")


def _holds(path: Path, key: str) -> bool:
    """Whether a file of a round holds ``key``: Parquet read, XLSX unzipped, others as text."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        if KEY not in schema.names:
            return False
        return key in set(pd.read_parquet(path, columns=[KEY])[KEY].astype(str))
    if path.suffix == ".xlsx":
        with zipfile.ZipFile(path) as archive:
            return any(key.encode() in archive.read(n) for n in archive.namelist())
    return key.encode() in path.read_bytes()


def _feature_keys(folder: Path, table: str) -> set[str]:
    layout = TableLayout(folder)
    keys: set[str] = set()
    for code in layout.partitions(table):
        frame = pd.read_parquet(layout.partition_file(table, code), columns=[KEY])
        keys.update(frame[KEY].astype(str))
    return keys


@dataclass(frozen=True)
class Objected:
    """The scored sample before (``before``) and its copy after a refusal and an explanation
    request were applied (``after``), with the keys and the ledger head before."""

    before: ScoredSample
    after: ScoredSample
    config: Config
    config_file: Path
    refused: str
    explained: str
    training_rounds: list[str]
    ledger_head: ledger.Head
    audit: str  # what ``outreach audit`` of the round printed right after


@pytest.fixture(scope="module")
def objected(scored_sample: ScoredSample, tmp_path_factory) -> Objected:
    folder = tmp_path_factory.mktemp("objections")
    copy = copy_outputs(scored_sample, folder)
    labels = FeatureRounds(
        scored_sample.config, load_catalogues(scored_sample.config).outcomes
    ).labels(parse_month(scored_sample.as_of))
    labelled = set(labels.loc[labels["label"].notna(), KEY].astype(str))
    scores = pd.read_parquet(scored_sample.round_dir / SCORES, columns=[KEY, "tier"])
    listed = scores.loc[scores["tier"] == "visit", KEY].astype(str).tolist()
    # refused: a listed household with past labelled visits (it is a training row too)
    refused = next(k for k in listed if k in labelled)
    explained = next(k for k in listed if k != refused)
    registry = _write_registry(
        folder / "objections.csv",
        [(refused, "2026-10-15", "refuse"), (explained, "2026-10-20", "explain")],
    )
    config, config_file = _with_registry(copy, registry, folder)
    head = ledger.head(config.paths.output_root)
    # the rounds of its past visits: their features with its label would be training rows
    visits = labels.loc[(labels[KEY] == refused) & labels["label"].notna(), "round_month"]
    months = sorted({format_month(int(m)) for m in visits})
    for args in (
        ("ingest",),
        ("score", "--as-of", copy.as_of, "--force"),
        ("report", "--as-of", copy.as_of),
        ("features", "--as-of", ",".join(months)),
    ):
        code, _, err = run_captured(config_file, *args)
        assert code == 0, f"{args}: {err[-3000:]}"
    _, audit, _ = run_captured(config_file, "audit", str(copy.round_dir))
    return Objected(
        scored_sample, copy, config, config_file, refused, explained, months, head, audit
    )


def test_no_registry_is_the_default_and_stages_nothing(scored_sample: ScoredSample):
    """Without a registry (the default) nothing about objections is staged or recorded."""
    root = scored_sample.config.paths.output_root
    assert scored_sample.config.objections.registry is None
    staged = OutputLayout(root).staged
    assert not staged_objections_file(staged).exists()
    assert "objections" not in json.loads((staged / "_manifest.json").read_text("utf-8"))
    features = OutputLayout(root).features(scored_sample.as_of)
    assert "objections" not in json.loads((features / MANIFEST).read_text("utf-8"))
    assert not ledger.entries_of(ledger.read(root).entries, ledger.OBJECTION_RECORDED)


def test_refusal_removes_the_household_from_scores_lists_and_pages(objected: Objected):
    before = objected.before.round_dir
    assert _holds(before / SCORES, objected.refused)
    assert any(_holds(p, objected.refused) for p in (before / "lists").rglob("*.csv"))
    after = objected.after.round_dir
    scores = pd.read_parquet(after / SCORES, columns=[KEY])
    assert objected.refused not in set(scores[KEY].astype(str))
    assert objected.explained in set(scores[KEY].astype(str))  # asking is no refusal
    files = [p for p in after.rglob("*") if p.is_file()]
    assert any(p.suffix == ".xlsx" for p in files) and any(p.suffix == ".html" for p in files)
    holding = [str(p.relative_to(after)) for p in files if _holds(p, objected.refused)]
    assert holding == []


def test_refusal_removes_the_household_from_every_feature_round_and_the_training_rows(
    objected: Objected,
):
    """The rounds of its past visits and the scored round are rebuilt without it (no labelled
    row, no candidate negative); every other feature round is out of date until rebuilt."""
    config = objected.config
    layout = OutputLayout(config.paths.output_root)
    before = OutputLayout(objected.before.config.paths.output_root)
    left_out_labels = 0
    assert objected.training_rounds
    for label in [*objected.training_rounds, objected.after.as_of]:
        assert objected.refused in _feature_keys(before.features(label), FEATURES_TABLE)
        folder = layout.features(label)
        assert round_status(config, parse_month(label)) is None
        assert objected.refused not in _feature_keys(folder, FEATURES_TABLE)
        assert objected.refused not in _feature_keys(folder, LABELS_TABLE)
        record = json.loads((folder / MANIFEST).read_text("utf-8"))["objections"]
        assert record["left_out_households"] == 1
        assert record["counts"] == {"refuse": 1, "explain": 1}
        left_out_labels += record["left_out_label_rows"]
    assert left_out_labels > 0  # its past visits were training rows
    from pipeline.train.fit import plan_rounds

    rounds, _ = plan_rounds(config, parse_month(objected.after.as_of))
    others = [m for m in rounds if format_month(m) not in objected.training_rounds]
    assert others
    for month in others:
        why = round_status(config, month) or ""  # train rebuilds it first, saying why
        assert "the objections registry changed since it was built" in why


def test_other_households_features_are_unchanged(objected: Objected):
    """The refused household's row is gone; every other row is the same, value for value (the
    읍면동 rates still count it)."""
    catalogues = load_catalogues(objected.config)
    month = parse_month(objected.after.as_of)
    old = FeatureRounds(objected.before.config, catalogues.outcomes).features(month)
    new = FeatureRounds(objected.config, catalogues.outcomes).features(month)
    expected = old[old[KEY] != objected.refused].reset_index(drop=True)
    assert len(new) == len(old) - 1
    pd.testing.assert_frame_equal(new, expected)


def test_ledger_records_the_registry_by_reference_and_still_verifies(objected: Objected):
    root = objected.config.paths.output_root
    read = ledger.read(root)
    assert read.problems == ()
    new = [e for e in read.entries if e["seq"] > objected.ledger_head.seq]
    recorded = ledger.entries_of(new, ledger.OBJECTION_RECORDED)
    assert len(recorded) == 1
    facts = recorded[0]["facts"]
    assert facts["registry_sha256"] == sha256_file(Path(objected.config.objections.registry))
    assert facts["counts"] == {"refuse": 1, "explain": 1}
    assert sorted((o["date"], o["kind"]) for o in facts["objections"]) == [
        ("2026-10-15", "refuse"),
        ("2026-10-20", "explain"),
    ]
    assert all(len(o["ref"]) == 64 for o in facts["objections"])
    text = ledger.ledger_file(root).read_text("utf-8")
    assert objected.refused not in text and objected.explained not in text
    # the same registry applied again is not recorded again
    code, _, err = run_captured(objected.config_file, "ingest")
    assert code == 0, err
    assert len(ledger.entries_of(ledger.read(root).entries, ledger.OBJECTION_RECORDED)) == 1


def test_report_counts_the_objections(objected: Objected):
    report = objected.after.round_dir / "report"
    page = (report / "index.html").read_text("utf-8")
    shown = {
        name: re.search(rf'id="objections-{name}">([^<]*)<', page).group(1)
        for name in ("refuse", "explain", "left-out", "label-rows")
    }
    assert shown["refuse"] == "1" and shown["explain"] == "1" and shown["left-out"] == "1"
    assert int(shown["label-rows"]) > 0
    record = json.loads((report / "report.json").read_text("utf-8"))
    assert record["objections"]["refuse"] == 1 and record["objections"]["explain"] == 1


def test_reader_gives_the_explanation_requests(objected: Objected):
    objections = read_objections(objected.config)
    explain = objections.loc[objections["kind"] == "explain", KEY].tolist()
    assert explain == [objected.explained]
    assert objections.loc[objections["kind"] == "explain", "date"].iloc[0] == pd.Timestamp(
        "2026-10-20"
    )


def test_a_changed_registry_is_noticed_until_ingest(objected: Objected, tmp_path: Path):
    """Edited after ingest: the rounds are out of date and features refuses, naming ingest."""
    registry = Path(objected.config.objections.registry)
    changed = tmp_path / "objections.csv"
    changed.write_text(registry.read_text("utf-8"), encoding="utf-8")
    with changed.open("a", encoding="utf-8") as handle:
        handle.write(f"{objected.explained},2026-10-21,refuse\n")
    config = objected.config.with_overrides(objections={"registry": str(changed)})
    month = parse_month(objected.after.as_of)
    assert REGISTRY_CHANGED in (round_status(config, month) or "")
    with pytest.raises(DataError, match="run `outreach ingest`"):
        read_objections(config)


BAD_ROWS = [
    (
        "row 2, column kind: unknown kind: expected one of refuse, explain",
        ("H1", "2026-10-01", "x"),
    ),
    ("row 3, column date: bad date: expected a date YYYY-MM-DD", ("H2", "2026-02-30", "refuse")),
    ("row 4, column date: date after the day of the run", ("H3", "FUTURE", "refuse")),
    ("row 5, column household_key, kind: duplicate", ("H4", "2026-10-01", "explain")),
    ("row 6, column household_key, kind: duplicate", ("H4", "2026-10-02", "explain")),
    ("row 7, column household_key: household key missing", ("", "2026-10-01", "refuse")),
]


def test_each_bad_row_is_one_line_naming_file_row_and_column(tmp_path: Path, caplog):
    tomorrow = (date.today() + timedelta(days=2)).isoformat()
    rows = [tuple(tomorrow if v == "FUTURE" else v for v in row) for _, row in BAD_ROWS]
    path = _write_registry(tmp_path / "bad.csv", rows)
    with caplog.at_level(logging.ERROR), pytest.raises(DataError) as raised:
        load_registry(path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {BAD_ROWS[0][0]}")
    assert "6 problems in all" in message and "nothing was applied" in message
    logged = [r.getMessage() for r in caplog.records if r.name == "pipeline.ingest.objections"]
    assert len(logged) == len(BAD_ROWS)
    for line, (expected, _) in zip(logged, BAD_ROWS, strict=True):
        assert line.startswith(f"{path}: {expected}")


def test_a_bad_registry_stops_ingest_and_changes_nothing(objected: Objected, tmp_path: Path):
    """An unknown household key (checked against the staged households): exit 1, one line, and
    the staged tables, feature rounds, round and ledger are as they were."""
    good = Path(objected.config.objections.registry)
    bad = tmp_path / "objections.csv"
    bad.write_text(good.read_text("utf-8") + "H9999999999,2026-10-01,refuse\n", encoding="utf-8")
    config = objected.config.with_overrides(objections={"registry": str(bad)})
    config_file = write_config_file(config, tmp_path / "config.yaml")
    root = OutputLayout(config.paths.output_root)
    before = {
        "staged": sha256_tree(root.staged),
        "features": sha256_tree(root.features(objected.after.as_of)),
        "round": sha256_tree(objected.after.round_dir),
        "ledger": sha256_file(root.ledger),
    }
    code, _, err = run_captured(config_file, "ingest")
    assert code == 1
    assert _messages(err) == [
        f"outreach: data error: {bad}: row 4, column household_key: unknown household key: "
        "expected the key of a household in the staged tables; nothing was applied"
    ]
    assert "H9999999999" not in err
    after = {
        "staged": sha256_tree(root.staged),
        "features": sha256_tree(root.features(objected.after.as_of)),
        "round": sha256_tree(objected.after.round_dir),
        "ledger": sha256_file(root.ledger),
    }
    assert after == before
    # and the next stage refuses to go on with the registry that was not applied
    code, _, err = run_captured(config_file, "score", "--as-of", objected.after.as_of, "--force")
    assert code == 1
    assert "run `outreach ingest`" in _messages(err)[-1]


def test_the_audit_verifies_the_round_scored_without_the_household(objected: Objected):
    """The round's own links verify (its features, the staged tables with the registry, the
    ledger with the objection entry, the re-score). The champion was trained before the refusal
    on feature rounds since rebuilt without the household: the features stage recorded each
    rewritten file in the ledger (``data destroyed``, rule: the objection), so the training data
    link follows the change and passes as ``destroyed`` instead of failing as tampered."""
    out = objected.audit
    status = {}
    for line in out.splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2 and parts[0] in ("ok", "FAILED", "unverifiable", "destroyed"):
            for link in (
                "scoring features",
                "staged tables",
                "ledger",
                "re-score",
                "training data",
            ):
                if parts[1].startswith(link):
                    status[link] = parts[0]
    assert status == {
        "scoring features": "ok",
        "staged tables": "ok",
        "ledger": "ok",
        "re-score": "ok",
        "training data": "destroyed",
    }, out
    assert "without refused households' rows" in out
    assert "FAILED" not in out, out


def test_the_rebuilt_rounds_are_recorded_file_by_file(objected: Objected):
    """One ``data destroyed`` record names every file the refusal rewrote in the rebuilt
    training rounds, with its sha256 before and after and the rows left out; never the key."""
    root = objected.config.paths.output_root
    entries = ledger.read(root).entries
    records = [
        e["facts"]
        for e in ledger.entries_of(entries, ledger.DATA_DESTROYED)
        if e["facts"].get("reason") == "objection"
    ]
    assert records
    rewritten = {item["path"]: item for r in records for item in r["datasets"]}
    for month in objected.training_rounds:
        manifest = f"features/as_of={month}/manifest.json"
        assert manifest in rewritten
        assert rewritten[manifest]["sha256_after"] == sha256_file(root / manifest)
        data = [p for p in rewritten if p.startswith(f"features/as_of={month}/") and p != manifest]
        assert data and all(rewritten[p]["rows"] >= 1 for p in data)
        assert all(rewritten[p]["sha256_after"] == sha256_file(root / p) for p in data)
    assert objected.refused not in json.dumps(records)
    assert ledger.read(root).problems == ()


def test_a_registry_that_cannot_be_read_is_one_line(tmp_path: Path):
    missing = tmp_path / "missing.csv"
    with pytest.raises(DataError, match=r"missing\.csv: objections registry not found"):
        load_registry(missing)
    no_kind = tmp_path / "no_kind.csv"
    no_kind.write_text("household_key,date\nH1,2026-10-01\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"column\(s\) kind missing: expected the header"):
        load_registry(no_kind)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("household_key,date,kind\nH1,2026-10-01,réfuse\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8 text"):
        load_registry(latin)


def test_removing_the_registry_is_recorded_and_stages_none(staged_sample, tmp_path: Path):
    """Ingest with a registry, then without: two ledger entries, the second with no registry;
    the staged tables hold no objections any more."""
    import shutil

    config, _ = staged_sample
    root = tmp_path / "outputs"
    shutil.copytree(OutputLayout(config.paths.output_root).validation, root / "validation")
    bare = config.with_overrides(paths={"output_root": str(root)})
    keys = pd.read_parquet(
        next((OutputLayout(config.paths.output_root).staged / "households").rglob("*.parquet")),
        columns=[KEY],
    )[KEY]
    registry = _write_registry(
        tmp_path / "objections.csv", [(keys.iloc[0], "2026-10-01", "refuse")]
    )
    with_registry = bare.with_overrides(objections={"registry": str(registry)})
    for step in (with_registry, bare):
        code, _, err = run_captured(write_config_file(step, tmp_path / "config.yaml"), "ingest")
        assert code == 0, err[-2000:]
    read = ledger.read(root)
    assert read.problems == ()
    facts = [e["facts"] for e in ledger.entries_of(read.entries, ledger.OBJECTION_RECORDED)]
    assert [f["registry_sha256"] for f in facts] == [sha256_file(registry), None]
    assert facts[1]["counts"] == {"refuse": 0, "explain": 0} and facts[1]["objections"] == []
    staged = OutputLayout(root).staged
    assert not staged_objections_file(staged).exists()
    assert read_objections(bare).empty
