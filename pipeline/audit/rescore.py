"""The facts of the ``re-score`` link: a deterministic sample of scored rows, scored again.

Owns which rows are re-scored (:func:`candidates`, :func:`choose_sample`) and how: the sampled
households' rows are read from the round's feature folder and scored with the recorded model
object (:func:`rescore`). The comparison with the stored scores is the pure check
:func:`pipeline.audit.checks.check_rescore`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.catalogue import load_outcomes
from pipeline.config import Config
from pipeline.datasets import TableLayout
from pipeline.datasets.features import FEATURES_TABLE
from pipeline.tracking.runs import first_line
from pipeline.vocabulary import KEY, LISTED_TIERS, coerce_feature_types


def candidates(scores: pd.DataFrame, list_rows: Mapping[str, pd.DataFrame] | None) -> pd.DataFrame:
    """The rows to sample from: a list's own rows when a list is audited and has some (the
    first of ``list_rows``; None when the whole round is audited), else every scored row."""
    if not list_rows:
        return scores
    rows = next(iter(list_rows.values()))
    keys = set(rows[KEY].astype(str)) if KEY in rows else set()
    listed = scores[scores[KEY].isin(keys).to_numpy()]
    return listed if len(listed) else scores


def choose_sample(candidates: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """A deterministic sample of ``n`` rows: half from the listed tiers, the rest from all others
    (``n`` None: every row, ``outreach audit --full``).

    Listed households are what offices act on, so they are always represented; the draw depends
    only on the rows (in household-key order), ``n`` and the seed.
    """
    frame = candidates.sort_values(KEY, kind="stable").reset_index(drop=True)
    if n is None or len(frame) <= n:
        return frame
    rng = np.random.default_rng(seed)
    is_listed = frame["tier"].isin(LISTED_TIERS).to_numpy()
    listed = np.flatnonzero(is_listed)
    other = np.flatnonzero(~is_listed)
    take_listed = min(len(listed), n // 2 if len(other) else n)
    take_other = min(len(other), n - take_listed)
    take_listed = min(len(listed), n - take_other)
    chosen = np.concatenate(
        [
            rng.choice(listed, size=take_listed, replace=False),
            rng.choice(other, size=take_other, replace=False),
        ]
    )
    return frame.iloc[np.sort(chosen)].reset_index(drop=True)


def rescore(
    config: Config, model: Any, features_dir: Path, sample: pd.DataFrame, whole: bool = False
) -> tuple[pd.DataFrame, list[str]]:
    """``household_key``, ``stored`` and ``recomputed`` scores of the sampled rows (NaN where
    the features are missing or cannot be scored), and why a partition could not be scored.

    ``whole``: the sample is (nearly) every row, so each partition is read whole and its rows
    picked after, which is faster than a filter on that many keys."""
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
    compared = pd.DataFrame(
        {
            KEY: sample[KEY].astype(str).to_numpy(),
            "stored": sample["score"].astype("float64").to_numpy(),
            "recomputed": [recomputed.get(k, np.nan) for k in sample[KEY].astype(str)],
        }
    )
    return compared, errors
