"""The expectation suites, built in code from the catalogues and the configuration.

Each check names a Great Expectations expectation class with its arguments, what a failure means
(``reason``) and what it does to the run (``on_failure``): ``stop`` fails the validation,
``quarantine`` sets the failing rows aside in the rejected-rows file (and stops the run only when
more than ``validation.max_rejected_share`` of a table's partition is rejected).

Suites run on *checked frames* (see :mod:`pipeline.validate.frames`), built from the raw tables
without their direct identifiers: months also appear as ``YYYYMM`` integers (``*_num``) so that
order checks compare numbers, and joins to other tables appear as row numbers (``*_row``, null
when the referenced key is unknown).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.catalogue import (
    IndicatorCatalogue,
    OutcomeCatalogue,
    ServiceCatalogue,
    load_services,
)
from pipeline.config import Config
from pipeline.expectations import QUARANTINE, STOP, Check, OnFailure
from pipeline.months import calendar_month, format_month, parse_month, year_of
from pipeline.validate.contract import (
    CONTRACTS,
    FILE_ROWS_SUITE,
    LOGICAL_TYPES,
    PARTITIONS_SUITE,
    UNIQUE_ACROSS_SUITE,
    VOLUME_SUITE,
)

EVENTS_DOMAIN_SUITE = "crisis_events_domain"

# Columns of the crisis-events frame with each signal's plausibility bounds (its indicator's, from
# the catalogue), one pair per failure mode: null where the mode is not the indicator's.
BOUND_COLUMNS: dict[str, tuple[str, str]] = {
    QUARANTINE: ("value_min", "value_max"),
    STOP: ("value_min_stop", "value_max_stop"),
}


def yyyymm(month_index: int) -> int:
    """Month index -> ``YYYYMM`` integer (the form checked frames compare)."""
    return year_of(month_index) * 100 + calendar_month(month_index)


@dataclass(frozen=True)
class SuiteInputs:
    """Everything the suites are built from: catalogues, configuration and the region tables."""

    window_months: tuple[str, ...]
    round_months: tuple[str, ...]
    window_end_year: int
    indicator_codes: tuple[str, ...]
    indicator_sources: tuple[str, ...]  # "code / agency" pairs
    source_start_num: tuple[tuple[str, int], ...]  # code -> first YYYYMM it may be reported
    value_bounds: tuple[tuple[str, float, float, str], ...]  # code, min, max, on_failure
    outcome_codes: tuple[str, ...]
    outcome_resolution: tuple[str, ...]  # "code / resolved" or "code / open"
    selection_reasons: tuple[str, ...]
    logged_reasons: tuple[str, ...]  # reasons whose rows record a selection probability
    service_codes: tuple[str, ...]  # configs/services.yaml
    linked_outcomes: tuple[str, ...]  # outcome codes that link a service
    tenure: tuple[str, ...]
    income_band: tuple[str, ...]
    benefit_status: tuple[str, ...]
    relation: tuple[str, ...]
    sex: tuple[str, ...]
    max_household_size: int
    max_age: int
    region_codes: tuple[str, ...]
    sido_codes: tuple[str, ...]
    sigungu_codes: tuple[str, ...]
    emd_codes: tuple[str, ...]


def indicator_source_label(code: str, agency: str) -> str:
    return f"{code} / {agency}"


def outcome_resolution_label(code: str, resolved: bool) -> str:
    return f"{code} / {'resolved' if resolved else 'open'}"


def suite_inputs(
    config: Config,
    catalogue: IndicatorCatalogue,
    outcomes: OutcomeCatalogue,
    regions: Mapping[str, tuple[str, ...]],
    services: ServiceCatalogue | None = None,
) -> SuiteInputs:
    """Collect the suites' inputs; ``regions`` maps level ("sido", "sigungu", "emd", "all")
    to the region codes found in the regions table."""
    window = config.window
    sets = config.validation.value_sets
    services = services or load_services(Path(config.paths.services))
    start = window.start_index
    source_start = tuple(
        (ind.code, yyyymm(max(start, ind.available_from_index or start)))
        for ind in catalogue.indicators
    )
    resolution = tuple(outcome_resolution_label(o.code, o.resolved) for o in outcomes.outcomes)
    return SuiteInputs(
        window_months=tuple(format_month(m) for m in range(start, window.end_index + 1)),
        round_months=tuple(window.round_labels()),
        window_end_year=year_of(window.end_index),
        indicator_codes=tuple(catalogue.codes),
        indicator_sources=tuple(
            indicator_source_label(i.code, i.agency_ko) for i in catalogue.indicators
        ),
        source_start_num=source_start,
        value_bounds=tuple(
            (ind.code, bounds.min, bounds.max, bounds.on_failure)
            for ind in catalogue.indicators
            for bounds in [catalogue.bounds_of(ind)]
        ),
        outcome_codes=tuple(outcomes.codes),
        outcome_resolution=resolution,
        selection_reasons=tuple(outcomes.reason_codes),
        logged_reasons=tuple(outcomes.logged_reason_codes),
        service_codes=tuple(services.codes),
        linked_outcomes=tuple(sorted({s.outcome for s in services.services})),
        tenure=sets.tenure,
        income_band=sets.income_band,
        benefit_status=sets.benefit_status,
        relation=sets.relation,
        sex=sets.sex,
        max_household_size=sets.max_household_size,
        max_age=sets.max_age,
        region_codes=regions.get("all", ()),
        sido_codes=regions.get("sido", ()),
        sigungu_codes=regions.get("sigungu", ()),
        emd_codes=regions.get("emd", ()),
    )


def _c(suite: str, on_failure: OnFailure, expectation: str, reason: str, **kwargs: Any) -> Check:
    return Check(suite, expectation, kwargs, on_failure, reason)


def schema_suite_name(table: str) -> str:
    return f"{table}_schema"


def schema_checks(table: str) -> list[Check]:
    """Required columns (no more, no fewer) and their types, checked on the file's schema."""
    contract = CONTRACTS[table]
    suite = schema_suite_name(table)
    checks = [
        _c(
            suite,
            STOP,
            "ExpectTableColumnsToMatchSet",
            "the file's columns are exactly the contract's (an extra column may carry identifiers)",
            column_set=sorted(contract.columns),
            exact_match=True,
        )
    ]
    for column, logical in contract.columns.items():
        reason = f"{column} must be of type {logical}"
        if logical == "string":
            # GX compares pandas 3's string dtype by its scalar type, and only in this expectation.
            check = _c(
                suite, STOP, "ExpectColumnValuesToBeOfType", reason, column=column, type_="str"
            )
        else:
            check = _c(
                suite,
                STOP,
                "ExpectColumnValuesToBeInTypeList",
                reason,
                column=column,
                type_list=list(LOGICAL_TYPES[logical]),
            )
        checks.append(check)
    return checks


