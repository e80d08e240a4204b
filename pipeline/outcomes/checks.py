"""The expectations a returned list's rows must meet, evaluated by Great Expectations.

Checks are :class:`pipeline.validate.checks.Check` objects (the same form the raw-table suites
use) over the frame of :func:`pipeline.outcomes.normalise.checked_rows`, and run in an
ephemeral context built by :func:`pipeline.expectations.new_context`. Every failing row comes
back by its file row number (COMPLETE results, ``unexpected_index_column_names=["row"]``): a
returned list is at most a few thousand rows. Each check names the list column a caseworker
would correct (``field``) and why the row was rejected (``reason``).

What a rejection line says about the row's household key is decided by
:func:`pipeline.textsafe.shown_or_withheld`: a short plain code is shown, anything else (a
resident number, a phone number, a name, a formula, free text) is withheld as ``(not shown)``;
the row number and the column always name the cell. Every text of a line is a
:func:`pipeline.textsafe.spreadsheet_text`, so the rejection file runs no formula when opened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipeline.expectations import QUARANTINE, Check
from pipeline.outcomes.normalise import RoundFacts
from pipeline.outcomes.returned import ROW
from pipeline.textsafe import shown_or_withheld, spreadsheet_text

log = logging.getLogger(__name__)

SUITE = "returned_outcomes"
DATA_SOURCE = "returned_lists"
BATCH_DEFINITION = "whole_list"
REPORT_COLUMNS = ("row", "field", "household_key", "reason")


@dataclass(frozen=True)
class RowCheck:
    """A check and the list column it is about, as a caseworker sees it."""

    check: Check
    field: str


def _c(field: str, expectation: str, reason: str, **kwargs: Any) -> RowCheck:
    return RowCheck(Check(SUITE, expectation, kwargs, QUARANTINE, reason), field)


def row_checks(facts: RoundFacts) -> list[RowCheck]:
    """The checks of one round's returned lists."""
    from great_expectations.expectations.row_conditions import Column

    first, last = facts.first_day, facts.last_day
    resolved = sorted(facts.resolved_codes)
    codes = list(facts.outcome_codes)
    mark = "지자체 자체 발굴 (local discretion)"
    return [
        _c(
            "household_key",
            "ExpectColumnValuesToNotBeNull",
            "household key missing",
            column="household_key",
        ),
        _c(
            "household_key",
            "ExpectColumnValuesToNotBeNull",
            "not a household of the register (check the household key)",
            column="household_emd",
            row_condition=Column("household_key").is_not_null(),
        ),
        _c(
            "household_key",
            "ExpectColumnPairValuesToBeEqual",
            "the household belongs to another 읍면동: an office answers only for its own "
            "households",
            column_A="emd_code",
            column_B="household_emd",
            ignore_row_if="either_value_is_missing",
        ),
        _c(
            "household_key",
            "ExpectColumnValuesToBeInSet",
            f"not on this round's list for this 읍면동; a household you added yourself needs "
            f"{mark} in the selection column",
            column="listing",
            value_set=["listed", "added"],
        ),
        _c(
            "household_key",
            "ExpectColumnValuesToBeUnique",
            "the household appears in more than one row with different answers",
            column="household_key",
        ),
        _c("emd_code", "ExpectColumnValuesToNotBeNull", "읍면동 code missing", column="emd_code"),
        _c(
            "emd_code",
            "ExpectColumnValuesToBeInSet",
            "not a 읍면동 with a list in this round",
            column="emd_code",
            value_set=sorted(facts.emd_sigungu),
        ),
        _c(
            "sigungu_code",
            "ExpectColumnPairValuesToBeEqual",
            "the 시군구 code does not match the 읍면동",
            column_A="sigungu_code",
            column_B="emd_sigungu",
            ignore_row_if="either_value_is_missing",
        ),
        _c(
            "outcome_code",
            "ExpectColumnValuesToNotBeNull",
            "outcome code missing (a contact date was given)",
            column="outcome_code",
        ),
        _c(
            "outcome_code",
            "ExpectColumnValuesToBeInSet",
            f"unknown outcome code: use one of {', '.join(codes)}",
            column="outcome_code",
            value_set=codes,
        ),
        _c(
            "contact_date",
            "ExpectColumnValuesToNotBeNull",
            "not a date: write the contact date as YYYY-MM-DD",
            column="contact_day",
            row_condition=Column("contact_date").is_not_null(),
        ),
        _c(
            "contact_date",
            "ExpectColumnValuesToNotBeNull",
            "contact date missing: required for every outcome but in_progress",
            column="contact_day",
            row_condition=Column("contact_date").is_null() & Column("outcome_code").is_in(resolved),
        ),
        _c(
            "contact_date",
            "ExpectColumnValuesToBeBetween",
            f"outside the round: contact dates of round {facts.round_label} lie from "
            f"{first.isoformat()} to {last.isoformat()}",
            column="contact_day",
            min_value=first.year * 10000 + first.month * 100 + first.day,
            max_value=last.year * 10000 + last.month * 100 + last.day,
        ),
    ]


class RowValidator:
    """An ephemeral Great Expectations context that validates returned lists' rows."""

    def __init__(self) -> None:
        from pipeline.expectations import new_context

        self.context = new_context()
        source = self.context.data_sources.add_pandas(DATA_SOURCE)
        asset = source.add_dataframe_asset(SUITE)
        self.batch_definition = asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)

    def rejections(self, checked: pd.DataFrame, checks: list[RowCheck]) -> pd.DataFrame:
        """One line per (row, failed check): row, field, household_key, reason; sorted."""
        from pipeline.expectations import build_suite

        if checked.empty:
            return pd.DataFrame({c: pd.Series(dtype="object") for c in REPORT_COLUMNS})
        suite = build_suite(SUITE, [c.check for c in checks])
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": checked})
        result = batch.validate(
            suite,
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": [ROW],
                "return_unexpected_index_query": False,
            },
        )
        by_reason = {c.check.reason: c for c in checks}  # reasons are distinct; meta has them
        key_of_row = dict(zip(checked[ROW].astype(int), checked["household_key"], strict=True))
        lines = []
        for item in result.results:
            config = item.expectation_config
            exception = item.exception_info or {}
            if exception.get("raised_exception"):
                message = exception.get("exception_message")
                raise RuntimeError(f"import check {config.type} failed to run: {message}")
            if item.success:
                continue
            check = by_reason[str((config.meta or {}).get("reason"))]
            for entry in item.result.get("unexpected_index_list") or []:
                row = int(entry[ROW]) if isinstance(entry, dict) else int(checked[ROW].iloc[entry])
                lines.append(
                    {
                        "row": row,
                        "field": spreadsheet_text(check.field),
                        "household_key": shown_or_withheld(key_of_row.get(row)),
                        "reason": spreadsheet_text(check.check.reason),
                    }
                )
        report = pd.DataFrame(lines, columns=list(REPORT_COLUMNS))
        order = {c.check.reason: i for i, c in enumerate(checks)}
        report["_order"] = report["reason"].map(order)
        report = report.sort_values(["row", "_order"], kind="stable").drop(columns="_order")
        return report.drop_duplicates().reset_index(drop=True)
