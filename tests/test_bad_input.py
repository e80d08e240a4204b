"""Bad input a user can cause: each kind stops with a clear one-line error, or sets rows aside.

Raw tables: every case copies the committed sample's raw tables, breaks one thing and runs
``outreach validate`` in-process. A stopping case must exit 1 with a first line naming the
table, partition, raw column and count, one summary line per failed check naming table, column,
expectation, count and examples, leave no half-built folder and no pointer that looks like a
pass. A quarantine case exits 0 and lists the row, with its reason, in the rejected-rows file;
ingest then stages the other rows.

Configs, command-line arguments and returned lists: each case exits with its code (2 usage or
configuration, 1 data) and one line naming the file, key, option or column, and writes nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _validate_helpers import (
    SAMPLE_RAW,
    config_for,
    copy_sample,
    latest_record,
    latest_run_dir,
    leftovers,
    partitions,
    rejected_rows,
    rewrite,
    run_cli,
    validation_dir,
)
from conftest import REPO_ROOT, copy_outputs

from pipeline.cli import main
from pipeline.datasets import TableLayout


def _set(frame: pd.DataFrame, row: int, **values) -> pd.DataFrame:
    """A copy with some cells of one row replaced."""
    frame = frame.copy()
    for column, value in values.items():
        series = frame[column].astype(object)
        series.iloc[row] = value
        frame[column] = series.astype(frame[column].dtype) if value is not None else series
    return frame


def _first_row(frame: pd.DataFrame, **where) -> int:
    mask = np.ones(len(frame), dtype=bool)
    for column, value in where.items():
        mask &= (frame[column] == value).to_numpy()
    return int(np.flatnonzero(mask)[0])


@dataclass(frozen=True)
class Stop:
    """A bad input that must stop validation.

    Cases of one ``group`` break different partitions or rows of one copy of the sample and
    share a validation run (Great Expectations' fixed cost per run would make one run per case
    slow); each case still asserts its own summary line.
    """

    group: str
    break_it: Callable[[Path], None]
    expected: tuple[str, ...]  # fragments of one summary line
    headline: tuple[str, ...] = ()  # fragments of the first line (a group of one case only)
    catalogue: Callable[[str], str] | None = None  # changes the indicator catalogue's YAML


def _p(raw: Path, n: int) -> str:
    return partitions(raw)[n]


def _emd_of(raw: Path, partition: int) -> str:
    """A 읍면동 code of the n-th partition's 시군구."""
    regions = pd.read_parquet(TableLayout(raw).small_table_file("regions"))
    emd = regions[(regions["level"] == "emd") & (regions["sigungu_code"] == _p(raw, partition))]
    return str(emd["region_code"].iloc[0])


def _file(raw: Path, table: str, n: int) -> Path:
    return TableLayout(raw).partition_file(table, _p(raw, n))


def _truncate(raw: Path) -> None:
    path = _file(raw, "crisis_events", 1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_pages(raw: Path) -> None:
    path = _file(raw, "household_members", 2)
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 2000] = bytes(2000)  # header and footer intact, pages broken
    path.write_bytes(bytes(data))


def _month(indicator: str, month: str, twice: bool) -> Callable[[Path], None]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        chosen = (frame["indicator_code"] == indicator) & (frame["reported_month"] == month)
        if twice:
            return pd.concat([frame, frame[chosen]], ignore_index=True)
        return frame[~chosen].reset_index(drop=True)

    return lambda raw: rewrite(raw, "crisis_events", change)


def _unknown_partition(raw: Path) -> None:
    layout = TableLayout(raw)
    for table in ("households", "household_members", "crisis_events", "outreach_outcomes"):
        target = layout.partition_file(table, "9999000000")
        target.parent.mkdir(parents=True)
        shutil.copy(layout.partition_file(table, _p(raw, 0)), target)


def _many_unknown_residents(raw: Path) -> None:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        chosen = np.arange(len(frame)) % 10 == 0  # 10% of one partition's rows
        ids = frame["resident_id"].astype(object)
        ids[chosen] = [f"000000-{i:07d}" for i in range(int(chosen.sum()))]
        frame["resident_id"] = ids.astype("str")
        return frame

    rewrite(raw, "crisis_events", change, partition=_p(raw, 0))


def _indicator_row(frame: pd.DataFrame, indicator: str, n: int = 0) -> int:
    """The n-th row of an indicator's signals."""
    return int(np.flatnonzero((frame["indicator_code"] == indicator).to_numpy())[n])


def _resident_in_two_partitions(raw: Path) -> None:
    """A member of the second 시군구 gets the resident id of a member of the first."""
    first = pd.read_parquet(_file(raw, "household_members", 0), columns=["resident_id"])
    other = str(first["resident_id"].iloc[0])
    rewrite(raw, "household_members", lambda f: _set(f, 1, resident_id=other), partition=_p(raw, 1))