def regions_checks(inputs: SuiteInputs) -> list[Check]:
    s = "regions"
    return [
        _c(s, STOP, "ExpectTableRowCountToBeBetween", "the table has rows", min_value=1),
        _c(s, STOP, "ExpectColumnValuesToNotBeNull", "region code missing", column="region_code"),
        _c(s, STOP, "ExpectColumnValuesToBeUnique", "duplicate region code", column="region_code"),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToMatchRegex",
            "region codes have 10 digits",
            column="region_code",
            regex=r"^\d{10}$",
        ),
        _c(s, STOP, "ExpectColumnValuesToNotBeNull", "level missing", column="level"),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeInSet",
            "unknown region level",
            column="level",
            value_set=["sido", "sigungu", "emd"],
        ),
        _c(s, STOP, "ExpectColumnValuesToNotBeNull", "region name missing", column="name"),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeInSet",
            "parent region unknown",
            column="parent_code",
            value_set=list(inputs.region_codes),
        ),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeInSet",
            "시도 code unknown",
            column="sido_code",
            value_set=list(inputs.sido_codes),
        ),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeInSet",
            "시군구 code unknown",
            column="sigungu_code",
            value_set=list(inputs.sigungu_codes),
        ),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeInSet",
            "읍면동 type must be 동, 읍 or 면",
            column="emd_type",
            value_set=["동", "읍", "면"],
        ),
    ]


