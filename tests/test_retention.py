"""``outreach retention``: household-level data older than the period goes from every dataset,
aggregates and the ledger stay, the audit marks what was destroyed and still verifies the rest,
a dry run changes nothing, validate refuses raw data older than the period.

One private copy of ``scored_sample`` (its raw and truth copied in as well), retained twice: first
with a 12-month period (cut 2025-12: rows of raw, staged, truth and labels, the older feature
rounds), then with a 1-month period (cut 2026-11: the scored round's household files too).
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from _cli_helpers import run_captured
from conftest import REPO_ROOT, ScoredSample, copy_outputs, write_config_file

from pipeline.errors import DataError
from pipeline.io import sha256_file, sha256_tree
from pipeline.lineage import ledger
from pipeline.months import parse_month
from pipeline.retention import apply
from pipeline.retention.plan import month_indexes, plan
from pipeline.validate.retention import check_retention

TODAY = "2026-12-04"
FIRST_CUT = "2025-12"  # 12 months before 2026-12
SECOND_CUT = "2026-11"  # 1 month before: the scored round 2026-10 goes too
# The columns that date a row (retention destroys rows by them).
DATING_COLUMNS = ("reported_month", "round_month", "month", "contact_month")
# The current register (households, members; the synthetic world's state): not dated, kept.
REGISTER = ("households", "household_members", "world_state")
HOUSEHOLD_KEY = re.compile(rb"H\d{10}")


def retention(scored: ScoredSample, period: int, *args: str) -> tuple[int, str, str]:
    config = scored.config.with_overrides(retention={"period_months": period})
    write_config_file(config, scored.config_file)
    return run_captured(scored.config_file, "retention", "--today", TODAY, *args)


def audit_json(scored: ScoredSample) -> tuple[int, dict[str, dict]]:
    code, out, err = run_captured(scored.config_file, "audit", str(scored.round_dir), "--json")
    assert out, err
    report = json.loads(out)
    return code, {f["link"]: f for f in report["findings"]}


def tree(root: Path) -> dict[str, str]:
    return sha256_tree(root)


def dated_rows_before(root: Path, cut: str) -> list[str]:
    """Every Parquet file under ``root`` that still has a row dated before ``cut``."""
    found = []
    for path in sorted(root.rglob("*.parquet")):
        schema = pq.read_schema(path)
        for column in DATING_COLUMNS:
            if column in schema.names:
                months = month_indexes(pq.read_table(path, columns=[column]).column(column))
                if (months < parse_month(cut)).any():
                    found.append(f"{path.relative_to(root)}:{column}")
    return found


def household_keys(path: Path) -> set[bytes]:
    """Every household key in a file: Parquet text columns, XLSX parts, any other file's bytes."""
    if path.suffix == ".parquet":
        keys: set[bytes] = set()
        table = pq.read_table(path)
        for column in table.columns:
            kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
            if pa.types.is_string(kind) or pa.types.is_large_string(kind):
                for value in pc.unique(column.cast(kind)).to_pylist():
                    if value:
                        keys.update(HOUSEHOLD_KEY.findall(value.encode()))
        return keys
    if path.suffix == ".xlsx":
        with zipfile.ZipFile(path) as book:
            return {k for name in book.namelist() for k in HOUSEHOLD_KEY.findall(book.read(name))}
    return set(HOUSEHOLD_KEY.findall(path.read_bytes()))


@pytest.fixture(scope="module")
def copy(scored_sample, tmp_path_factory) -> ScoredSample:
    """A private copy of the scored sample with the raw tables and the truth inside it."""
    destination = tmp_path_factory.mktemp("retention")
    scored = copy_outputs(scored_sample, destination)
    root = Path(scored.config.paths.output_root)
    shutil.copytree(REPO_ROOT / "data_samples" / "raw", root / "raw")
    shutil.copytree(REPO_ROOT / "data_samples" / "truth", root / "truth")
    config = scored.config.with_overrides(
        paths={"raw_input": str(root / "raw"), "truth_input": str(root / "truth")}
    )
    write_config_file(config, scored.config_file)
    return ScoredSample(config, scored.config_file, scored.round_dir, scored.as_of)