def _telecom_bounds_stop(text: str) -> str:
    """The catalogue with telecom arrears' bounds stopping the run instead of setting aside."""
    bounds = "bounds: {min: 1, max: 50000000}"
    assert text.count(bounds) == 1
    return text.replace(bounds, "bounds: {min: 1, max: 50000000, on_failure: stop}")


def _in(
    table: str, n: int, change: Callable[[pd.DataFrame], pd.DataFrame]
) -> Callable[[Path], None]:
    return lambda raw: rewrite(raw, table, change, partition=_p(raw, n))


def _schema(
    table: str, n: int, change: Callable[[pd.DataFrame], pd.DataFrame]
) -> Callable[[Path], None]:
    return lambda raw: rewrite(raw, table, change, partition=_p(raw, n), keep_schema=False)


STOPS: dict[str, Stop] = {
    # Files: each in another partition.
    "missing file": Stop(
        "files",
        lambda raw: _file(raw, "households", 0).unlink(),
        ("households sigungu=", "| (file) | file_readable |", "part-0.parquet: file missing"),
    ),
    "missing partition folder": Stop(
        "files",
        lambda raw: shutil.rmtree(_file(raw, "outreach_outcomes", 1).parent),
        ("outreach_outcomes sigungu=", "file_readable", "file missing"),
    ),
    "empty file (0 bytes)": Stop(
        "files",
        lambda raw: _file(raw, "outreach_outcomes", 3).write_bytes(b""),
        ("outreach_outcomes sigungu=", "file_readable", "file is empty (0 bytes)"),
    ),
    "truncated parquet": Stop(
        "files",
        _truncate,
        ("crisis_events sigungu=", "file_readable", "not a readable Parquet file"),
    ),
    "corrupt parquet pages": Stop(
        "files",
        _corrupt_pages,
        ("household_members sigungu=", "file_readable", "data pages unreadable"),
    ),
    "stray file in the raw input": Stop(
        "files",
        lambda raw: shutil.copy(
            _file(raw, "crisis_events", 0),
            _file(raw, "crisis_events", 0).with_name("part-1.parquet"),
        ),
        ("crisis_events | (file) | file_readable", "unexpected file in the raw input"),
    ),
    # Schemas and empty tables.
    "missing column": Stop(
        "schema",
        _schema("households", 1, lambda f: f.drop(columns=["tenure"])),
        ("households sigungu=", "expect_table_columns_to_match_set", "missing tenure"),
    ),
    "unexpected extra column": Stop(
        "schema",
        _schema("household_members", 0, lambda f: f.assign(email="x@example.org")),
        ("household_members sigungu=", "expect_table_columns_to_match_set", "unexpected email"),
    ),
    "wrong type": Stop(
        "schema",
        _schema("households", 2, lambda f: f.assign(size=f["size"].astype(str))),
        ("households sigungu=", "| size | expect_column_values_to_be_in_type_list", "found str"),
    ),
    "empty table (no rows)": Stop(
        "schema",
        _in("crisis_events", 3, lambda f: f.iloc[:0]),
        (
            "file_rows | rows | expect_column_values_to_be_between | 1 unexpected",
            "crisis_events (sigungu=",
        ),
    ),
    "null key": Stop(
        "schema",
        _in("households", 3, lambda f: _set(f, 3, household_key=None)),
        ("households | household_key | expect_column_values_to_not_be_null | 1 unexpected",),
    ),
    # Keys, references and codes: each in another partition or table.
    "duplicate key": Stop(
        "keys",
        _in("households", 0, lambda f: pd.concat([f, f.iloc[[5]]], ignore_index=True)),
        ("households | household_key | expect_column_values_to_be_unique | 2 unexpected",),
    ),
    "unknown region": Stop(
        "keys",
        _in("households", 1, lambda f: _set(f, 2, emd_code="1199999900")),
        ("households | emd_code | expect_column_values_to_be_in_set | 1 unexpected",),
    ),
    "household outside its partition": Stop(
        "keys",
        lambda raw: rewrite(
            raw, "households", lambda f: _set(f, 2, emd_code=_emd_of(raw, 0)), partition=_p(raw, 2)
        ),
        (
            "households | emd_sigungu, sigungu | expect_column_pair_values_to_be_equal | "
            "1 unexpected",
        ),
    ),
    "duplicate resident id": Stop(
        "keys",
        _in("household_members", 2, lambda f: _set(f, 1, resident_id=f["resident_id"].iloc[0])),
        ("household_members | resident_ref | expect_column_values_to_be_unique | 2 unexpected",),
    ),
    "member of an unknown household": Stop(
        "keys",
        _in("household_members", 3, lambda f: _set(f, 4, household_key="H9999999999")),
        ("household_members | household_row | expect_column_values_to_not_be_null | 1 unexpected",),
    ),
    "null event month (key)": Stop(
        "keys",
        _in("crisis_events", 1, lambda f: _set(f, 6, event_month=None)),
        ("crisis_events | event_month | expect_column_values_to_not_be_null | 1 unexpected",),
    ),
    "duplicate outcome rows": Stop(
        "keys",
        _in("outreach_outcomes", 0, lambda f: pd.concat([f, f.iloc[[0]]], ignore_index=True)),
        (
            "outreach_outcomes | household_key, round_month | "
            "expect_compound_columns_to_be_unique | 2 unexpected",
        ),
    ),
    "too many signals for unknown residents": Stop(
        "keys",
        _many_unknown_residents,
        (
            "crisis_events sigungu=",
            "| member_row | rejected_share",
            "above validation.max_rejected_share",
        ),
    ),
    # Capacity: one row each.
    "zero capacity": Stop(
        "capacity",
        lambda raw: rewrite(raw, "district_capacity", lambda f: _set(f, 0, capacity_per_round=0)),
        ("district_capacity | capacity_per_round | expect_column_values_to_be_between",),
    ),
    "negative capacity": Stop(
        "capacity",
        lambda raw: rewrite(raw, "district_capacity", lambda f: _set(f, 1, capacity_per_round=-3)),
        (
            "district_capacity | capacity_per_round | expect_column_values_to_be_between | "
            "2 unexpected",
        ),
    ),
    "capacity for an unknown 읍면동": Stop(
        "capacity",
        lambda raw: rewrite(raw, "district_capacity", lambda f: _set(f, 2, emd_code="1199999900")),
        ("district_capacity | emd_code | expect_column_values_to_be_in_set | 1 unexpected",),
    ),
    # Volume: two sources, two months.
    "source missing for a whole month": Stop(
        "volume",
        _month("telecom_arrears", "2025-07", twice=False),
        (
            "crisis_events_volume | signals, lower | "
            "expect_column_pair_values_a_to_be_greater_than_b",
            "telecom_arrears 2025-07",
            "stopped delivering",
        ),
    ),
    "source delivered twice": Stop(
        "volume",
        _month("health_ins_arrears", "2025-09", twice=True),
        (
            "crisis_events_volume | upper, signals | "
            "expect_column_pair_values_a_to_be_greater_than_b",
            "health_ins_arrears 2025-09",
            "delivered twice",
        ),
    ),
    "partition of an unknown 시군구 (and keys in two partitions)": Stop(
        "partition",
        _unknown_partition,
        ("partitions | sigungu | expect_column_values_to_be_in_set", "9999000000"),
    ),
    # One case per run: the first line names the table, partition, raw column and count.
    "households partition with no rows": Stop(
        "no households",
        _in("households", 2, lambda f: f.iloc[:0]),
        ("file_rows | rows | expect_column_values_to_be_between", "households (sigungu="),
        headline=("households sigungu=", "| (rows) |", "1 file(s) with no rows"),
    ),
    "duplicate resident id within a 시군구": Stop(
        "resident id twice in a 시군구",
        _in("household_members", 0, lambda f: _set(f, 7, resident_id=f["resident_id"].iloc[3])),
        ("household_members | resident_ref | expect_column_values_to_be_unique | 2 unexpected",),
        headline=("household_members sigungu=", "| resident_id |", "2 unexpected", "duplicate"),
    ),
    "duplicate resident id across 시군구": Stop(
        "resident id in two 시군구",
        _resident_in_two_partitions,
        (
            "keys_across_partitions | key_hash | expect_column_values_to_be_unique | 2 unexpected",
            "household_members (sigungu=",
        ),
        headline=("household_members sigungu=", "| resident_id |", "2 unexpected"),
    ),
    "null resident id in crisis events": Stop(
        "null resident id",
        _in("crisis_events", 2, lambda f: _set(f, 11, resident_id=None)),
        (
            "crisis_events sigungu=",
            "| resident_ref | expect_column_values_to_not_be_null | 1 unexpected",
        ),
        headline=("crisis_events sigungu=", "| resident_id |", "1 unexpected", "resident id"),
    ),
    "implausible amount where the catalogue says stop": Stop(
        "bounds stop",
        _in(
            "crisis_events",
            3,
            lambda f: _set(f, _indicator_row(f, "telecom_arrears"), value=1e15),
        ),
        (
            "crisis_events sigungu=",
            "| value_max_stop, value | expect_column_pair_values_a_to_be_greater_than_b",
            "1 unexpected",
        ),
        headline=("crisis_events sigungu=", "| value |", "1 unexpected", "plausible maximum"),
        catalogue=_telecom_bounds_stop,
    ),
}