def capacity_checks(inputs: SuiteInputs) -> list[Check]:
    s = "district_capacity"
    return [
        _c(s, STOP, "ExpectTableRowCountToBeBetween", "the table has rows", min_value=1),
        _c(s, STOP, "ExpectColumnValuesToNotBeNull", "읍면동 code missing", column="emd_code"),
        _c(s, STOP, "ExpectColumnValuesToBeUnique", "duplicate 읍면동 capacity", column="emd_code"),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeInSet",
            "capacity for an unknown 읍면동",
            column="emd_code",
            value_set=list(inputs.emd_codes),
        ),
        _c(
            s,
            STOP,
            "ExpectColumnDistinctValuesToContainSet",
            "a 읍면동 has no capacity",
            column="emd_code",
            value_set=list(inputs.emd_codes),
        ),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeInSet",
            "capacity for an unknown 시군구",
            column="sigungu_code",
            value_set=list(inputs.sigungu_codes),
        ),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToNotBeNull",
            "capacity missing",
            column="capacity_per_round",
        ),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeBetween",
            "capacity per round must be at least 1",
            column="capacity_per_round",
            min_value=1,
        ),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeBetween",
            "caseworkers must be at least 1",
            column="caseworkers",
            min_value=1,
        ),
    ]


def households_checks(inputs: SuiteInputs) -> list[Check]:
    s = "households"
    return [
        _c(
            s,
            STOP,
            "ExpectColumnValuesToNotBeNull",
            "household key missing",
            column="household_key",
        ),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeUnique",
            "duplicate household key",
            column="household_key",
        ),
        _c(s, STOP, "ExpectColumnValuesToNotBeNull", "읍면동 code missing", column="emd_code"),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeInSet",
            "household in an unknown 읍면동",
            column="emd_code",
            value_set=list(inputs.emd_codes),
        ),
        _c(
            s,
            STOP,
            "ExpectColumnPairValuesToBeEqual",
            "household's 읍면동 lies outside the 시군구 of its partition",
            column_A="emd_sigungu",
            column_B="sigungu",
            ignore_row_if="either_value_is_missing",
        ),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeBetween",
            f"household size must be 1..{inputs.max_household_size}",
            column="size",
            min_value=1,
            max_value=inputs.max_household_size,
        ),
        *[
            _c(s, STOP, "ExpectColumnValuesToNotBeNull", f"{column} missing", column=column)
            for column in ("size", "tenure", "income_band", "benefit_status")
        ],
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeInSet",
            "unknown tenure",
            column="tenure",
            value_set=list(inputs.tenure),
        ),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeInSet",
            "unknown income band",
            column="income_band",
            value_set=list(inputs.income_band),
        ),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeInSet",
            "unknown benefit status",
            column="benefit_status",
            value_set=list(inputs.benefit_status),
        ),
    ]