@pytest.fixture(scope="module")
def before(copy) -> dict[str, object]:
    """What the copy holds before any retention run: its files' sha256, the keys of the round's
    lists, and the audit's verdict on the round."""
    root = Path(copy.config.paths.output_root)
    lists = copy.round_dir / "lists"
    keys = set().union(*(household_keys(p) for p in lists.rglob("emd_*.csv")))
    code, links = audit_json(copy)
    return {"tree": tree(root), "keys": keys, "audit": links, "audit_code": code}


@pytest.fixture(scope="module")
def first_run(copy, before) -> tuple[int, str, str]:
    return retention(copy, 12)


def test_dry_run_lists_what_would_go_and_changes_no_byte(copy, before):
    root = Path(copy.config.paths.output_root)
    code, out, err = retention(copy, 12, "--dry-run")
    assert code == 0, err
    assert "would destroy" in out and f"before {FIRST_CUT}" in out
    for dataset in ("raw/crisis_events", "staged/outreach_outcomes", "features", "truth"):
        assert f"  {dataset}" in out
    assert "folder features/as_of=2024-04" in out
    assert "nothing was changed" in out
    assert tree(root) == before["tree"]


def test_old_rows_go_from_every_dataset_and_aggregates_stay(copy, before, first_run):
    code, _, err = first_run
    assert code == 0, err
    root = Path(copy.config.paths.output_root)
    assert dated_rows_before(root, FIRST_CUT) == []
    assert not list(root.glob("features/as_of=2025-10"))
    assert (root / "features" / f"as_of={FIRST_CUT}").is_dir()  # later rounds stay
    after = tree(root)
    # the round (scored 2026-10), the validation record and the MLflow files are untouched
    for name, digest in before["tree"].items():
        if name.startswith(("rounds/", "validation/", "mlflow/artifacts/")):
            assert after.get(name) == digest, name
    # the households' register stays; the rows of kept months stay
    for table in ("households", "household_members"):
        for part in (root / "raw" / table).rglob("*.parquet"):
            assert (
                after[part.relative_to(root).as_posix()]
                == before["tree"][part.relative_to(root).as_posix()]
            )
    events = pq.read_table(root / "raw" / "crisis_events").column("reported_month")
    assert pc.min(events).as_py() == FIRST_CUT
    assert not list(root.rglob(f"*{apply.NEW_SUFFIX}")) and not list(
        root.rglob(f"*{apply.GONE_SUFFIX}")
    )
    assert not apply.journal_file(root).exists()


def test_destruction_record_names_what_went_with_digests(copy, before, first_run):
    root = Path(copy.config.paths.output_root)
    book = ledger.read(root)
    assert book.problems == ()  # the chain still verifies
    records = ledger.entries_of(book.entries, ledger.DATA_DESTROYED)
    assert len(records) == 1
    facts = records[0]["facts"]
    assert facts["cut"] == FIRST_CUT and facts["period_months"] == 12 and facts["today"] == TODAY
    assert "12 months" in facts["rule"]
    assert facts["rows"] == sum(d.get("rows", 0) for d in facts["datasets"]) > 0
    by_path = {d["path"]: d for d in facts["datasets"]}
    # each file's sha256 before is the one it had: an auditor can tie it to earlier records
    for path, item in by_path.items():
        if item["action"] == "rows":
            assert item["sha256"] == before["tree"][path]
            assert item["sha256_after"] == sha256_file(root / path)
        if item["action"] == "folder":
            for name, digest in item["files"].items():
                assert before["tree"][f"{path}/{name}"] == digest
    assert by_path["features/as_of=2024-04"]["action"] == "folder"
    assert by_path["staged/_manifest.json"]["action"] == "manifest"


def test_audit_of_the_round_marks_the_destroyed_links_and_passes(copy, before, first_run):
    code, links = audit_json(copy)
    failed_before = {k for k, f in before["audit"].items() if f["status"] == "failed"}
    failed_now = {k for k, f in links.items() if f["status"] == "failed"}
    assert failed_now <= failed_before, {k: links[k]["message"] for k in failed_now}
    if not failed_before:
        assert code == 0
    for link in ("raw inputs", "staged tables", "training data", "scoring features"):
        assert links[link]["status"] == "destroyed", links[link]["message"]
        assert "2026-12" in links[link]["message"] and "12 months" in links[link]["message"]
    assert links["re-score"]["status"] == "ok"  # what remains verifies


