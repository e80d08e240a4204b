"""Bad raw input: each kind stops validation with a clear one-line error, or sets rows aside.

Every case copies the committed sample's raw tables, breaks one thing and runs
``outreach validate`` in-process. A stopping case must exit 1 with one summary line naming the
table, column, expectation, count and examples, leave no half-built folder and no pointer that
looks like a pass. A quarantine case exits 0 and lists the row, with its reason, in the
rejected-rows file (ingest then leaves it out).
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
        _month("loan_delinquency", "2025-09", twice=True),
        (
            "crisis_events_volume | upper, signals | "
            "expect_column_pair_values_a_to_be_greater_than_b",
            "loan_delinquency 2025-09",
            "delivered twice",
        ),
    ),
    "partition of an unknown 시군구 (and keys in two partitions)": Stop(
        "partition",
        _unknown_partition,
        ("partitions | sigungu | expect_column_values_to_be_in_set", "9999000000"),
    ),
}

STOP_HEAD = "outreach: data error: validation failed:"


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """One validation run per group of stopping cases: group -> (config, exit code, stderr)."""
    runs = {}
    for group in dict.fromkeys(stop.group for stop in STOPS.values()):
        tmp = tmp_path_factory.mktemp(f"stop-{group}")
        raw = copy_sample(tmp / "raw")
        for stop in STOPS.values():
            if stop.group == group:
                stop.break_it(raw)
        config, config_file = config_for(tmp, raw)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = run_cli(config_file, "validate")
        runs[group] = (config, code, err.getvalue())
    return runs


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
                differs = ~(before.astype(str) == frame.astype(str)).all(axis=1)
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
