import numpy as np
import pandas as pd
import pytest

from pipeline.months import format_month, format_months, parse_month, parse_month_series


def test_round_trip_over_years():
    for text in ["2023-10", "2024-01", "2026-12", "1999-07"]:
        assert format_month(parse_month(text)) == text
    assert parse_month("2024-01") - parse_month("2023-12") == 1


@pytest.mark.parametrize("bad", ["2024-13", "2024-00", "2024/01", "24-01", "", "2024-1"])
def test_bad_months_are_refused_with_the_expected_form(bad):
    with pytest.raises(ValueError, match=r"YYYY-MM|01\.\.12"):
        parse_month(bad)


def test_vectorised_format_and_parse_agree():
    first, last = parse_month("2023-10"), parse_month("2026-09")
    values = np.array([first, first + 5, last])
    text = pd.Series(format_months(values, first, last)).astype("string")
    assert list(text) == ["2023-10", "2024-03", "2026-09"]
    assert list(parse_month_series(text)) == list(values)


def test_vectorised_parse_marks_bad_text_missing():
    parsed = parse_month_series(pd.Series(["2024-02", "2024-13", None, "junk"]))
    assert parsed.iloc[0] == parse_month("2024-02")
    assert parsed.iloc[1:].isna().all()


def test_month_arithmetic_helpers_agree_with_the_calendar():
    from pipeline.months import calendar_month, first_day, month_index, year_of

    m = parse_month("2025-12")
    assert (year_of(m), calendar_month(m)) == (2025, 12)
    assert month_index(2026, 1) == m + 1
    assert first_day(m + 1).isoformat() == "2026-01-01T00:00:00"


def test_months_in_any_stored_form_become_indexes():
    from pipeline.months import to_month_index

    m = parse_month("2024-02")
    forms = [
        pd.Series([m, m + 1], dtype="int64"),
        pd.Series([float(m), np.nan]),
        pd.Series(pd.to_datetime(["2024-02-01", "2024-03-15"])),
        pd.Series(["2024-02", "junk"]),
    ]
    assert [to_month_index(f).iloc[0] for f in forms] == [m] * 4
    assert to_month_index(forms[1]).isna().iloc[1] and to_month_index(forms[3]).isna().iloc[1]


def test_as_of_resolver_defaults_to_the_next_round_and_bounds_both_sides():
    from pipeline.config import Config
    from pipeline.errors import UsageError
    from pipeline.months import default_as_of, resolve_as_of

    window = Config().window  # 2023-10 .. 2026-09, rounds every 2 months from 2024-04
    assert format_month(default_as_of(window)) == "2026-10"
    assert resolve_as_of(window, None) == default_as_of(window)
    assert resolve_as_of(window, "2023-11") == parse_month("2023-11")
    assert resolve_as_of(window, "2026-10") == parse_month("2026-10")
    for bad, why in [
        ("2026-11", "beyond"),
        ("2023-10", "start"),
        ("2024-13", "01..12"),
        ("2024-1", "YYYY-MM"),
    ]:
        with pytest.raises(UsageError, match=why):
            resolve_as_of(window, bad)


@pytest.mark.parametrize("dtype", [object, "string", "string[pyarrow]"])
def test_vectorised_parses_agree_with_the_one_month_parser_on_repeated_values(dtype):
    """The column parsers parse each distinct text once and spread it back: every row gets
    what parse_month gives its text (missing where it refuses), index and name kept."""
    from pipeline.months import to_month_index

    texts = ["2024-02", "2024-13", "junk", None, "2023-10", "1999-07", "2024-1x", "2024-00", ""]
    rng = np.random.default_rng(3)
    values = pd.Series(
        rng.choice(np.array(texts, dtype=object), 2000),
        dtype=dtype,
        name="m",
        index=np.arange(2000) * 3,
    )

    def one(text):
        try:
            return parse_month(text)
        except (TypeError, ValueError):
            return pd.NA

    parsed = parse_month_series(values)
    assert parsed.dtype == "Int32" and parsed.name == "m" and parsed.index.equals(values.index)
    assert [None if pd.isna(v) else v for v in parsed] == [
        None if t is None or pd.isna(one(t)) else one(t) for t in values.astype(object)
    ]
    loose = to_month_index(values)
    assert loose.dtype == "Int64" and loose.index.equals(values.index)
    assert loose[values.astype(object) == "2024-13"].eq(parse_month("2025-01")).all()
    assert loose[values.isna()].isna().all()
    assert parse_month_series(values.iloc[:0]).dtype == "Int32"