def test_audit_still_fails_a_file_changed_after_its_destruction(copy, first_run):
    raw = Path(copy.config.paths.raw_input) / "crisis_events"
    part = next(raw.rglob("*.parquet"))
    kept = part.read_bytes()
    table = pq.read_table(part)
    try:
        pq.write_table(table.slice(1), part)  # one more row gone, unrecorded
        code, links = audit_json(copy)
        assert code == 1
        assert links["raw inputs"]["status"] == "failed"
    finally:
        part.write_bytes(kept)


def test_second_run_destroys_the_round_and_no_key_of_it_remains(copy, before, first_run):
    root = Path(copy.config.paths.output_root)
    code, out, err = retention(copy, 1)
    assert code == 0, err
    assert "rounds/2026-10" in out
    assert dated_rows_before(root, SECOND_CUT) == []
    left = sorted(p.relative_to(copy.round_dir).as_posix() for p in copy.round_dir.rglob("*"))
    assert [p for p in left if "." in p.rsplit("/", 1)[-1]] == [
        "manifest.json",
        "model/feature_importance.csv",
    ]
    # no file of the output root (Parquet, CSV, XLSX, HTML, JSON, MLflow's store and artifacts)
    # but the current register holds a household key of the destroyed round's lists
    holding = [
        p.relative_to(root).as_posix()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and not any(part in REGISTER for part in p.relative_to(root).parts)
        and household_keys(p) & before["keys"]
    ]
    assert holding == []
    records = ledger.entries_of(ledger.read(root).entries, ledger.DATA_DESTROYED)
    assert [r["facts"]["cut"] for r in records] == [FIRST_CUT, SECOND_CUT]
    assert records[1]["facts"]["rounds"] == ["2026-10"]

    code, links = audit_json(copy)
    failed = {k for k, f in links.items() if f["status"] == "failed"}
    failed_before = {k for k, f in before["audit"].items() if f["status"] == "failed"}
    assert failed <= failed_before, {k: links[k]["message"] for k in failed}
    for link in ("round manifest", "list rows", "raw inputs", "re-score"):
        assert links[link]["status"] == "destroyed", links[link]["message"]
    # the raw files were rewritten twice: the chain of both records leads to them
    assert "1 months" in links["raw inputs"]["message"]


def test_interrupted_run_is_finished_by_the_next(scored_sample, copy, tmp_path):
    """A run killed after its journal: the next run finishes the moves and records it once."""
    root = tmp_path / "outputs"
    shutil.copytree(Path(scored_sample.config.paths.output_root) / "staged", root / "staged")
    config = copy.config.with_overrides(
        paths={
            "output_root": str(root),
            "raw_input": str(tmp_path / "none"),
            "truth_input": str(tmp_path / "none"),
        }
    )
    cut = parse_month("2026-06")
    actions = plan(config, root, cut)
    assert actions
    apply.prepare(actions, cut)
    steps = apply.moves(actions)
    apply.write_journal(
        root, steps, {"run": "interrupted", "destroyed_at": "x", "rows": 1, "files": 1}
    )
    apply.commit(steps[:2])  # killed after two renames
    household_part = next((root / "staged" / "households").rglob("*.parquet"))
    stray = apply.new_file(household_part)  # as a run killed while it prepared leaves one
    stray.write_bytes(household_part.read_bytes())
    config_file = write_config_file(config, tmp_path / "config.yaml")
    code, out, err = run_captured(config_file, "retention", "--today", "2027-06")
    assert code == 0, err
    assert "finished the interrupted retention run" in out
    assert not apply.journal_file(root).exists()
    assert not stray.exists()
    assert dated_rows_before(root, "2026-06") == []
    manifest = json.loads((root / "staged" / "_manifest.json").read_text(encoding="utf-8"))
    for name, digest in manifest["files_sha256"].items():
        assert sha256_file(root / "staged" / name) == digest, name
    runs = [
        r["facts"]["run"]
        for r in ledger.entries_of(ledger.read(root).entries, ledger.DATA_DESTROYED)
    ]
    assert runs == ["interrupted"]  # nothing older than 2026-06 was left for a second record