STOP_HEAD = "outreach: data error: validation failed:"
PARTITIONED = ("households", "household_members", "crisis_events", "outreach_outcomes")


class _StopRuns(dict):
    """group -> (config, exit code, stderr): each group validated once, when first asked for."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        super().__init__()
        self.tmp_path_factory = tmp_path_factory

    def __missing__(self, group: str) -> tuple:
        tmp = self.tmp_path_factory.mktemp(f"stop-{group}")
        raw = copy_sample(tmp / "raw")
        paths = {}
        for stop in STOPS.values():
            if stop.group == group:
                stop.break_it(raw)
                if stop.catalogue is not None:
                    text = (REPO_ROOT / "configs" / "indicators.yaml").read_text(encoding="utf-8")
                    catalogue = tmp / "indicators.yaml"
                    catalogue.write_text(stop.catalogue(text), encoding="utf-8")
                    paths["indicators"] = str(catalogue)
        config, config_file = config_for(tmp, raw, paths=paths)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = run_cli(config_file, "validate")
        self[group] = (config, code, err.getvalue())
        return self[group]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """One validation run per group of stopping cases (run when a test first needs it)."""
    return _StopRuns(tmp_path_factory)


@pytest.mark.parametrize("case", list(STOPS), ids=list(STOPS))
def test_bad_input_stops_with_one_clear_line(case, stopped):
    _, code, err = stopped[STOPS[case].group]
    assert code == 1, err
    assert STOP_HEAD in err, err
    lines = [line.strip() for line in err.split(STOP_HEAD, 1)[1].splitlines()[1:]]
    matching = [line for line in lines if all(part in line for part in STOPS[case].expected)]
    assert len(matching) == 1, f"no single line with {STOPS[case].expected} in:\n{err}"
    # The line names table, column, expectation and count; identifiers never appear.
    assert matching[0].count(" | ") >= 3
    assert "resident_id=" not in err and "000000-" not in err


def _first_line(err: str) -> str:
    return err.split(STOP_HEAD, 1)[1].splitlines()[0].strip()


@pytest.mark.parametrize("case", [c for c, s in STOPS.items() if s.headline])
def test_the_first_line_names_table_partition_column_and_count(case, stopped):
    _, code, err = stopped[STOPS[case].group]
    assert code == 1 and "Traceback" not in err, err
    first = _first_line(err)
    assert all(part in first for part in STOPS[case].headline), first
    # The column is the raw table's, never a surrogate of an identifier.
    assert first.split(" | ")[1] not in ("resident_ref", "key_hash", "member_row"), first


@pytest.mark.parametrize("group", sorted({s.group for s in STOPS.values()}))
def test_every_stop_names_a_table_and_a_column_on_its_first_line(group, stopped):
    _, code, err = stopped[group]
    assert code == 1 and "Traceback" not in err, err
    first = _first_line(err)
    tables = ("regions", "district_capacity", *PARTITIONED, "crisis_events_volume", "partitions")
    assert first.split(" | ")[0].split(" sigungu=")[0] in tables, first
    assert first.count(" | ") >= 3 and "check(s) stop the run" in first, first


@pytest.mark.parametrize("group", sorted({s.group for s in STOPS.values()}))
def test_a_stopped_run_leaves_no_pass_and_no_partial_output(group, stopped):
    config, code, _ = stopped[group]
    folder = validation_dir(config)
    assert code == 1
    assert not (folder / "passed.json").exists()
    record = latest_record(config)
    assert record["status"] == "failed" and record["failures"]
    assert not leftovers(folder)
    summary = (latest_run_dir(config) / "summary.html").read_text(encoding="utf-8")
    assert "FAILED" in summary and "What stopped the run" in summary


# Row-level faults set aside (one validation run for all of them, each asserted on its own) -----


@dataclass(frozen=True)
class Quarantine:
    table: str
    change: Callable[[pd.DataFrame], pd.DataFrame]
    reason: str  # fragment of the rejected row's reason


def _events_row(frame: pd.DataFrame, n: int) -> int:
    """The n-th row of power_cut signals reported in their event month (plain rows to break)."""
    rows = np.flatnonzero(
        (frame["indicator_code"] == "power_cut") & (frame["event_month"] == frame["reported_month"])
    )
    return int(rows[n])


QUARANTINES: dict[str, Quarantine] = {
    "unknown indicator code": Quarantine(
        "crisis_events",
        lambda f: _set(f, _events_row(f, 0), indicator_code="bogus_signal"),
        "unknown indicator code",
    ),
    "agency does not deliver the indicator": Quarantine(
        "crisis_events",
        lambda f: _set(f, _events_row(f, 1), source_agency="한국가스공사"),
        "source agency does not deliver this indicator",
    ),
    "negative amount": Quarantine(
        "crisis_events",
        lambda f: _set(f, _events_row(f, 2), value=-50000.0),
        "negative value",
    ),
    "reported before the event": Quarantine(
        "crisis_events",
        lambda f: _set(f, _events_row(f, 3), event_month="2026-09", reported_month="2026-08"),
        "reported before the event happened",
    ),
    "month after the data window": Quarantine(
        "crisis_events",
        lambda f: _set(f, _events_row(f, 4), event_month="2026-10", reported_month="2026-10"),
        "reported month is not a month of the data window",
    ),
    "signal before its source exists": Quarantine(
        "crisis_events",
        lambda f: _set(
            f,
            _events_row(f, 5),
            indicator_code="wage_arrears",
            source_agency="고용노동부",
            event_month="2024-03",
            reported_month="2024-03",
        ),
        "reported before its source started delivering",
    ),
    "signal for an unknown resident id": Quarantine(
        "crisis_events",
        lambda f: _set(f, _events_row(f, 6), resident_id="000000-0000000"),
        "signal for a resident id not in household_members",
    ),
    "implausible amount (1e15 won of telecom arrears)": Quarantine(
        "crisis_events",
        lambda f: _set(f, _indicator_row(f, "telecom_arrears", 1), value=1e15),
        "value above its indicator's plausible maximum",
    ),
    "flag other than 1": Quarantine(
        "crisis_events",
        lambda f: _set(f, _events_row(f, 7), value=7.0),
        "value above its indicator's plausible maximum (value_max",
    ),
    "zero months in arrears": Quarantine(
        "crisis_events",
        lambda f: _set(f, _indicator_row(f, "electricity_arrears", 2), value=0.0),
        "value below its indicator's plausible minimum",
    ),
    "malformed month": Quarantine(
        "crisis_events",
        lambda f: _set(f, _events_row(f, 8), event_month="2025-13", reported_month="2025-13"),
        "event month is not a month of the data window",
    ),
    "unknown outcome code": Quarantine(
        "outreach_outcomes",
        lambda f: _set(f, 1, outcome_code="moved_away"),
        "unknown outcome code",
    ),
    "resolved before the round": Quarantine(
        "outreach_outcomes",
        lambda f: _set(
            f,
            _first_row(f, outcome_code="closed_no_need"),
            resolved_month="2023-11",
        ),
        "resolved before the round",
    ),
    "selection probability out of (0, 1]": Quarantine(
        "outreach_outcomes",
        lambda f: _set(f, 3, selection_probability=0.0),
        "selection probability must lie in (0, 1]",
    ),
    # a central pick must record its probability; local picks record none (nobody's record):
    # the local pick's empty probability is changed here too and must be kept (test below)
    "selection probability missing": Quarantine(
        "outreach_outcomes",
        lambda f: _set(
            _set(f, _first_row(f, selection_reason="central_rule"), selection_probability=np.nan),
            _first_row(f, selection_reason="local_discretion"),
            selection_probability=np.nan,
        ),
        "selection probability missing",
    ),
    "outcome for an unknown household": Quarantine(
        "outreach_outcomes",
        lambda f: _set(f, 4, household_key="H9999999999"),
        "outcome for a household not in households",
    ),
}


@pytest.fixture(scope="module")
def quarantined(tmp_path_factory):
    """One copy of the sample with every row-level fault in its own row, validated once."""
    tmp = tmp_path_factory.mktemp("quarantine")
    raw = copy_sample(tmp / "raw")
    code = partitions(raw)[0]
    by_table: dict[str, list[Quarantine]] = {}
    for fault in QUARANTINES.values():
        by_table.setdefault(fault.table, []).append(fault)
    expected_rows = {}
    for table, faults in by_table.items():

        def change(frame: pd.DataFrame, faults=faults) -> pd.DataFrame:
            for fault in faults:
                before = frame
                frame = fault.change(frame)
                same = (before == frame) | (before.isna() & frame.isna())  # missing = missing
                differs = ~same.fillna(False).all(axis=1)
                expected_rows[fault.reason] = int(np.flatnonzero(differs.to_numpy())[0])
            return frame

        rewrite(raw, table, change, partition=code)
    config, config_file = config_for(tmp, raw)
    exit_code = run_cli(config_file, "validate")
    return config, config_file, exit_code, code, expected_rows


def test_row_level_faults_do_not_stop_the_run(quarantined):
    config, _, exit_code, _, _ = quarantined
    assert exit_code == 0
    assert latest_record(config)["status"] == "passed"
    assert (validation_dir(config) / "passed.json").is_file()


@pytest.mark.parametrize("case", list(QUARANTINES), ids=list(QUARANTINES))
def test_row_level_fault_is_set_aside_with_its_reason(case, quarantined):
    config, _, _, code, expected_rows = quarantined
    fault = QUARANTINES[case]
    rejected = rejected_rows(config)
    mine = rejected[rejected["reason"].str.contains(fault.reason, regex=False)]
    assert len(mine) >= 1, rejected.to_string()
    assert set(mine["table"]) == {fault.table}
    assert set(mine["sigungu"]) == {code}
    assert expected_rows[fault.reason] in set(mine["row"])
    record = latest_record(config)
    assert any(fault.reason in q["reason"] for q in record["quarantine"])


def test_a_local_pick_without_a_probability_is_kept(quarantined):
    """Local discretion logs no selection probability (configs/outcomes.yaml): its empty
    probability sets nothing aside, while a central pick's does."""
    config, _, _, code, expected_rows = quarantined
    layout = TableLayout(Path(config.paths.raw_input))
    outcomes = pd.read_parquet(layout.partition_file("outreach_outcomes", code))
    local = outcomes["selection_reason"].astype(str).eq("local_discretion")
    empty = outcomes["selection_probability"].isna()
    assert (local & empty).any() and (~local & empty).any()
    rejected = rejected_rows(config)
    rejected = rejected[rejected["table"] == "outreach_outcomes"]
    # rows another fault changed (an unknown household, say) are set aside for that fault
    local_only = set(np.flatnonzero((local & empty).to_numpy())) - set(expected_rows.values())
    assert local_only and not local_only & set(rejected["row"])
    assert set(np.flatnonzero((~local & empty).to_numpy())) <= set(rejected["row"])


