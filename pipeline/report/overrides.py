"""Caseworkers' overrides on the follow-up page: skip and add rates per 읍면동 and per reason.

Pure functions: the round's district table (``aggregates.district_table_from_counts``: every
읍면동 with a list and its ``listed`` households), the imported answers of the round
(``pipeline.datasets.outcomes``, with ``override_code``) and the outcome catalogue's
``override_reasons`` in; a table (:func:`override_table`) and the display rows of
``templates/_overrides.html`` (:func:`override_context`) out.

A rate's denominator is the listed households whose answers came back (``returned``: the
answers not added by the caseworker): skip rate = skipped / returned, add rate = added /
returned, the rate of a reason = its households / returned. Skipped: an override on a listed
household (``pipeline.datasets.outcomes.skipped_mask``); added: a household the caseworker
added (by an ``add`` reason or by the selection column; ``add_unmarked`` counts those added
through the selection column only, without a reason).

The report's small-count rule applies (``pipeline.report.pages``): a count under
``report.small_count`` is shown as "<5", a rate computed from such a count as "–".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from pipeline.catalogue import OutcomeCatalogue
from pipeline.datasets.outcomes import skipped_mask, with_override
from pipeline.report import pages

COUNTS = ("listed", "returned", "skipped", "added")


def override_table(
    districts: pd.DataFrame, outcomes: pd.DataFrame, catalogue: OutcomeCatalogue
) -> pd.DataFrame:
    """One row per 읍면동 with a list: sigungu_code, emd_code, listed (households on the list),
    returned, skipped, added, add_unmarked, then one column per override reason code (its
    households); sorted by 시군구 and 읍면동."""
    answers = with_override(outcomes)
    emd = answers["emd_code"].astype("string")
    added = answers["added_by_caseworker"].astype(bool)
    code = answers["override_code"].astype("string")
    frame = pd.DataFrame(
        {
            "emd_code": emd.to_numpy(),
            "returned": (~added).astype("int64").to_numpy(),
            "skipped": skipped_mask(answers).astype("int64"),
            "added": added.astype("int64").to_numpy(),
            "add_unmarked": (added & code.isna()).astype("int64").to_numpy(),
        }
    )
    reasons = [r.code for r in catalogue.override_reasons]
    for reason in reasons:
        frame[reason] = (code == reason).fillna(False).astype("int64").to_numpy()
    counted = frame.groupby("emd_code", sort=True).sum()
    table = districts[["sigungu_code", "emd_code", "listed"]].copy()
    table["sigungu_code"] = table["sigungu_code"].astype(str)
    table["emd_code"] = table["emd_code"].astype(str)
    table = table.drop_duplicates("emd_code", keep="last")
    counted.index = counted.index.astype(str)
    columns = ["returned", "skipped", "added", "add_unmarked", *reasons]
    merged = table.join(counted[columns], on="emd_code")
    merged[columns] = merged[columns].fillna(0).astype("int64")
    merged["listed"] = merged["listed"].astype("int64")
    return merged.sort_values(["sigungu_code", "emd_code"], kind="stable").reset_index(drop=True)


def _rate(part: int, whole: int, threshold: int) -> str:
    value = part / whole if whole else float("nan")
    return pages.masked_percent(value, whole, part, threshold=threshold)


def override_context(
    districts: pd.DataFrame,
    outcomes: pd.DataFrame,
    names: Mapping[str, str],
    catalogue: OutcomeCatalogue,
    threshold: int,
) -> dict[str, Any]:
    """What ``_overrides.html`` shows: ``override_reasons`` (name, action, households and rate
    of the round), ``override_rows`` (the 읍면동 with an answer back: counts, rates and the
    households of each reason), ``override_total`` and ``override_silent`` (읍면동 with a list
    but no answer back yet)."""
    table = override_table(districts, outcomes, catalogue)
    reasons = list(catalogue.override_reasons)
    t = threshold
    answered = table[(table["returned"] + table["added"]) > 0]
    total = {c: int(table[c].sum()) for c in (*COUNTS, "add_unmarked")}

    def counts(row: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "listed": pages.count(row["listed"], t),
            "returned": pages.count(row["returned"], t),
            "skipped": pages.count(row["skipped"], t),
            "skip_rate": _rate(int(row["skipped"]), int(row["returned"]), t),
            "added": pages.count(row["added"], t),
            "add_rate": _rate(int(row["added"]), int(row["returned"]), t),
            "reasons": [pages.count(row[r.code], t) for r in reasons],
        }

    rows = []
    for row in answered.to_dict("records"):
        rows.append(
            {
                "sigungu_name": pages.region_name(names, row["sigungu_code"]),
                "emd_name": pages.region_name(names, row["emd_code"]) or row["emd_code"],
                "emd_code": row["emd_code"],
                **counts(row),
            }
        )
    reason_rows = []
    for reason in reasons:
        households = int(table[reason.code].sum())
        reason_rows.append(
            {
                "code": reason.code,
                "name": reason.name_ko,
                "action": "제외" if reason.action == "skip" else "추가",
                "households": pages.count(households, t),
                "rate": _rate(households, total["returned"], t),
            }
        )
    return {
        "override_reasons": reason_rows,
        "override_rows": rows,
        "override_total": {
            **counts({**total, **{r.code: int(table[r.code].sum()) for r in reasons}}),
            "add_unmarked": pages.count(total["add_unmarked"], t),
        },
        "override_silent": pages.number(len(table) - len(answered)),
    }
