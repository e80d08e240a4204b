"""The pure check of the ``re-score`` link: stored scores against the registered model's.

Facts in, findings out: the rows chosen by :func:`pipeline.audit.rescore.choose_rows` (every
listed household, the unlisted ones just below each 읍면동's cut, a seeded sample of the rest, or
every row) with their stored and re-computed scores. The line says how many of each were
re-scored, and with which seed, so that an auditor knows what a pass covers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from pipeline.audit.findings import RESCORE, Finding, result
from pipeline.audit.rescore import Selection


def coverage(selection: Selection) -> str:
    """What was re-scored, in words: ``18,004 listed, 3,060 near the cut (20 per 읍면동), 200
    sampled of the other 922,432 (seed 20261203)``, or ``every row (--full)``."""
    if selection.full:
        return "every row (--full)"
    return (
        f"{selection.listed:,} listed, {selection.near_cut:,} near the cut (the next "
        f"{selection.near_per_emd} per 읍면동 by stored score), {selection.sampled:,} sampled of "
        f"the other {selection.rest:,} (seed {selection.seed})"
    )


def check_rescore(
    compared: pd.DataFrame,
    selection: Selection,
    tolerance: float,
    model_label: str,
    errors: Sequence[str] = (),
) -> list[Finding]:
    """Every chosen row's stored score equals the recorded model's score of its stored features.

    ``compared`` holds ``household_key``, ``stored``, ``recomputed`` (NaN when the features were
    not found or could not be scored) and ``why`` it was chosen; ``errors`` say why a partition
    could not be scored.
    """
    if compared.empty:
        return [result(RESCORE, ["no row to re-score"], "")]
    problems = list(errors)
    found = compared[compared["recomputed"].notna().to_numpy()]
    diff = (found["recomputed"] - found["stored"]).abs()
    bad = found[(diff > tolerance).to_numpy()]
    worst = float(diff.max()) if len(diff) else math.nan
    if len(bad):
        kinds = ", ".join(f"{n:,} {why}" for why, n in bad["why"].value_counts().items())
        problems.insert(
            0,
            f"{len(bad):,} of {len(compared):,} re-scored rows ({kinds}) differ by more than "
            f"{tolerance:g} (worst {worst:.3g}) with {model_label}",
        )
        for row in bad.head(5).itertuples(index=False):
            problems.append(
                f"household {row.household_key} ({row.why}): stored {row.stored:.12f}, "
                f"re-scored {row.recomputed:.12f}"
            )
    lost = compared[compared["recomputed"].isna().to_numpy()]
    if len(lost):
        problems.append(
            f"{len(lost):,} of {len(compared):,} chosen households could not be re-scored from "
            f"the feature folder (e.g. {', '.join(lost['household_key'].head(3))})"
        )
    return [
        result(
            RESCORE,
            problems,
            f"{len(compared):,} of {selection.population:,} rows re-scored with {model_label}: "
            f"{coverage(selection)}; max |difference| {worst:.3g} (tolerance {tolerance:g})",
        )
    ]