@pytest.fixture(scope="module")
def ingested_after_quarantine(quarantined):
    """``outreach ingest`` on the copy whose faulty rows validation set aside."""
    config, config_file, exit_code, _, _ = quarantined
    assert exit_code == 0
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = run_cli(config_file, "ingest")
    return config, code, err.getvalue()


def test_ingest_stages_the_rows_validation_kept(ingested_after_quarantine, quarantined):
    """Set-aside rows (unknown codes, malformed months) never reach ingest's checks."""
    config, code, err = ingested_after_quarantine
    assert code == 0, err
    rejected = rejected_rows(config)
    manifest = json.loads(
        (config.paths.output_root / "staged" / "_manifest.json").read_text(encoding="utf-8")
    )
    for table in ("crisis_events", "outreach_outcomes"):
        mine = rejected[rejected["table"] == table]
        assert manifest["rows"][table]["excluded"] == mine["row"].nunique() > 0
        rows = manifest["rows"][table]
        assert rows["staged"] == rows["raw"] - rows["excluded"]


def test_no_implausible_value_is_staged(ingested_after_quarantine, catalogue):
    config, code, _ = ingested_after_quarantine
    assert code == 0
    events = pd.read_parquet(config.paths.output_root / "staged" / "crisis_events")
    bounds = {i.code: catalogue.bounds_of(i) for i in catalogue.indicators}
    low = events["indicator_code"].astype(str).map(lambda c: bounds[c].min)
    high = events["indicator_code"].astype(str).map(lambda c: bounds[c].max)
    assert ((events["value"] >= low) & (events["value"] <= high)).all()
    assert events["value"].max() < 1e15


