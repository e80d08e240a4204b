"""Pure parts of validation: suites, volume bounds, checked frames, key lookups, verdicts."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipeline import fixedwidth
from pipeline.config import Config, VolumeConfig
from pipeline.expectations import QUARANTINE, STOP, result_key, snake_case
from pipeline.months import parse_month
from pipeline.validate import frames
from pipeline.validate.checks import all_suites, suite_inputs, yyyymm
from pipeline.validate.contract import CONTRACTS, DIRECT_IDENTIFIERS
from pipeline.validate.verdict import format_example, read_results
from pipeline.validate.volume import combine_counts, volume_bounds
from pipeline.vocabulary import BENEFIT_STATUSES, INCOME_BANDS, RELATIONS, TENURES

REGIONS = {
    "all": ("1100000000", "1111000000", "1111051000"),
    "sido": ("1100000000",),
    "sigungu": ("1111000000",),
    "emd": ("1111051000",),
}


@pytest.fixture()
def inputs(catalogue, outcome_catalogue):
    return suite_inputs(Config(), catalogue, outcome_catalogue, REGIONS)


def test_value_sets_come_from_the_catalogues_and_match_the_generator(inputs, catalogue):
    assert inputs.indicator_codes == tuple(catalogue.codes)
    assert f"power_cut / {catalogue.by_code()['power_cut'].agency_ko}" in inputs.indicator_sources
    assert inputs.tenure == TENURES
    assert inputs.income_band == INCOME_BANDS
    assert inputs.benefit_status == BENEFIT_STATUSES
    assert inputs.relation == RELATIONS
    starts = dict(inputs.source_start_num)
    assert starts["wage_arrears"] == 202501  # available_from 2025-01
    assert starts["power_cut"] == 202310  # no available_from: the window start
    assert inputs.window_months[0] == "2023-10" and inputs.window_months[-1] == "2026-09"
    assert "unreachable / resolved" in inputs.outcome_resolution
    assert "in_progress / open" in inputs.outcome_resolution


def test_every_suite_is_keyed_by_expectation_and_column(inputs):
    suites = all_suites(inputs)
    for name, checks in suites.items():
        keys = [c.key for c in checks]
        assert len(keys) == len(set(keys)), name
        for check in checks:
            assert check.on_failure in (STOP, QUARANTINE)
            assert check.reason
    # Keys and schema stop the run; row-level faults of events and outcomes are set aside.
    events = {c.column: c.on_failure for c in suites["crisis_events"]}
    assert events["signal_key"] == STOP
    assert events["member_row"] == QUARANTINE
    assert all(c.on_failure == STOP for c in suites["households"])
    assert all(c.on_failure == STOP for c in suites["household_members"])
    assert all(c.on_failure == STOP for c in suites["crisis_events_volume"])


def test_no_suite_looks_at_a_direct_identifier(inputs):
    suites = all_suites(inputs)
    for table, identifiers in DIRECT_IDENTIFIERS.items():
        checks = suites[table] + (
            suites["crisis_events_domain"] if table == "crisis_events" else []
        )
        # (schema suites run on an empty frame: column names and types only)
        for check in checks:
            columns = {check.kwargs.get(k) for k in ("column", "column_A", "column_B")}
            columns |= set(check.kwargs.get("column_list") or ())
            assert not (columns & set(identifiers)), (table, check.key)


def test_result_keys_match_check_keys():
    assert snake_case("ExpectColumnValuesToBeInSet") == "expect_column_values_to_be_in_set"
    assert result_key("expect_column_values_to_be_unique", {"column": "x"}) == (
        "expect_column_values_to_be_unique",
        "x",
    )
    assert result_key("e", {"column_A": "a", "column_B": "b"})[1] == "a, b"
    assert result_key("e", {"column_list": ["a", "b"]})[1] == "a, b"
    assert result_key("e", {"min_value": 1})[1] == "(table)"
    assert yyyymm(parse_month("2024-07")) == 202407


def _gx_result(items):
    return {"results": items}


def _item(type_, kwargs, success, **result):
    return {
        "success": success,
        "expectation_config": {"type": type_, "kwargs": kwargs},
        "result": result,
        "exception_info": {"raised_exception": False},
    }


def test_results_are_read_back_by_type_and_column_in_any_order(inputs):
    checks = all_suites(inputs)["crisis_events"]
    items = []
    for check in checks:
        failing = check.column == "value" and check.expectation_type.endswith("between")
        extra = (
            {
                "unexpected_count": 3,
                "element_count": 100,
                "partial_unexpected_list": [-1.0],
                "partial_unexpected_index_list": [
                    {"sigungu": "1111000000", "row": 7, "value": -1.0},
                    {"sigungu": "1111000000", "row": 9, "value": -2.0},
                ],
            }
            if failing
            else {"unexpected_count": 0, "element_count": 100}
        )
        items.append(_item(check.expectation_type, dict(check.kwargs), not failing, **extra))
    random.Random(3).shuffle(items)
    results = read_results(
        _gx_result(items),
        checks,
        table="crisis_events",
        partition=None,
        example_columns=("sigungu", "row"),
        example_keys=5,
    )
    failed = [r for r in results if not r.success]
    assert len(results) == len(checks) and len(failed) == 1
    assert failed[0].column == "value" and failed[0].unexpected_count == 3
    assert failed[0].on_failure == QUARANTINE
    assert failed[0].examples == ("sigungu=1111000000 row 7", "sigungu=1111000000 row 9")
    line = failed[0].line()
    assert "crisis_events | value | expect_column_values_to_be_between | 3 unexpected" in line


def test_a_result_for_an_unknown_check_is_an_error(inputs):
    checks = all_suites(inputs)["households"]
    with pytest.raises(RuntimeError, match="unknown check"):
        read_results(
            _gx_result([_item("expect_column_values_to_be_null", {"column": "x"}, True)]),
            checks,
            table="households",
            partition=None,
            example_columns=(),
            example_keys=5,
        )


def test_example_keys_name_the_row_or_the_key():
    assert format_example({"row": 4}, ["row"]) == "row 4"
    assert (
        format_example(
            {"household_key": "H1", "sigungu": "11", "x": 1}, ["household_key", "sigungu"]
        )
        == "H1 (sigungu=11)"
    )
    assert (
        format_example(
            {"indicator_code": "a", "reported_month": "2024-01"},
            ["indicator_code", "reported_month"],
        )
        == "a 2024-01"
    )


# Volume bounds ---------------------------------------------------------------------------------


def _counts(code: str, values: list[int], first: str = "2023-10") -> pd.DataFrame:
    from pipeline.months import format_month

    start = parse_month(first)
    return pd.DataFrame(
        {
            "indicator_code": code,
            "reported_month": [format_month(start + i) for i in range(len(values))],
            "signals": values,
        }
    )


def test_volume_bounds_follow_the_documented_formula():
    cfg = VolumeConfig()
    values = [300, 900, 1000, 1000, 1100, 900, 1000, 1000, 1200]
    bounds = volume_bounds(
        _counts("x", values), {"x": parse_month("2023-10")}, parse_month("2024-06"), cfg
    )
    assert list(bounds["status"][:2]) == ["warm-up", "warm-up"]
    assert list(bounds["status"][2:5]) == ["learning"] * 3
    checked = bounds[bounds["status"] == "checked"]
    first = checked.iloc[0]  # month 6: reference months 2..4 (after warm-up)
    reference = float(np.median([1000, 1000, 1100]))
    assert first["reference"] == reference
    assert first["lower"] == np.floor(reference * 0.5 - 3 * np.sqrt(reference))
    assert first["upper"] == np.ceil(reference * 1.75 + 3 * np.sqrt(reference))
    assert (checked["signals"] >= checked["lower"]).all()
    assert (checked["signals"] <= checked["upper"]).all()


def test_a_source_of_a_handful_a_month_is_not_judged_by_volume():
    """A rare source (a median of 0-3 signals a month) varies by chance beyond any Poisson
    bound of its median: 0 then 3 would fail an upper bound of 0. Below
    ``min_reference_signals`` the month is not checked; the same shape ten times larger is."""
    rare = [1, 0, 0, 1, 0, 0, 3, 0, 1, 2]
    end = parse_month("2024-07")
    bounds = volume_bounds(_counts("x", rare), {"x": parse_month("2023-10")}, end, VolumeConfig())
    assert "checked" not in set(bounds["status"])
    assert set(bounds["status"][5:]) == {"too few"}
    assert bounds["upper"].isna().all()
    before = VolumeConfig(min_reference_signals=0)  # what the check did before: a false alarm
    flagged = volume_bounds(_counts("x", rare), {"x": parse_month("2023-10")}, end, before)
    assert (flagged["signals"] > flagged["upper"]).any()
    common = [10 * v + 100 for v in rare]
    bounds = volume_bounds(_counts("x", common), {"x": parse_month("2023-10")}, end, VolumeConfig())
    assert (bounds["status"][5:] == "checked").all()


def test_a_missing_month_and_a_double_delivery_fall_outside_the_bounds():
    cfg = VolumeConfig()
    steady = [1000] * 12
    gap = [*steady[:9], 0, *steady[10:]]
    double = [*steady[:9], 2000, *steady[10:]]
    for values, side in ((gap, "lower"), (double, "upper")):
        bounds = volume_bounds(
            _counts("x", values), {"x": parse_month("2023-10")}, parse_month("2024-09"), cfg
        )
        month = bounds.iloc[9]
        assert month["status"] == "checked"
        outside = (
            month["signals"] < month["lower"]
            if side == "lower"
            else month["signals"] > month["upper"]
        )
        assert outside, (side, month.to_dict())
        # The bad month does not move the next month's reference (median).
        assert bounds.iloc[10]["reference"] == 1000


def test_volume_starts_at_each_sources_first_month_and_sums_partitions():
    parts = [
        _counts("late", [10, 20, 30], first="2025-01"),
        _counts("late", [1, 2, 3], first="2025-01"),
    ]
    combined = combine_counts(parts)
    assert list(combined["signals"]) == [11, 22, 33]
    bounds = volume_bounds(
        combined, {"late": parse_month("2025-01")}, parse_month("2025-06"), VolumeConfig()
    )
    assert bounds["reported_month"].iloc[0] == "2025-01"
    assert list(bounds["signals"]) == [11, 22, 33, 0, 0, 0]  # months without rows count 0


def test_a_bursty_source_may_rise_more():
    cfg = VolumeConfig(high_factor_by_source={"burst": 40.0})
    values = [100] * 8 + [3000]
    first = {"burst": parse_month("2023-10"), "calm": parse_month("2023-10")}
    counts = pd.concat([_counts("burst", values), _counts("calm", values)])
    bounds = volume_bounds(counts, first, parse_month("2024-06"), cfg)
    last = bounds.groupby("indicator_code").tail(1).set_index("indicator_code")
    assert last.loc["burst", "signals"] <= last.loc["burst", "upper"]
    assert last.loc["calm", "signals"] > last.loc["calm", "upper"]


def test_a_bursty_source_may_fall_back_after_its_burst():
    """A disaster source after a burst: its months fall far below the burst's median. Seed
    20261210's world before issue 20 stopped validation on disaster_damage 2025-03..06 so."""
    cfg = VolumeConfig(low_factor_by_source={"burst": 0.0})
    values = [20, 20, 900, 850, 900, 800, 15, 12]
    first = {"burst": parse_month("2023-10"), "calm": parse_month("2023-10")}
    counts = pd.concat([_counts("burst", values), _counts("calm", values)])
    bounds = volume_bounds(counts, first, parse_month("2024-05"), cfg)
    last = bounds.groupby("indicator_code").tail(1).set_index("indicator_code")
    assert last.loc["burst", "status"] == "checked" and last.loc["burst", "lower"] == 0
    assert last.loc["calm", "signals"] < last.loc["calm", "lower"]  # the shared bound flags it


