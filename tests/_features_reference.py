"""A slow, obviously correct feature builder: household by household, in plain Python.

Tests compare the vectorised builder with it on small data. It is never used in the pipeline.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from features.build import FeatureInputs, age_band
from features.spec import FeatureSpec
from pipeline.catalogue import IndicatorCatalogue, OutcomeCatalogue
from pipeline.months import year_of
from pipeline.vocabulary import AGE_BANDS, INCOME_BANDS, NO_OUTCOME


def reference_features(
    inputs: FeatureInputs,
    as_of: int,
    spec: FeatureSpec,
    catalogue: IndicatorCatalogue,
    outcome_catalogue: OutcomeCatalogue,
) -> pd.DataFrame:
    """Same columns as ``build_features``, computed one household at a time."""
    cap = spec.months_since_cap
    label_of = outcome_catalogue.label_of()
    events_by = {k: g for k, g in inputs.events.groupby("household_key")}
    members_by = {k: g for k, g in inputs.members.groupby("household_key")}
    outcomes_by = {k: g for k, g in inputs.outcomes.groupby("household_key")}
    rows = []
    for _, hh in inputs.households.sort_values("household_key").iterrows():
        key = hh["household_key"]
        row: dict[str, object] = {"household_key": key, "emd_code": hh["emd_code"]}
        known = []
        for ev in events_by.get(key, pd.DataFrame()).to_dict("records"):
            if ev["reported_month"] < as_of:
                known.append(
                    (ev["indicator_code"], as_of - ev["reported_month"], float(ev["value"]))
                )
        counted_3m = 0
        for ind in catalogue.indicators:
            exists = ind.available_from_index is None or ind.available_from_index < as_of
            mine = [(ago, v) for code, ago, v in known if code == ind.code]

            def put(name: str, value: float, exists=exists, code=ind.code, row=row) -> None:
                row[f"{code}__{name}"] = value if exists else math.nan

            for w in spec.indicator.count_windows:
                put(f"count_{w}m", sum(1 for ago, _ in mine if ago <= w))
            for w in spec.indicator.sum_windows:
                put(f"sum_{w}m", sum(v for ago, v in mine if ago <= w))
            for w in spec.indicator.max_windows:
                put(f"max_{w}m", max([v for ago, v in mine if ago <= w], default=0.0))
            if spec.indicator.months_since_last:
                put("months_since_last", min([ago for ago, _ in mine if ago <= cap], default=cap))
            trend = spec.indicator.trend
            if trend is not None:
                recent = sum(1 for ago, _ in mine if ago <= trend.recent)
                before = sum(
                    1 for ago, _ in mine if trend.recent < ago <= trend.recent + trend.previous
                )
                put(f"trend_{trend.recent}m", recent - before)
        for group in catalogue.groups:
            codes = [i.code for i in catalogue.indicators if i.group == group]
            exists = any(
                i.available_from_index is None or i.available_from_index < as_of
                for i in catalogue.indicators
                if i.group == group
            )
            mine = [ago for code, ago, _ in known if code in codes]
            for w in spec.group.count_windows:
                row[f"group_{group}__count_{w}m"] = (
                    sum(1 for a in mine if a <= w) if exists else math.nan
                )
            if spec.group.months_since_last:
                value = min([a for a in mine if a <= cap], default=cap)
                row[f"group_{group}__months_since_last"] = value if exists else math.nan
        for w in spec.distinct_types_windows:
            row[f"distinct_types__{w}m"] = len({code for code, ago, _ in known if ago <= w})
        counted_3m = sum(1 for _, ago, _ in known if ago <= 3)

        people = members_by.get(key, pd.DataFrame()).to_dict("records")
        ages = [year_of(as_of) - p["birth_year"] for p in people]
        head = next(p for p in people if p["relation"] == "head")
        head_age = year_of(as_of) - head["birth_year"]
        minors = sum(1 for a in ages if a < 18)
        values = {
            "size": hh["size"],
            "tenure": hh["tenure"],
            "income_band": INCOME_BANDS.index(hh["income_band"]),
            "benefit_status": hh["benefit_status"],
            "minors": minors,
            "elderly_members": sum(1 for a in ages if a >= 65),
            "disabled_members": sum(1 for p in people if p["disability"]),
            "single_elderly": int(hh["size"] == 1 and head_age >= 65),
            "single_parent": int(minors > 0 and not any(p["relation"] == "spouse" for p in people)),
            "urban": int(hh["emd_code"] in inputs.urban_emds),
        }
        for name in spec.household:
            row[f"hh__{name}"] = values[name]

        listed = [
            o
            for o in outcomes_by.get(key, pd.DataFrame()).to_dict("records")
            if o["round_month"] < as_of
        ]
        resolved = [
            o for o in listed if not pd.isna(o["resolved_month"]) and o["resolved_month"] < as_of
        ]
        resolved.sort(key=lambda o: (o["round_month"], o["resolved_month"]))
        history = {
            "times_listed": len(listed),
            "months_since_listed": min([as_of - o["round_month"] for o in listed] + [cap]),
            "last_outcome": resolved[-1]["outcome_code"] if resolved else NO_OUTCOME,
        }
        for name in spec.history:
            row[f"history__{name}"] = history[name]
        row["_any_signal_3m"] = counted_3m > 0
        row["_labels"] = [
            label_of[o["outcome_code"]] for o in resolved if label_of[o["outcome_code"]] is not None
        ]
        audit = {
            "head_sex": head["sex"],
            "head_age_band": AGE_BANDS[int(age_band(np.array([head_age]))[0])],
        }
        for name in spec.audit_only:
            row[f"audit__{name}"] = audit[name]
        rows.append(row)

    frame = pd.DataFrame(rows)
    ctx = spec.context
    if "emd_signal_rate_3m" in ctx.features:
        prior = frame["_any_signal_3m"].mean()
        rate = {}
        for emd, group in frame.groupby("emd_code"):
            rate[emd] = (group["_any_signal_3m"].sum() + ctx.smoothing_households * prior) / (
                len(group) + ctx.smoothing_households
            )
        frame["context__emd_signal_rate_3m"] = frame["emd_code"].map(rate)
    if "emd_past_need_rate" in ctx.features:
        all_labels = [y for labels in frame["_labels"] for y in labels]
        prior = sum(all_labels) / len(all_labels) if all_labels else math.nan
        rate = {}
        for emd, group in frame.groupby("emd_code"):
            labels = [y for ys in group["_labels"] for y in ys]
            rate[emd] = (sum(labels) + ctx.smoothing_visits * prior) / (
                len(labels) + ctx.smoothing_visits
            )
        frame["context__emd_past_need_rate"] = frame["emd_code"].map(rate)
    return frame.drop(columns=["_any_signal_3m", "_labels"])