def test_rejected_rows_name_the_row_never_the_person(quarantined):
    config, _, _, _, _ = quarantined
    rejected = rejected_rows(config)
    assert list(rejected.columns) == ["table", "sigungu", "row", "check", "reason", "detail"]
    text = rejected.astype(str).to_string()
    assert "000000-0000000" not in text and "resident_id" not in text


def test_a_failed_run_keeps_the_last_good_result(tmp_path, capsys):
    raw = copy_sample(tmp_path / "raw")
    config, config_file = config_for(tmp_path, raw)
    assert run_cli(config_file, "validate") == 0
    passed = json.loads((validation_dir(config) / "passed.json").read_text(encoding="utf-8"))
    good = validation_dir(config) / passed["path"]

    rewrite(raw, "households", lambda f: pd.concat([f, f.iloc[[0]]], ignore_index=True))
    assert run_cli(config_file, "validate") == 1
    assert (
        json.loads((validation_dir(config) / "passed.json").read_text(encoding="utf-8")) == passed
    )
    assert json.loads((good / "validation.json").read_text(encoding="utf-8"))["status"] == "passed"
    assert latest_record(config)["status"] == "failed"
    assert len(list((validation_dir(config) / "runs").iterdir())) == 2
    # ... and ingest refuses the changed raw files.
    capsys.readouterr()
    assert run_cli(config_file, "ingest") == 1
    assert "changed since it was validated" in capsys.readouterr().err
    assert not (config.paths.output_root / "staged").exists()