# Checked frames ------------------------------------------------------------------------------


def test_resident_surrogates_repeat_exactly_when_ids_repeat(inputs):
    members = pa.table(
        {
            "resident_id": ["900101-1000001", "900101-2000002", "900101-1000001", None],
            "household_key": ["H1", "H1", "H2", "H9"],
            "relation": ["head", "spouse", "head", "head"],
            "birth_year": pa.array([1990, 1990, 1990, 1990], pa.int16()),
            "sex": ["M", "F", "M", "M"],
            "disability": [False, False, False, False],
        }
    )
    frame, residents = frames.members_frame(members, "1111000000", pa.array(["H1", "H2"]))
    refs = frame["resident_ref"]
    assert refs[0] == refs[2] and refs[0] != refs[1] and pd.isna(refs[3])
    assert list(frame["household_row"].fillna(-1)) == [0, 0, 1, -1]
    assert "resident_id" not in frame.columns and "name" not in frame.columns
    events = pa.table(
        {
            "resident_id": ["900101-2000002", "000000-0000000", "000000-0000000", None],
            "indicator_code": ["power_cut", "power_cut", "bogus", "power_cut"],
            "event_month": ["2024-01", "2024-01", "2024-01", "2024-02"],
            "reported_month": ["2024-01", "2024-02", "2023-12", "2024-02"],
            "value": [1.0, 1.0, -1.0, 1.0],
            "source_agency": ["한국전력공사"] * 4,
        }
    )
    checked = frames.events_frames(events, "1111000000", residents, inputs)
    rows = checked.rows
    assert list(rows["member_row"].fillna(-1)) == [1, -1, -1, -1]
    assert rows["resident_ref"][1] == rows["resident_ref"][2]  # the same unknown id
    assert rows["signal_key"][1] != rows["signal_key"][2]  # other indicator: another signal
    assert pd.isna(rows["signal_key"][3])
    domain = checked.domain
    assert domain["rows"].sum() == 4
    bogus = domain[domain["indicator_code"] == "bogus"].iloc[0]
    assert pd.isna(bogus["source_start_num"])
    assert bogus["indicator_source"] == "bogus / 한국전력공사"
    assert list(checked.combination[:2]) != [checked.combination[0]] * 2