def members_checks(inputs: SuiteInputs) -> list[Check]:
    s = "household_members"
    year = inputs.window_end_year
    return [
        _c(s, STOP, "ExpectColumnValuesToNotBeNull", "resident id missing", column="resident_ref"),
        _c(s, STOP, "ExpectColumnValuesToBeUnique", "duplicate resident id", column="resident_ref"),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToNotBeNull",
            "household key missing",
            column="household_key",
        ),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToNotBeNull",
            "member of a household not in households",
            column="household_row",
        ),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeInSet",
            "unknown relation",
            column="relation",
            value_set=list(inputs.relation),
        ),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeInSet",
            "unknown sex",
            column="sex",
            value_set=list(inputs.sex),
        ),
        _c(s, STOP, "ExpectColumnValuesToNotBeNull", "birth year missing", column="birth_year"),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeBetween",
            f"birth year must be {year - inputs.max_age}..{year}",
            column="birth_year",
            min_value=year - inputs.max_age,
            max_value=year,
        ),
        _c(
            s, STOP, "ExpectColumnValuesToNotBeNull", "disability flag missing", column="disability"
        ),
    ]


def bound_modes(inputs: SuiteInputs) -> list[str]:
    """The failure modes of the catalogue's plausibility bounds (quarantine first)."""
    used = {mode for *_, mode in inputs.value_bounds}
    return [mode for mode in BOUND_COLUMNS if mode in used]


def bounds_checks(inputs: SuiteInputs) -> list[Check]:
    """Every signal's value within its indicator's plausibility bounds (catalogue ``bounds``).

    The frame carries each signal's bounds as columns (``BOUND_COLUMNS``), so two expectations
    cover every indicator; a signal of an unknown indicator has none (set aside elsewhere).
    """
    s = "crisis_events"
    checks = []
    for mode in bound_modes(inputs):
        low, high = BOUND_COLUMNS[mode]
        checks += [
            _c(
                s,
                mode,
                "ExpectColumnPairValuesAToBeGreaterThanB",
                f"value below its indicator's plausible minimum ({low}: catalogue bounds)",
                column_A="value",
                column_B=low,
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            ),
            _c(
                s,
                mode,
                "ExpectColumnPairValuesAToBeGreaterThanB",
                f"value above its indicator's plausible maximum ({high}: catalogue bounds)",
                column_A=high,
                column_B="value",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            ),
        ]
    return checks


def events_checks(inputs: SuiteInputs) -> list[Check]:
    """Row-level checks of crisis events (one row per signal)."""
    s = "crisis_events"
    return [
        _c(s, STOP, "ExpectColumnValuesToNotBeNull", "resident id missing", column="resident_ref"),
        _c(
            s,
            STOP,
            "ExpectColumnValuesToBeUnique",
            "duplicate signal: same resident, indicator and event month "
            "(signal_key encodes the three)",
            column="signal_key",
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnValuesToNotBeNull",
            "signal for a resident id not in household_members",
            column="member_row",
        ),
        _c(s, QUARANTINE, "ExpectColumnValuesToNotBeNull", "value missing", column="value"),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnValuesToBeBetween",
            "negative value (amounts, months, grades and days are never negative)",
            column="value",
            min_value=0,
        ),
        *bounds_checks(inputs),
    ]


def events_domain_checks(inputs: SuiteInputs) -> list[Check]:
    """Checks of the distinct (indicator, agency, event month, reported month) combinations.

    These checks depend on nothing else in a row, so they run once per distinct combination of
    a partition (a few thousand) instead of once per signal; a failing combination fails every
    row that carries it (``rows``), and the reports count rows.
    """
    s = EVENTS_DOMAIN_SUITE
    first, last = inputs.window_months[0], inputs.window_months[-1]
    return [
        _c(
            s,
            STOP,
            "ExpectColumnValuesToNotBeNull",
            "indicator code missing",
            column="indicator_code",
        ),
        _c(s, STOP, "ExpectColumnValuesToNotBeNull", "event month missing", column="event_month"),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnValuesToBeInSet",
            "unknown indicator code",
            column="indicator_code",
            value_set=list(inputs.indicator_codes),
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnValuesToBeInSet",
            "source agency does not deliver this indicator",
            column="indicator_source",
            value_set=list(inputs.indicator_sources),
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnValuesToBeInSet",
            f"event month is not a month of the data window {first}..{last}",
            column="event_month",
            value_set=list(inputs.window_months),
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnValuesToNotBeNull",
            "reported month missing",
            column="reported_month",
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnValuesToBeInSet",
            f"reported month is not a month of the data window {first}..{last} (after its end: "
            "a signal from the future)",
            column="reported_month",
            value_set=list(inputs.window_months),
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnPairValuesAToBeGreaterThanB",
            "reported before the event happened",
            column_A="reported_month_num",
            column_B="event_month_num",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnPairValuesAToBeGreaterThanB",
            "reported before its source started delivering (indicator available_from)",
            column_A="reported_month_num",
            column_B="source_start_num",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        ),
    ]