def test_unreadable_raw_folder_is_one_line(tmp_path, capsys):
    _, config_file = config_for(tmp_path, tmp_path / "nowhere")
    assert run_cli(config_file, "validate") == 1
    err = capsys.readouterr().err
    assert "(raw input) | (file) | file_readable |" in err and "folder not found" in err


# Configs, command-line arguments and returned lists: exit code, one line, nothing written -------


def _main(*argv: str) -> int:
    """The CLI in-process; argparse's usage errors (SystemExit) become their exit code."""
    try:
        return main(list(argv))
    except SystemExit as exc:
        return int(exc.code)


def _message(err: str) -> list[str]:
    """The CLI's own lines on stderr (not the log lines, not argparse's usage lines)."""
    return [line for line in err.splitlines() if line.startswith("outreach:")]


def _written(root: Path) -> list[Path]:
    """Files a command left under an output root (the output root's lock file aside)."""
    if not root.exists():
        return []
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".outreach.lock")]


def _yaml_edit(change: Callable[[dict], None]) -> Callable[[str], str]:
    def edit(text: str) -> str:
        import yaml

        data = yaml.safe_load(text)
        change(data)
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)

    return edit


@dataclass(frozen=True)
class BadConfig:
    edit_config: Callable[[str], str] | None  # None: the config file is missing
    expected: tuple[str, ...]  # fragments of the one message line
    edit_catalogue: Callable[[str], str] | None = None