def test_schema_frame_shows_every_stored_column_with_its_read_type():
    schema = pa.schema([("a", pa.dictionary(pa.int32(), pa.string())), ("b", pa.int8())])
    frame = frames.schema_frame(schema)
    assert list(frame.columns) == ["a", "b"] and len(frame) == 0
    assert str(frame.dtypes["a"]) == "str" and str(frame.dtypes["b"]) == "int8"


def test_contract_lists_every_raw_column(sample_raw):
    import pyarrow.parquet as pq

    from pipeline.datasets import TableLayout

    layout = TableLayout(sample_raw)
    for table, contract in CONTRACTS.items():
        if contract.partitioned:
            path = layout.partition_file(table, layout.partitions(table)[0])
        else:
            path = layout.small_table_file(table)
        assert set(pq.read_schema(path).names) == set(contract.columns), table


# Fixed-width keys ----------------------------------------------------------------------------


def test_fixed_width_lookup_equals_arrow_index_in():
    rng = np.random.default_rng(5)
    values = pa.array([f"{i:06d}-{(i * 7919) % 10**7:07d}" for i in rng.permutation(5000)])
    keys = pa.array([f"{i:06d}-{(i * 7919) % 10**7:07d}" for i in rng.integers(0, 7000, 20000)])
    expected = pc.index_in(keys, value_set=values).fill_null(-1).to_numpy()
    assert (fixedwidth.lookup(keys, values) == expected).all()
    # Not fixed-width, or with nulls: the general path gives the same answers.
    mixed = pa.array(["ab", None, "abc", "zz"])
    assert list(fixedwidth.lookup(mixed, pa.array(["abc", "ab"]))) == [1, -1, 0, -1]


