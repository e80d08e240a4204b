"""Feature rounds kept until their inputs change: a round as of M reads only the signals reported
before M, so an ingest that adds later months (the living loop's world moving on) leaves the
earlier rounds current, and a kept folder holds exactly what a rebuild would write. A changed row
of an earlier month, or a changed dictionary, still makes the rounds after it out of date."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import make_config, write_config_file

from pipeline.cli import main
from pipeline.datasets import OutputLayout
from pipeline.datasets.features import STAGED_CHANGED, STAGED_VIEW, round_status
from pipeline.datasets.staged import (
    DICTIONARIES,
    EVENT_MONTHS_KEY,
    events_month_digests,
    read_staged_manifest,
    staged_view_digest,
)
from pipeline.features.stage import build_rounds
from pipeline.io import read_json_file, sha256_tree
from pipeline.months import format_month, parse_month
from pipeline.simulate.loop import copy_world

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
)


def _events(months: list[int], households: list[str], values: list[float]) -> pa.Table:
    keys = pa.array(households).dictionary_encode()
    return pa.table(
        {
            "household_key": keys,
            "indicator_code": pa.array(["power_cut"] * len(months)).dictionary_encode(),
            "event_month": pa.array(months, type=pa.int32()),
            "reported_month": pa.array(months, type=pa.int32()),
            "value": pa.array(values, type=pa.float64()),
        }
    )


def _manifest(events: pa.Table) -> dict:
    return {"files_sha256": {"households/x.parquet": "a"}, EVENT_MONTHS_KEY: {
        "1": events_month_digests(events)
    }}  # fmt: skip


def test_a_round_reads_only_the_months_before_it():
    jan, feb, mar = (parse_month(m) for m in ("2026-01", "2026-02", "2026-03"))
    base = _events([jan, feb, jan], ["a", "b", "c"], [1.0, 2.0, 3.0])
    digests = events_month_digests(base)
    assert set(digests) == {DICTIONARIES, "2026-01", "2026-02"}
    before = _manifest(base)
    # A later month appended: every round up to it reads the same rows.
    later = _events([jan, feb, jan, mar], ["a", "b", "c", "a"], [1.0, 2.0, 3.0, 4.0])
    for as_of in (jan, feb, mar):
        assert staged_view_digest(_manifest(later), as_of) == staged_view_digest(before, as_of)
    assert staged_view_digest(_manifest(later), mar + 1) != staged_view_digest(before, mar + 1)
    # A changed value of February: the rounds after February read other rows.
    changed = _events([jan, feb, jan], ["a", "b", "c"], [1.0, 9.0, 3.0])
    assert staged_view_digest(_manifest(changed), feb) == staged_view_digest(before, feb)
    assert staged_view_digest(_manifest(changed), mar) != staged_view_digest(before, mar)
    # Another household behind the same dictionary index: every round.
    renamed = _events([jan, feb, jan], ["a", "b", "z"], [1.0, 2.0, 3.0])
    assert staged_view_digest(_manifest(renamed), jan) != staged_view_digest(before, jan)
    # Another staged file (households, outcomes, ...): every round.
    other = {**before, "files_sha256": {"households/x.parquet": "b"}}
    assert staged_view_digest(other, jan) != staged_view_digest(before, jan)
    assert staged_view_digest({"files_sha256": {}}, jan) is None  # an older ingest's manifest


def _run(config_file: Path, *argv: str) -> None:
    assert main(["--no-progress", "--config", str(config_file), *argv]) == 0, argv


def test_an_ingest_of_later_months_keeps_the_earlier_rounds(tmp_path):
    """On the sample's world (linked, never changed), as the living loop moves it on."""
    world = tmp_path / "world"
    config = make_config(world)
    copy_world(config, world)
    layout = OutputLayout(world)
    config = config.with_overrides(
        paths={"output_root": str(world), "raw_input": str(layout.raw),
               "truth_input": str(layout.truth)},
        ingest={"demo_key": True},
    )  # fmt: skip
    end = config.window.end_index
    months = [end - 5, end - 1, end + 1]
    config_file = write_config_file(config, tmp_path / "c.yaml")
    _run(config_file, "validate")
    _run(config_file, "ingest")
    built = build_rounds(config, months)
    before = {run.as_of: sha256_tree(run.folder) for run in built}

    interval = config.window.round_interval_months
    _run(config_file, "generate", "--advance", "--output-dir", str(world))
    moved = config.with_overrides(window={"end": format_month(end + interval)})
    moved_file = write_config_file(moved, tmp_path / "c2.yaml")
    _run(moved_file, "validate")
    _run(moved_file, "ingest")
    staged = read_staged_manifest(moved)
    for digests in staged[EVENT_MONTHS_KEY].values():  # the new months were staged
        assert max(set(digests) - {DICTIONARIES}) == format_month(end + interval)
    for month in months:  # current, and untouched
        assert round_status(moved, month) is None, format_month(month)
        folder = OutputLayout(world).features(format_month(month))
        assert sha256_tree(folder) == before[format_month(month)]
        recorded = read_json_file(folder / "manifest.json")
        assert recorded["staged_files_sha256"] != staged.get("files_sha256")  # other files now
        assert recorded[STAGED_VIEW] == staged_view_digest(staged, month)
    # What a rebuild from the new staged tables writes is what was kept (but the manifests,
    # which record the staged tables they were built from).
    rebuilt_root = tmp_path / "rebuilt"
    rebuilt = build_rounds(
        moved.with_overrides(paths={"output_root": str(rebuilt_root)}),
        months,
        staged_dir=OutputLayout(world).staged,
    )
    for run in rebuilt:
        fresh = sha256_tree(run.folder)
        kept = sha256_tree(OutputLayout(world).features(run.as_of))
        fresh.pop("manifest.json")
        kept.pop("manifest.json")
        assert fresh == kept, run.as_of
    # The first round after the old window reads new months: it is built, not kept.
    assert round_status(moved, end + interval + 1) == "missing"

    # A row of an earlier month changed (as a re-delivery would): the rounds after it only.
    path = OutputLayout(world).staged / "_manifest.json"
    changed = read_json_file(path)
    code = next(iter(changed[EVENT_MONTHS_KEY]))
    changed[EVENT_MONTHS_KEY][code][format_month(end - 3)] = "0" * 64
    path.write_text(json.dumps(changed), encoding="utf-8")
    assert round_status(moved, end - 5) is None
    assert round_status(moved, end - 1) == STAGED_CHANGED
    assert round_status(moved, end + 1) == STAGED_CHANGED


def test_the_audit_judges_a_kept_folder_by_what_it_read():
    """A round scored from a folder kept over an ingest of later months is not 'scored from
    stale features'; one whose read rows differ from the round's record is."""
    from pipeline.audit.checks import FolderFacts, check_scoring_features

    files = {"features/sigungu=1/part-0.parquet": "f"}
    round_manifest = {
        "features": {"manifest_sha256": "m", "files_sha256": files},
        "staged": {"manifest_sha256": "new ingest", "view_sha256": "rows before M"},
    }
    kept = FolderFacts("features/as_of=M", "m", files, "old ingest", "rows before M")
    assert [f.passed for f in check_scoring_features(round_manifest, kept)] == [True]
    other = FolderFacts("features/as_of=M", "m", files, "old ingest", "other rows")
    (finding,) = check_scoring_features(round_manifest, other)
    assert not finding.passed and "scored from stale features" in finding.message
    # A round recorded before views were: judged by the staged manifest, as before.
    older = {**round_manifest, "staged": {"manifest_sha256": "new ingest"}}
    (finding,) = check_scoring_features(older, kept)
    assert not finding.passed and "scored from stale features" in finding.message