def test_validate_refuses_raw_data_older_than_the_period(copy):
    raw = REPO_ROOT / "data_samples" / "raw"
    # the sample spans 2023-10..2026-09: the default 60 months from 2026-12 keep all of it
    check_retention(copy.config.with_overrides(retention={"today": "2026-12"}), raw)
    short = copy.config.with_overrides(retention={"period_months": 24, "today": "2026-12"})
    with pytest.raises(DataError) as refused:
        check_retention(short, raw)
    message = str(refused.value)
    assert "crisis_events" in message and "2023-10" in message and "2024-12" in message
    allowed = short.with_overrides(retention={"period_months": 24, "allow_older_raw": True})
    check_retention(allowed, raw)
    # through the command: exit 1, nothing validated
    config_file = write_config_file(
        short.with_overrides(paths={"raw_input": str(raw)}), copy.config_file.with_name("v.yaml")
    )
    code, _, err = run_captured(config_file, "validate")
    assert code == 1 and "older than the retention period" in err


def test_run_destroys_first_when_configured(tmp_path):
    """``retention.in_run``: ``outreach run`` runs retention before validate (which then stops
    here on purpose, at once: its indicator catalogue is missing)."""
    from conftest import make_config

    raw = tmp_path / "raw"
    shutil.copytree(REPO_ROOT / "data_samples" / "raw", raw)
    config = make_config(
        tmp_path / "outputs",
        paths={
            "raw_input": str(raw),
            "truth_input": str(tmp_path / "none"),
            "indicators": str(tmp_path / "missing.yaml"),
        },
        retention={"in_run": True, "period_months": 12, "today": "2026-12"},
    )
    code, out, err = run_captured(write_config_file(config, tmp_path / "config.yaml"), "run")
    assert code == 2 and "missing.yaml" in err
    assert out.index("==> retention") < out.index("==> validate")
    assert f"before {FIRST_CUT}" in out
    events = pq.read_table(raw / "crisis_events").column("reported_month")
    assert pc.min(events).as_py() == FIRST_CUT
    records = ledger.entries_of(ledger.read(tmp_path / "outputs").entries, ledger.DATA_DESTROYED)
    assert [r["facts"]["cut"] for r in records] == [FIRST_CUT]


def test_a_recorded_digest_is_explained_only_along_its_own_path():
    """Two runs rewrote one file (a -> b -> c); another file that became empty (x -> e) was
    removed elsewhere with the same empty digest: each problem is judged by its path's chain."""
    from pipeline.audit.destroyed import destroyed_from, explains

    a, b, c, e, x = ("a" * 64, "b" * 64, "c" * 64, "e" * 64, "9" * 64)
    entries = [
        {
            "event": ledger.DATA_DESTROYED,
            "facts": {
                "datasets": [
                    {"path": "raw/t/p.parquet", "action": "rows", "sha256": a, "sha256_after": b},
                    {"path": "f/as_of=2024-04", "action": "folder", "files": {"l.parquet": e}},
                    {"path": "f/as_of=2025-12/l.parquet", "action": "rows", "sha256": x,
                     "sha256_after": e},
                ],
            },
        },
        {
            "event": ledger.DATA_DESTROYED,
            "facts": {
                "datasets": [
                    {"path": "raw/t/p.parquet", "action": "rows", "sha256": b, "sha256_after": c}
                ]
            },
        },
    ]  # fmt: skip
    found = destroyed_from(entries)
    short = {d: d[:12] for d in (a, b, c, e, x)}
    assert explains(
        f"/in/raw/t/p.parquet: sha256 {short[c]} differs from the recorded {short[a]}", found
    )
    assert not explains(
        f"/in/raw/t/p.parquet: sha256 {short[b]} differs from the recorded {short[a]}", found
    )
    assert explains(
        f"f/as_of=2025-12/l.parquet: sha256 {short[e]} differs from the recorded {short[x]}", found
    )
    assert explains(f"f/as_of=2024-04/l.parquet: missing (recorded sha256 {short[e]})", found)
    assert not explains(f"f/as_of=2025-12/l.parquet: missing (recorded sha256 {short[e]})", found)
    assert explains("f/as_of=2024-04: feature folder of the training data is missing", found)
    assert not explains("f/as_of=2026-02: feature folder of the training data is missing", found)