BAD_CONFIGS: dict[str, BadConfig] = {
    "config file missing": BadConfig(None, ("config file not found",)),
    "config not valid YAML": BadConfig(
        lambda text: text + "\npaths: [unclosed\n", ("config.yaml", "not valid YAML")
    ),
    "config with an unknown key": BadConfig(
        lambda text: text + "\nbogus_section: 1\n", ("config.yaml", "bogus_section", "unknown key")
    ),
    "config value of the wrong type": BadConfig(
        _yaml_edit(lambda d: d["runtime"].update(workers="many")),
        ("config.yaml", "runtime.workers", "integer"),
    ),
    "config value out of range": BadConfig(
        _yaml_edit(lambda d: d["validation"].update(max_rejected_share=2)),
        ("config.yaml", "validation.max_rejected_share", "less than or equal to 1"),
    ),
    "config section of the wrong type": BadConfig(
        _yaml_edit(lambda d: d.update(validation=["a", "list"])), ("config.yaml", "validation")
    ),
    "catalogue bounds with max below min": BadConfig(
        lambda text: text,
        ("indicators.yaml", "bounds", "max 1 is below min 100"),
        edit_catalogue=lambda t: t.replace(
            "bounds: {min: 1, max: 50000000}", "bounds: {min: 100, max: 1}"
        ),
    ),
    "catalogue bounds with an unknown failure mode": BadConfig(
        lambda text: text,
        ("indicators.yaml", "bounds.on_failure", "'quarantine' or 'stop'"),
        edit_catalogue=lambda t: t.replace(
            "bounds: {min: 1, max: 50000000}", "bounds: {min: 1, max: 50000000, on_failure: warn}"
        ),
    ),
    "catalogue indicator without bounds": BadConfig(
        lambda text: text,
        ("indicators.yaml", "no plausibility bounds"),
        edit_catalogue=lambda t: t.replace(
            "name_en: months, bounds: {min: 1, max: 120}}", "name_en: months}"
        ),
    ),
    "catalogue bounds below zero": BadConfig(
        lambda text: text,
        ("indicators.yaml", "bounds.min", "greater than or equal to 0"),
        edit_catalogue=lambda t: t.replace(
            "bounds: {min: 1, max: 50000000}", "bounds: {min: -5, max: 50000000}"
        ),
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS), ids=list(BAD_CONFIGS))
def test_bad_config_is_one_line_and_writes_nothing(case, tmp_path, capsys):
    bad = BAD_CONFIGS[case]
    paths = {}
    if bad.edit_catalogue is not None:
        text = (REPO_ROOT / "configs" / "indicators.yaml").read_text(encoding="utf-8")
        edited = bad.edit_catalogue(text)
        assert edited != text
        (tmp_path / "indicators.yaml").write_text(edited, encoding="utf-8")
        paths["indicators"] = str(tmp_path / "indicators.yaml")
    config, config_file = config_for(tmp_path, SAMPLE_RAW, paths=paths)
    if bad.edit_config is None:
        config_file.unlink()
    else:
        config_file.write_text(bad.edit_config(config_file.read_text(encoding="utf-8")))
    code = _main("--no-progress", "--config", str(config_file), "validate")
    err = capsys.readouterr().err
    assert code == 2, err
    (line,) = _message(err)
    assert line.startswith("outreach: configuration error:"), line
    assert all(part in line for part in bad.expected), line
    assert "Traceback" not in err
    assert not _written(config.paths.output_root)


