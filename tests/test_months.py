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