def outcomes_checks(inputs: SuiteInputs) -> list[Check]:
    from great_expectations.expectations.row_conditions import Column

    s = "outreach_outcomes"
    return [
        _c(
            s,
            STOP,
            "ExpectColumnValuesToNotBeNull",
            "household key missing",
            column="household_key",
        ),
        _c(s, STOP, "ExpectColumnValuesToNotBeNull", "round month missing", column="round_month"),
        _c(
            s,
            STOP,
            "ExpectCompoundColumnsToBeUnique",
            "duplicate outcome row (same household and round)",
            column_list=["household_key", "round_month"],
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnValuesToNotBeNull",
            "outcome for a household not in households",
            column="household_row",
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnValuesToBeInSet",
            "outcome in an unknown 읍면동",
            column="emd_code",
            value_set=list(inputs.emd_codes),
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnPairValuesToBeEqual",
            "outcome's 읍면동 differs from the household's",
            column_A="emd_code_text",
            column_B="household_emd",
            ignore_row_if="either_value_is_missing",
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnValuesToBeInSet",
            "round month is not an outreach round of the data window",
            column="round_month",
            value_set=list(inputs.round_months),
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnValuesToBeInSet",
            "resolved month is not a month of the data window",
            column="resolved_month",
            value_set=list(inputs.window_months),
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnPairValuesAToBeGreaterThanB",
            "resolved before the round",
            column_A="resolved_month_num",
            column_B="round_month_num",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnValuesToBeInSet",
            "unknown outcome code",
            column="outcome_code",
            value_set=list(inputs.outcome_codes),
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnValuesToBeInSet",
            "resolved month given for an unresolved outcome, or missing for a resolved one",
            column="outcome_resolution",
            value_set=list(inputs.outcome_resolution),
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnValuesToBeInSet",
            "unknown selection reason",
            column="selection_reason",
            value_set=list(inputs.selection_reasons),
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnValuesToNotBeNull",
            "selection probability missing",
            column="selection_probability",
            row_condition=Column("selection_reason").is_in(list(inputs.logged_reasons)),
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnValuesToBeBetween",
            "selection probability must lie in (0, 1]",
            column="selection_probability",
            min_value=0,
            max_value=1,
            strict_min=True,
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnValuesToBeInSet",
            "unknown service code",
            column="service_code",
            value_set=list(inputs.service_codes),
        ),
        _c(
            s,
            QUARANTINE,
            "ExpectColumnValuesToBeNull",
            "a service recorded for an outcome that links none",
            column="service_code",
            row_condition=Column("outcome_code").is_not_in(list(inputs.linked_outcomes)),
        ),
    ]


def volume_checks() -> list[Check]:
    s = VOLUME_SUITE
    return [
        _c(
            s,
            STOP,
            "ExpectColumnPairValuesAToBeGreaterThanB",
            "fewer signals than the source's previous months allow (a source stopped delivering?)",
            column_A="signals",
            column_B="lower",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        ),
        _c(
            s,
            STOP,
            "ExpectColumnPairValuesAToBeGreaterThanB",
            "more signals than the source's previous months allow (delivered twice?)",
            column_A="upper",
            column_B="signals",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        ),
    ]