def test_a_hash_collision_never_passes_for_a_match(monkeypatch):
    monkeypatch.setattr(fixedwidth, "row_hashes", lambda m: np.zeros(m.shape[0], dtype=np.uint64))
    values = pa.array(["aa", "bb", "cc"])
    keys = pa.array(["cc", "dd", "aa", "bb"])
    assert list(fixedwidth.lookup(keys, values)) == [2, -1, 0, 1]


def test_string_hashes_are_stable_and_distinct():
    values = pa.array([f"H{i:010d}" for i in range(100000)])
    hashes = fixedwidth.hash_strings(values)
    assert len(np.unique(hashes)) == len(values)
    assert (fixedwidth.hash_strings(values.slice(10, 5)) == hashes[10:15]).all()


def test_resident_ids_that_differ_in_a_few_digits_do_not_collide():
    """Bug: the national benchmark (23 M households) failed its check that keys are unique
    across partitions with 788 false duplicates: the old word hash let digit patterns cancel."""
    pairs = [
        ("610320-1726009", "810320-1936007"),
        ("611020-1726009", "811020-1936007"),
        ("610210-2726006", "810210-2936008"),
    ]
    for left, right in pairs:
        assert len(set(fixedwidth.hash_strings(pa.array([left, right])))) == 2
    # Every id on a grid of the digits that vary (years, months, sex digit, serials): 2.9 M ids
    # that differ only in a few positions, the input a weak hash gets wrong. Built by Arrow
    # ("YYMM20-SNNNNNN", zero-padded), not a Python loop: 1 s instead of 6.
    year, month, sex, serial = np.meshgrid(
        np.arange(0, 100, 3), [2, 3, 10], [1, 2], np.arange(700_000, 1_000_000, 21), indexing="ij"
    )

    def digits(values: np.ndarray, width: int) -> pa.Array:
        return pc.utf8_lpad(pc.cast(pa.array(values.ravel()), pa.string()), width, "0")

    ids = pc.binary_join_element_wise(
        digits(year, 2), digits(month, 2), "20-", digits(sex, 1), digits(serial, 6), ""
    )
    assert len(ids) == 34 * 3 * 2 * 14_286 and ids[1].as_py() == "000220-1700021"
    assert len(set(ids.slice(0, 100_000).to_pylist())) == 100_000  # distinct ids
    hashes = np.sort(fixedwidth.hash_strings(ids))
    # no two equal hashes (sorted, neighbours differ; numpy 2.4's np.unique takes 8 s here)
    assert (hashes[1:] != hashes[:-1]).all()


