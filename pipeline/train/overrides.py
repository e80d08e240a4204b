"""The override rate a training run logs: how often caseworkers skipped or added households in
the returned lists of the training rounds.

Pure part (:func:`override_figures`): the imported answers of the training rounds in,
:class:`models.card.OverrideFigures` out. Thin part (:func:`training_overrides`): reads the
rounds' ``outcomes.parquet`` (``pipeline.datasets.outcomes``). The train stage logs the figures
as MLflow metrics (:func:`override_metrics`), the per-reason table as the artifact
``overrides/override_rates.json`` (:func:`override_record`) and passes them to the model card.

A listed household is a row of the imported answers not added by the caseworker (the
denominator of both rates: the listed households whose answers came back); skipped ones are
those with an override (``pipeline.datasets.outcomes.skipped_mask``); added ones are rows added
by the caseworker, through an ``add`` reason or the selection column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from models.card import OverrideFigures
from pipeline.catalogue import OutcomeCatalogue
from pipeline.config import Config
from pipeline.datasets.outcomes import (
    imported_outcome_files,
    outcomes_root,
    skipped_mask,
    with_override,
)
from pipeline.months import format_month
from pipeline.tracking.names import OVERRIDES

OVERRIDES_ARTIFACT = OVERRIDES  # named in pipeline.tracking.names (the AI file reads it back)


def override_figures(
    answers: pd.DataFrame, rounds: Sequence[str], catalogue: OutcomeCatalogue
) -> OverrideFigures:
    """The override figures of the imported ``answers`` (rows of ``outcomes.parquet``) of the
    training ``rounds`` (labels ``YYYY-MM``); pure."""
    answers = with_override(answers)
    answers = answers[answers["round"].astype("string").isin(list(rounds))]
    added = answers["added_by_caseworker"].astype(bool).to_numpy(dtype=bool)
    skipped = skipped_mask(answers)
    codes = answers["override_code"].astype("string")
    reasons = tuple(
        (r.code, r.action, r.name_en, int((codes == r.code).fillna(False).sum()))
        for r in catalogue.override_reasons
    )
    present = sorted(set(answers["round"].astype(str)))
    return OverrideFigures(
        rounds=tuple(present),
        listed=int((~added).sum()),
        skipped=int(skipped.sum()),
        added=int(added.sum()),
        reasons=reasons,
    )


def override_metrics(figures: OverrideFigures) -> dict[str, float]:
    """MLflow metrics of the figures: counts always, rates when some answer came back."""
    metrics = {
        "overrides.listed_returned": float(figures.listed),
        "overrides.skipped": float(figures.skipped),
        "overrides.added": float(figures.added),
    }
    if figures.listed:
        metrics["overrides.skip_rate"] = figures.skip_rate
        metrics["overrides.add_rate"] = figures.add_rate
        for code, _, _, households in figures.reasons:
            metrics[f"overrides.rate.{code}"] = figures.reason_rate(households)
    return metrics


def override_record(figures: OverrideFigures) -> dict[str, Any]:
    """The JSON artifact: the rounds, the counts and rates, one entry per reason."""

    def rate(value: float) -> float | None:
        return None if value != value else round(value, 6)

    return {
        "rounds": list(figures.rounds),
        "listed_returned": figures.listed,
        "skipped": figures.skipped,
        "added": figures.added,
        "skip_rate": rate(figures.skip_rate),
        "add_rate": rate(figures.add_rate),
        "reasons": [
            {
                "code": code,
                "action": action,
                "name_en": name,
                "households": households,
                "share_of_listed": rate(figures.reason_rate(households)),
            }
            for code, action, name, households in figures.reasons
        ],
    }


def training_overrides(
    config: Config, as_of: int, train_rounds: Sequence[int], catalogue: OutcomeCatalogue
) -> OverrideFigures:
    """The figures of the imported answers of the training rounds (those before ``as_of``)."""
    labels = [format_month(r) for r in train_rounds]
    files = imported_outcome_files(outcomes_root(config), before=as_of)
    frames = [pd.read_parquet(files[label]) for label in labels if label in files]
    if not frames:
        empty = pd.DataFrame(
            {"round": pd.Series(dtype="string"), "added_by_caseworker": pd.Series(dtype=bool)}
        )
        return override_figures(empty, labels, catalogue)
    return override_figures(pd.concat(frames, ignore_index=True), labels, catalogue)
