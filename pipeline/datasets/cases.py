"""Reading a round's cases: its list, the visit outcomes and the call results that came back.

The case logic is :mod:`pipeline.cases` (pure); this module only finds and reads the datasets:
the round's ``scores.parquet`` (visit and phone tiers), ``outcomes/round=R/outcomes.parquet``
and ``outcomes/round=R/calls.parquet``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.parquet as pq

from pipeline.cases import CarryPolicy, carried_cases, round_cases
from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.datasets.outcomes import round_calls_file, round_outcomes_file
from pipeline.datasets.rounds import SCORES, parquet_file
from pipeline.errors import DataError
from pipeline.io import sha256_file
from pipeline.months import parse_month
from pipeline.vocabulary import LISTED_TIERS

if TYPE_CHECKING:
    from pipeline.catalogue import OutcomeCatalogue

LISTED_COLUMNS = (
    "household_key",
    "sigungu_code",
    "emd_code",
    "tier",
    "list_rank",
    "selection_reason",
)
CASE_HISTORY_COLUMNS = ("carried_rounds", "phone_attempts", "case_history")


@dataclass(frozen=True)
class CarriedIn:
    """The open cases a round takes over from the round before it, and where they came from."""

    frame: pd.DataFrame  # pipeline.cases.CARRY_COLUMNS
    from_round: str | None
    files_sha256: dict[str, str]  # the files read, relative to the output root


def scored_round_labels(config: Config) -> list[str]:
    """Rounds (``YYYY-MM``) of this output root with a ``scores.parquet``, sorted."""
    folder = OutputLayout(config.paths.output_root).rounds
    if not folder.is_dir():
        return []
    labels = []
    for child in folder.iterdir():
        try:
            parse_month(child.name)
        except ValueError:
            continue
        if (child / SCORES).is_file():
            labels.append(child.name)
    return sorted(labels)


def previous_round(config: Config, as_of: int) -> str | None:
    """The latest scored round before month ``as_of``, if any."""
    earlier = [label for label in scored_round_labels(config) if parse_month(label) < as_of]
    return earlier[-1] if earlier else None


def read_listed(config: Config, round_label: str) -> pd.DataFrame:
    """The visit and phone tiers of a scored round, with their case history when it has one."""
    path = OutputLayout(config.paths.output_root).round(round_label) / SCORES
    names = parquet_file(path).schema_arrow.names
    columns = [*LISTED_COLUMNS, *(c for c in CASE_HISTORY_COLUMNS if c in names)]
    try:
        table = pq.read_table(path, columns=columns, filters=[("tier", "in", list(LISTED_TIERS))])
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the listed households ({exc})") from None
    return table.to_pandas()


def _read_optional(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__})") from None


def due_month(config: Config, round_label: str) -> int:
    """The last month of a round's interval: answers are due by its end."""
    return parse_month(round_label) + config.window.round_interval_months - 1


def read_round_cases(
    config: Config, round_label: str, catalogue: OutcomeCatalogue
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The cases of a scored round (:func:`pipeline.cases.round_cases`, judged at the end of
    the data window) and the sha256 of the answer files read, relative to the output root."""
    outcomes_path = round_outcomes_file(config, round_label)
    calls_path = round_calls_file(config, round_label)
    root = Path(config.paths.output_root)
    digests = {
        str(p.relative_to(root)): sha256_file(p) for p in (outcomes_path, calls_path) if p.is_file()
    }
    cases = round_cases(
        read_listed(config, round_label),
        _read_optional(outcomes_path),
        _read_optional(calls_path),
        catalogue,
        now_month=parse_month(config.window.end),
        due_month=due_month(config, round_label),
    )
    return cases, digests


def carried_into(
    config: Config, as_of: int, catalogue: OutcomeCatalogue, policy: CarryPolicy
) -> CarriedIn:
    """The open cases of the latest round before ``as_of`` that go on to round ``as_of``."""
    previous = previous_round(config, as_of)
    if previous is None or policy.max_rounds <= 0:
        return CarriedIn(carried_cases(pd.DataFrame(), "", catalogue, policy), None, {})
    cases, digests = read_round_cases(config, previous, catalogue)
    frame = carried_cases(cases, previous, catalogue, policy, config.scoring.language)
    return CarriedIn(frame, previous, digests)