def test_synthetic_data_counts_back_from_its_own_present(tmp_path):
    """Generated data has its own calendar: the period counts back from the month after
    ``window.end`` (so the committed sample is never refused or rewritten as the years pass);
    other data from this month; a pinned ``retention.today`` wins over both."""
    from datetime import UTC, datetime

    from conftest import make_config

    from pipeline.datasets.raw import retention_cut, retention_reference

    sample = make_config(tmp_path / "o")  # raw input: data_samples/raw (written by generate)
    assert retention_reference(sample) == parse_month("2026-10")
    assert retention_cut(sample) == parse_month("2021-10")
    delivered = tmp_path / "delivered"
    delivered.mkdir()
    real = sample.with_overrides(paths={"raw_input": str(delivered)})
    now = datetime.now(UTC)
    assert retention_reference(real) == now.year * 12 + now.month - 1
    pinned = real.with_overrides(retention={"today": "2030-01", "period_months": 12})
    assert retention_cut(pinned) == parse_month("2029-01")
    assert retention_cut(pinned, parse_month("2027-06")) == parse_month("2026-06")


def test_training_leaves_out_rounds_older_than_the_period(tmp_path):
    """After retention, train neither rebuilds nor learns from rounds before the cut."""
    from conftest import make_config

    from pipeline.train.fit import plan_rounds

    config = make_config(tmp_path / "o")
    as_of = parse_month("2026-10")
    rounds, _ = plan_rounds(config, as_of)
    assert rounds[0] == parse_month("2024-04")
    short = config.with_overrides(retention={"today": "2026-10", "period_months": 24})
    kept, tests = plan_rounds(short, as_of)
    assert kept == [r for r in rounds if r >= parse_month("2024-10")]
    assert tests == kept[-3:]
    with pytest.raises(DataError, match="within the retention period"):
        plan_rounds(
            config.with_overrides(retention={"today": "2026-10", "period_months": 12}), as_of
        )


def test_the_committed_sample_inside_the_repository_is_never_rewritten(tmp_path, caplog):
    """Even a reference date that makes all of it old leaves ``data_samples/`` as it is (the
    files are committed); the output root's own copies still go."""
    from conftest import make_config

    config = make_config(tmp_path / "o")  # raw and truth inputs: data_samples/ in the repo
    with caplog.at_level("WARNING", logger="pipeline.retention.plan"):
        actions = plan(config, tmp_path / "o", parse_month("2030-01"))
    sample = (REPO_ROOT / "data_samples").resolve()
    assert not [a for a in actions if sample in Path(a.path).resolve().parents]
    assert "lies inside the repository: left as it is" in caplog.text
    outside = tmp_path / "raw"
    shutil.copytree(REPO_ROOT / "data_samples" / "raw", outside)
    moved = config.with_overrides(paths={"raw_input": str(outside)})
    assert [
        a
        for a in plan(moved, tmp_path / "o", parse_month("2030-01"))
        if outside in Path(a.path).parents
    ]


def test_the_untreated_need_of_an_advanced_world_is_destroyed_with_the_truth(tmp_path):
    """The table an advance adds beside the truth (each month's need before its contacts) is
    dated by month like the truth, and its old rows go with the truth's."""
    import pandas as pd

    from pipeline.datasets import TableLayout
    from pipeline.datasets.truth import TRUTH_TABLE, UNTREATED_TABLE
    from pipeline.io import write_parquet
    from pipeline.retention.plan import truth_actions

    layout = TableLayout(tmp_path / "truth")
    rows = pd.DataFrame(
        {
            "household_key": ["a", "a", "a"],
            "month": ["2026-10", "2026-11", "2026-12"],
            "in_need": [True, False, True],
        }
    )
    write_parquet(rows.assign(hardship=1.0), layout.partition_file(TRUTH_TABLE, "1111000000"))
    write_parquet(rows, layout.partition_file(UNTREATED_TABLE, "1111000000"))
    actions = truth_actions(tmp_path / "truth", "truth", parse_month("2026-12"))
    by_table = {a.dataset: (a.rows, a.rows_kept) for a in actions}
    assert by_table == {f"truth/{TRUTH_TABLE}": (2, 1), f"truth/{UNTREATED_TABLE}": (2, 1)}