def test_fixed_width_factorize_is_exact(monkeypatch):
    values = pa.array(["bb", "aa", "bb", "cc", "aa"])
    codes, distinct = fixedwidth.factorize(values)
    assert [distinct[c].as_py() for c in codes] == ["bb", "aa", "bb", "cc", "aa"]
    assert len(distinct) == 3
    # Every hash colliding: the byte comparison notices and the exact path takes over.
    monkeypatch.setattr(fixedwidth, "row_hashes", lambda m: np.zeros(m.shape[0], dtype=np.uint64))
    codes, distinct = fixedwidth.factorize(values)
    assert [distinct[c].as_py() for c in codes] == ["bb", "aa", "bb", "cc", "aa"]
    with_null = fixedwidth.factorize(pa.array(["aa", None, "aa"]))[0]
    assert list(with_null) == [0, -1, 0]


def test_example_keys_can_come_as_row_positions(inputs):
    checks = all_suites(inputs)["households"]
    check = next(
        c for c in checks if c.column == "household_key" and "unique" in c.expectation_type
    )
    frame = pd.DataFrame(
        {"household_key": ["H1", "H2", "H1"], "sigungu": ["11", "11", "12"], "row": [0, 1, 0]}
    )
    items = [
        _item(c.expectation_type, dict(c.kwargs), c is not check, unexpected_count=0)
        for c in checks
    ]
    failing = next(i for i in items if not i["success"])
    failing["result"] = {"unexpected_count": 2, "partial_unexpected_index_list": [0, 2]}
    results = read_results(
        _gx_result(items),
        checks,
        table="households",
        partition=None,
        example_columns=("household_key", "sigungu"),
        example_keys=5,
        frame=frame,
    )
    (failed,) = [r for r in results if not r.success]
    assert failed.examples == ("H1 (sigungu=11)", "H1 (sigungu=12)")
