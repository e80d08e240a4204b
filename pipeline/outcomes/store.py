"""Where imported visit outcomes live, and how other stages read them.

``<output_root>/outcomes/round=YYYY-MM/outcomes.parquet``: one row per household of that round
whose outcome came back (the latest accepted answer per household). Columns (the contract the
feature stage and the report rely on):

- ``household_key`` (string), ``sigungu_code`` (string), ``emd_code`` (string);
- ``round`` (string ``YYYY-MM``);
- ``outcome_code`` (string, a code of ``configs/outcomes.yaml``);
- ``contact_date`` (date32: the day the caseworker resolved or tried to contact);
- ``added_by_caseworker`` (bool: not on the round's list, added by local discretion);
- ``selection_reason`` (string: ``model_score``, ``random_exploration`` or ``local_discretion``)
  and ``selection_probability`` (float64);
- ``source_file_sha256`` (string: the imported file the answer came from).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.config import Config
from pipeline.datasets import OutputLayout

OUTCOMES_FILE = "outcomes.parquet"
COLUMNS = (
    "household_key",
    "sigungu_code",
    "emd_code",
    "round",
    "outcome_code",
    "contact_date",
    "added_by_caseworker",
    "selection_reason",
    "selection_probability",
    "source_file_sha256",
)


def round_outcomes_file(config: Config, round_label: str) -> Path:
    """The outcomes file of one round (it may not exist yet)."""
    return OutputLayout(config.paths.output_root).outcomes / f"round={round_label}" / OUTCOMES_FILE


def imported_rounds(config: Config) -> list[str]:
    """Rounds (``YYYY-MM``) with imported outcomes, sorted."""
    folder = OutputLayout(config.paths.output_root).outcomes
    if not folder.is_dir():
        return []
    return sorted(
        p.name.removeprefix("round=")
        for p in folder.iterdir()
        if p.is_dir() and p.name.startswith("round=") and (p / OUTCOMES_FILE).is_file()
    )


def read_round_outcomes(config: Config, round_label: str) -> pd.DataFrame | None:
    """The imported outcomes of a round, or None when none came back yet."""
    path = round_outcomes_file(config, round_label)
    if not path.is_file():
        return None
    return pd.read_parquet(path)
