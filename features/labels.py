"""Outreach labels from past visit outcomes, as known at a round date.

The label of (household, round) is whether the visit in that round found need
(``configs/outcomes.yaml``: public or private support = 1, closed with no need = 0). Labels are
selective: only households that an earlier list chose have one. A label is known only once its
outcome was resolved before ``as_of``; before that it is missing, with the reason kept.

A household the caseworker skipped (an override of the returned list: outcome code ``skipped``,
``pipeline.vocabulary.SKIPPED``, see ``pipeline.datasets.outcomes.feature_outcomes``) was listed
but not visited: it gives no label, never a negative (missing reason ``skipped``). Not contacting
a household says nothing about its need; counting it as "no need" would teach the model the
caseworkers' choices instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.catalogue import OutcomeCatalogue
from pipeline.vocabulary import SKIPPED

MISSING_REASONS = ("unreachable", "in_progress", "not_resolved_by_as_of", SKIPPED)


def build_labels(
    outcomes: pd.DataFrame, as_of: int, outcome_catalogue: OutcomeCatalogue
) -> pd.DataFrame:
    """One row per household listed in a round before ``as_of``.

    Input columns: household_key, emd_code, round_month, selection_reason, selection_probability,
    outcome_code, resolved_month (month indexes; resolved may be NA), and optionally
    ``service_code`` (the service a linked visit recorded) and ``source`` (``staged``: the
    administrative history; ``imported``: a list returned by caseworkers and imported with
    ``outreach outcomes import``). Output adds ``label`` (nullable Int8), ``label_known`` and
    ``missing_reason``; the outcome shown is the one known at ``as_of``, and so is the service
    (the label of the service match: NA until the visit is resolved).
    """
    past = outcomes[outcomes["round_month"].to_numpy(dtype=np.int64) < as_of].copy()
    code = past["outcome_code"].astype("string")
    skipped = (code == SKIPPED).fillna(False)
    resolved = pd.to_numeric(past["resolved_month"], errors="coerce").mask(skipped)
    known = resolved.notna() & (resolved < as_of)
    label_of = outcome_catalogue.label_of()
    label = code.map(label_of).where(known)
    # Only what was known at as_of: a visit not resolved by then may still end in any way (or
    # stay in progress), so its later outcome code says nothing about it here.
    missing = pd.Series(pd.NA, index=past.index, dtype="string")
    missing = missing.mask(~known, "not_resolved_by_as_of")
    missing = missing.mask(known & (code == "unreachable"), "unreachable")
    missing = missing.mask(known & (code == "in_progress"), "in_progress")
    missing = missing.mask(skipped, SKIPPED)  # not visited: no label at any as_of
    frame = pd.DataFrame(
        {
            "household_key": past["household_key"].astype("string"),
            "emd_code": past["emd_code"].astype("string"),
            "round_month": past["round_month"].astype("int32"),
            "selection_reason": past["selection_reason"].astype("string"),
            "selection_probability": past["selection_probability"].astype("float64"),
            "outcome_code": code.where(known, "in_progress").mask(skipped, SKIPPED),
            "resolved_month": resolved.where(known).astype("Int32"),
            "label": pd.array(label, dtype="Int8"),
            "label_known": known.to_numpy(),
            "missing_reason": missing,
        }
    )
    if "service_code" in past.columns:
        frame["service_code"] = past["service_code"].astype("string").where(known & ~skipped)
    if "source" in past.columns:
        frame["source"] = past["source"].astype("string")
    return frame.sort_values(["round_month", "household_key"], kind="stable").reset_index(drop=True)