def across_partitions_checks() -> list[Check]:
    return [
        _c(
            UNIQUE_ACROSS_SUITE,
            STOP,
            "ExpectColumnValuesToBeUnique",
            "the same household key or resident id in two 시군구 partitions "
            "(key_hash: 64-bit hash of the key, salted per table)",
            column="key_hash",
        )
    ]


def file_rows_checks() -> list[Check]:
    """Every partition file of households, members and crisis events has rows.

    Partitions are validated in batches, so a file's emptiness is checked here, on a frame with
    one row per file, rather than by a row count of the batch.
    """
    return [
        _c(
            FILE_ROWS_SUITE,
            STOP,
            "ExpectColumnValuesToBeBetween",
            "the file has no rows",
            column="rows",
            min_value=1,
        )
    ]


def partitions_checks(inputs: SuiteInputs) -> list[Check]:
    return [
        _c(
            PARTITIONS_SUITE,
            STOP,
            "ExpectColumnValuesToBeInSet",
            "partition folder for an unknown 시군구",
            column="sigungu",
            value_set=list(inputs.sigungu_codes),
        )
    ]


# Which frame columns name example rows in each suite's results.
EXAMPLE_COLUMNS: dict[str, tuple[str, ...]] = {
    **{name: c.example_columns for name, c in CONTRACTS.items()},
    EVENTS_DOMAIN_SUITE: ("sigungu", "first_row"),
    VOLUME_SUITE: ("indicator_code", "reported_month"),
    UNIQUE_ACROSS_SUITE: ("table", "sigungu", "row"),
    PARTITIONS_SUITE: ("table", "sigungu"),
    FILE_ROWS_SUITE: ("table", "sigungu"),
}


def all_suites(inputs: SuiteInputs) -> dict[str, list[Check]]:
    """Every suite by name (schema suites run on an empty frame with the file's schema)."""
    suites: dict[str, list[Check]] = {schema_suite_name(t): schema_checks(t) for t in CONTRACTS}
    suites.update(
        {
            "regions": regions_checks(inputs),
            "district_capacity": capacity_checks(inputs),
            "households": households_checks(inputs),
            "household_members": members_checks(inputs),
            "crisis_events": events_checks(inputs),
            EVENTS_DOMAIN_SUITE: events_domain_checks(inputs),
            "outreach_outcomes": outcomes_checks(inputs),
            VOLUME_SUITE: volume_checks(),
            UNIQUE_ACROSS_SUITE: across_partitions_checks(),
            PARTITIONS_SUITE: partitions_checks(inputs),
            FILE_ROWS_SUITE: file_rows_checks(),
        }
    )
    for name, checks in suites.items():
        keys = [c.key for c in checks]
        duplicates = {k for k in keys if keys.count(k) > 1}
        if duplicates:
            raise ValueError(f"suite {name}: two checks share expectation and column: {duplicates}")
    return suites


# Suites whose frames can hold millions of rows. GX 1.24 builds the example dicts of
# ``unexpected_index_column_names`` with one ``DataFrame.at`` per unexpected row and column (about
# 40 microseconds each) before it keeps the first 20, so a check failing on a whole partition
# would take minutes. For these suites GX returns the positions of unexpected rows (the frames'
# default index, which it lists natively) and the example keys are read from the frame there.
POSITIONAL_SUITES = frozenset(
    {
        "households",
        "household_members",
        "crisis_events",
        EVENTS_DOMAIN_SUITE,
        "outreach_outcomes",
        UNIQUE_ACROSS_SUITE,
    }
)


def example_columns(suite: str) -> tuple[str, ...]:
    """Example-key columns for a suite (schema suites have none: they run on no rows)."""
    return EXAMPLE_COLUMNS.get(suite, ())


def month_num(text: str) -> int | None:
    """``YYYY-MM`` -> ``YYYYMM`` integer, or None when it is not a month."""
    try:
        return yyyymm(parse_month(text))
    except ValueError:
        return None