@dataclass(frozen=True)
class BadArguments:
    argv: tuple[str, ...]
    code: int
    expected: tuple[str, ...]  # fragments of the last message line


BAD_ARGUMENTS: dict[str, BadArguments] = {
    "--as-of not a month": BadArguments(("features", "--as-of", "2026-13"), 2, ("--as-of",)),
    "--as-of not YYYY-MM": BadArguments(("score", "--as-of", "garbage"), 2, ("--as-of",)),
    "unknown stage option": BadArguments(
        ("validate", "--bogus"), 2, ("unrecognized arguments: --bogus",)
    ),
    "unknown stage": BadArguments(("nosuchstage",), 2, ("invalid choice: 'nosuchstage'",)),
    "outcomes without an action": BadArguments(("outcomes",), 2, ("required", "ACTION")),
    "outcomes import without files": BadArguments(("outcomes", "import"), 2, ("required", "FILE")),
    "--raw-dir that does not exist": BadArguments(
        ("validate", "--raw-dir", "/nonexistent/raw"),
        1,
        ("(raw input) | (file) | file_readable", "/nonexistent/raw", "folder not found"),
    ),
    "ingest before any validation": BadArguments(
        ("ingest",), 1, ("ingest: no passing validation", "outreach validate")
    ),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS), ids=list(BAD_ARGUMENTS))
def test_bad_arguments_are_one_line_and_write_nothing(case, tmp_path, capsys):
    bad = BAD_ARGUMENTS[case]
    config, config_file = config_for(tmp_path)
    code = _main("--no-progress", "--config", str(config_file), *bad.argv)
    err = capsys.readouterr().err
    assert code == bad.code, err
    lines = _message(err)
    assert lines and all(part in lines[0] for part in bad.expected), err
    assert "Traceback" not in err
    root = config.paths.output_root
    # Nothing staged, built or scored; a failed validation keeps its record and no pass.
    written = {p.relative_to(root).parts[0] for p in _written(root)}
    assert written <= {"validation"}, written
    assert not (root / "validation" / "passed.json").exists()
    assert not leftovers(root)


# Returned lists ------------------------------------------------------------------------------


def _list_of(scored) -> Path:
    return sorted((scored.round_dir / "lists").rglob("emd_*.csv"))[0]


def _other_round(scored, folder: Path) -> Path:
    path = folder / "old_round.csv"
    lines = _list_of(scored).read_text(encoding="utf-8-sig").splitlines()
    body = [line.replace(scored.as_of, "2019-01", 1) for line in lines[1:]]
    path.write_text("\n".join([lines[0], *body]) + "\n", encoding="utf-8-sig")
    return path


def _no_list(scored, folder: Path) -> Path:
    path = folder / "notes.csv"
    path.write_text("name,phone\nsomeone,010-0000-0000\n", encoding="utf-8")
    return path


def _broken_workbook(scored, folder: Path) -> Path:
    path = folder / "list.xlsx"
    path.write_bytes(b"\x00\x01 not a workbook")
    return path


def _empty_file(scored, folder: Path) -> Path:
    path = folder / "empty.csv"
    path.write_bytes(b"")
    return path


BAD_LISTS: dict[str, tuple[Callable[[object, Path], Path], tuple[str, ...]]] = {
    "returned list missing": (lambda s, f: f / "missing.csv", ("missing.csv", "not found")),
    "a file that is not a returned list": (_no_list, ("notes.csv", "header lacks column(s)")),
    "a workbook that cannot be read": (_broken_workbook, ("list.xlsx", "not a readable XLSX")),
    "an empty file": (_empty_file, ("empty.csv",)),
    "a list of a round not scored here": (_other_round, ("round 2019-01", "not scored here")),
}


@pytest.fixture(scope="module")
def scored_copy(scored_sample, tmp_path_factory):
    return copy_outputs(scored_sample, tmp_path_factory.mktemp("lists"))


@pytest.mark.parametrize("case", list(BAD_LISTS), ids=list(BAD_LISTS))
def test_bad_returned_list_is_one_line_and_imports_nothing(case, scored_copy, tmp_path, capsys):
    make, expected = BAD_LISTS[case]
    path = make(scored_copy, tmp_path)
    store = scored_copy.config.paths.output_root / "outcomes"
    before = sorted(p.relative_to(store) for p in store.rglob("*")) if store.exists() else None
    code = _main("--no-progress", "--config", str(scored_copy.config_file), "outcomes", "import",
                 str(path))  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1, err
    lines = _message(err)
    assert lines and lines[0].startswith("outreach: data error:"), err
    assert all(part in lines[0] for part in expected), lines[0]
    assert "Traceback" not in err and "010-0000-0000" not in err and "someone" not in err
    after = sorted(p.relative_to(store) for p in store.rglob("*")) if store.exists() else None
    assert after == before
