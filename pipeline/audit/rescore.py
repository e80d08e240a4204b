"""The facts of the ``re-score`` link: the scored rows that could change a list, scored again.

Owns which rows are re-scored (:func:`scope`, :func:`choose_rows`: every listed household, the
unlisted ones just below each 읍면동's cut, a seeded sample of the rest; or every row) and how:
their rows are read from the round's feature folder and scored with the recorded model object
(:func:`rescore`). The comparison with the stored scores is the pure check
:func:`pipeline.audit.checks_rescore.check_rescore`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.catalogue import load_outcomes
from pipeline.config import Config
from pipeline.datasets import TableLayout
from pipeline.datasets.features import FEATURES_TABLE
from pipeline.tracking.runs import first_line
from pipeline.vocabulary import EMD, KEY, LISTED_TIERS, coerce_feature_types

LISTED, NEAR_CUT, SAMPLED = "listed", "near the cut", "sampled"


@dataclass(frozen=True)
class Selection:
    """The rows re-scored (``household_key``, ``sigungu_code``, ``score`` and ``why``: listed,
    near the cut or sampled) and how they were chosen, for the ``re-score`` line."""

    rows: pd.DataFrame
    population: int  # scored rows in scope (the round, or a list's 읍면동)
    listed: int
    near_cut: int
    sampled: int
    rest: int  # unlisted rows not near the cut, the sample is drawn from
    near_per_emd: int
    seed: int
    full: bool


def scope(scores: pd.DataFrame, list_rows: Mapping[str, pd.DataFrame] | None) -> pd.DataFrame:
    """The scored rows the re-score covers: every row of the round (``list_rows`` None), or,
    when a list is audited, every row of the 읍면동 its households are in (so that the rows just
    below its cut are re-scored too); every row when no household of the list is scored."""
    if not list_rows:
        return scores
    rows = next(iter(list_rows.values()))
    keys = set(rows[KEY].astype(str)) if KEY in rows else set()
    emds = set(scores.loc[scores[KEY].isin(keys).to_numpy(), EMD])
    inside = scores[scores[EMD].isin(emds).to_numpy()]
    return inside if len(inside) else scores


def choose_rows(rows: pd.DataFrame, near_per_emd: int, sample: int | None, seed: int) -> Selection:
    """Which rows to re-score: every listed row; per 읍면동, the ``near_per_emd`` unlisted rows
    with the highest stored scores (ties by household key): those whose rank could change a
    list; and a seeded random sample of ``sample`` rows of the rest (``sample`` None: every row,
    ``outreach audit --full``). Depends only on the rows, the settings and the seed."""
    frame = rows.sort_values(KEY, kind="stable").reset_index(drop=True)
    why = np.full(len(frame), "", dtype=object)
    is_listed = frame["tier"].isin(LISTED_TIERS).to_numpy()
    why[is_listed] = LISTED
    unlisted = frame[~is_listed]
    ranked = unlisted.sort_values([EMD, "score", KEY], ascending=[True, False, True])
    near = ranked.groupby(EMD, sort=False).cumcount().lt(near_per_emd)
    why[near[near].index.to_numpy()] = NEAR_CUT
    rest = np.flatnonzero(why == "")
    if sample is None:
        why[rest] = SAMPLED
    elif len(rest):
        rng = np.random.default_rng(seed)
        why[rng.choice(rest, size=min(sample, len(rest)), replace=False)] = SAMPLED
    chosen = frame.assign(why=why)[why != ""].reset_index(drop=True)
    counts = chosen["why"].value_counts()
    return Selection(
        rows=chosen,
        population=len(frame),
        listed=int(counts.get(LISTED, 0)),
        near_cut=int(counts.get(NEAR_CUT, 0)),
        sampled=int(counts.get(SAMPLED, 0)),
        rest=len(rest),
        near_per_emd=near_per_emd,
        seed=seed,
        full=sample is None,
    )


def rescore(
    config: Config,
    model: Any,
    features_dir: Path | None,
    sample: pd.DataFrame,
    whole: bool = False,
) -> tuple[pd.DataFrame, list[str]]:
    """``household_key``, ``stored`` and ``recomputed`` scores of the chosen rows (NaN where
    the features are missing or cannot be scored; ``why`` kept when given), and why a partition
    could not be scored.

    ``whole``: the rows are many, so each partition is read whole and its rows picked after,
    which is faster than a filter on that many keys."""
    if features_dir is None:
        return _compared(sample, {}), ["the round's feature folder is not followed"]
    outcomes = load_outcomes(config.paths.outcomes)
    layout = TableLayout(features_dir)
    recomputed: dict[str, float] = {}
    errors: list[str] = []
    for code, group in sample.groupby("sigungu_code", sort=True):
        path = layout.partition_file(FEATURES_TABLE, str(code))
        shown = path.relative_to(features_dir).as_posix()
        if not path.is_file():
            errors.append(f"{shown}: feature partition missing")
            continue
        keys = sorted(group[KEY].astype(str))
        try:
            if whole:
                frame = pd.read_parquet(path)
                frame = frame[frame[KEY].astype(str).isin(keys).to_numpy()]
            else:
                frame = pd.read_parquet(path, filters=[(KEY, "in", keys)])
            if frame.empty:
                continue
            frame = coerce_feature_types(frame, outcomes)
            scores = model.predict_proba(frame)[:, 1]
        except Exception as exc:  # a tampered partition: report it, keep auditing
            errors.append(f"{shown}: cannot be scored ({first_line(exc)})")
            continue
        recomputed.update(zip(frame[KEY].astype(str), scores.tolist(), strict=True))
    return _compared(sample, recomputed), errors


def _compared(sample: pd.DataFrame, recomputed: Mapping[str, float]) -> pd.DataFrame:
    compared = pd.DataFrame(
        {
            KEY: sample[KEY].astype(str).to_numpy(),
            "stored": sample["score"].astype("float64").to_numpy(),
            "recomputed": [recomputed.get(k, np.nan) for k in sample[KEY].astype(str)],
        }
    )
    if "why" in sample.columns:
        compared["why"] = sample["why"].to_numpy()
    return compared
