"""What a round recorded about one household, read for its explanation (thin I/O).

Reads only the household's own rows: its row of ``scores.parquet`` (tier, score, selection,
the reasons as the score stage wrote them), its row of the feature partition the round was
scored from (which kinds of data the model read about it) and the round's model inputs
(``model/feature_importance.csv``). Every file read is checked against the sha256 the round's
manifest records, so the explanation says what the round used, or nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from pipeline.config import Config
from pipeline.datasets import TableLayout
from pipeline.datasets.features import DATA_DICTIONARY_CSV, FEATURES_TABLE
from pipeline.datasets.rounds import (
    IMPORTANCE,
    MANIFEST,
    SCORES,
    read_manifest,
    read_rows,
    round_dir,
    scored_features_folder,
)
from pipeline.datasets.staged import region_names
from pipeline.errors import DataError, UsageError
from pipeline.io import sha256_file, short_digest
from pipeline.months import format_month
from pipeline.vocabulary import AUDIT_PREFIX, EMD, KEY, KEY_FORM, SERVICES_TEXT

# The scores columns an explanation shows (reasons are added for the round's reason count).
ROW_COLUMNS = (KEY, "sigungu_code", EMD, "score", "tier", "selection_reason", "list_rank")
# A description's note on how a value is coded ("(기준중위소득 대비, 0=30% 미만 …)"): not shown.
_CODING = re.compile(r"\([^)]*\d[^)]*\)")


@dataclass(frozen=True)
class UsedData:
    """The kinds of data the round's model read about one household (values present)."""

    indicators: tuple[str, ...]  # indicator codes with a report in the features' history
    household: tuple[str, ...]  # Korean descriptions of the household facts read
    history: bool  # the household was listed in earlier rounds
    area: bool  # its 읍면동's figures (not about the household itself)


@dataclass(frozen=True)
class RoundHousehold:
    """One household of a scored round, as the round recorded it."""

    key: str
    round: str
    folder: Path
    row: dict[str, Any]
    reasons: tuple[str, ...]  # the reason texts of the round, in order
    emd_name: str
    sigungu_name: str
    model: str  # e.g. "welfare-outreach v3"
    manifest_sha256: str
    used: UsedData
    services: str = ""  # the services suggested to offer, as the round's list shows them


def check_key(key: str) -> str:
    """The household key as typed; UsageError when it is not one (it names a file later)."""
    if not re.fullmatch(KEY_FORM, key or ""):
        raise UsageError(
            f"explain: {key!r} is not a household key (1 to 64 letters, digits, - or _)"
        )
    return key


def _verified(path: Path, recorded: Any, what: str) -> Path:
    """``path`` when its sha256 is the one the round recorded; DataError otherwise."""
    if not path.is_file():
        raise DataError(f"{path}: {what} of the round is missing: cannot explain the round")
    have = sha256_file(path)
    if have != recorded:
        raise DataError(
            f"{path}: {what} changed since the round was scored (sha256 {short_digest(have)}, "
            f"the round manifest records {short_digest(recorded)}): the explanation would not "
            "say what the round used"
        )
    return path


def used_data(
    features: dict[str, Any], dictionary: pd.DataFrame, inputs: set[str], months_cap: int
) -> UsedData:
    """Which kinds of data the model read about a household (pure).

    ``features``: the household's feature row; ``dictionary``: the feature folder's data
    dictionary (name, kind, aggregation, source_indicators, description_ko); ``inputs``: the
    model's input columns. An indicator counts when one of its columns holds a report (a count,
    sum or largest value above zero, or a last report within ``months_cap`` months); a
    household fact when its value is present; the history when the household was listed before.
    """
    indicators: list[str] = []
    household: list[str] = []
    history = area = False
    for entry in dictionary.itertuples(index=False):
        name = str(entry.name)
        if name not in inputs or name.startswith(AUDIT_PREFIX) or name not in features:
            continue
        value = features[name]
        if value is None or pd.isna(value):
            continue
        kind = str(entry.kind)
        if kind == "indicator":
            if str(entry.aggregation) == "months_since_last":
                reported = float(value) < months_cap
            elif str(entry.aggregation) == "trend":
                reported = False  # a difference of counts: the counts say it
            else:
                reported = float(value) > 0
            code = str(entry.source_indicators)
            if reported and code not in indicators:
                indicators.append(code)
        elif kind == "household":
            text = _CODING.sub("", str(entry.description_ko)).strip()
            if text not in household:
                household.append(text)
        elif kind == "history" and name.endswith("times_listed"):
            history = float(value) > 0
        elif kind == "context":
            area = True
    return UsedData(tuple(indicators), tuple(household), history, area)


def read_household(config: Config, as_of: int, key: str, months_cap: int) -> RoundHousehold:
    """The household ``key`` as round ``as_of`` recorded it.

    UsageError when the round is not scored here or the household is not among its scored
    households; DataError when a file the round recorded is missing (its household data
    destroyed) or changed since.
    """
    key = check_key(key)
    label = format_month(as_of)
    folder = round_dir(config, as_of)
    scores = folder / SCORES
    if not (folder / MANIFEST).is_file():
        raise UsageError(
            f"explain: round {label} is not scored here ({folder / MANIFEST} not found): "
            "nothing to explain"
        )
    if not scores.is_file():
        raise DataError(
            f"explain: {scores} not found: the household data of round {label} is no longer "
            "here (destroyed after the retention period, see `outreach retention`), nothing to "
            "explain"
        )
    manifest = read_manifest(folder)
    recorded = manifest.get("files_sha256") or {}
    _verified(scores, recorded.get(SCORES), "the scores")
    k = int((manifest.get("config") or {}).get("scoring", {}).get("reasons", 3))
    reason_columns = [f"reason_{i}_text" for i in range(1, k + 1)]
    suggested = [SERVICES_TEXT] if SERVICES_TEXT in pq.read_schema(scores).names else []
    rows = read_rows(scores, [*ROW_COLUMNS, *reason_columns, *suggested], {KEY: [key]})
    if rows.empty:
        raise UsageError(
            f"explain: household {key} was not scored in round {label} ({scores}): an unknown "
            "key, a household not eligible, or one left out after refusing profiling; no "
            "explanation written"
        )
    row = rows.iloc[0].to_dict()
    reasons = tuple(
        str(row[c]) for c in reason_columns if row.get(c) is not None and not pd.isna(row[c])
    )
    importance = _verified(folder / IMPORTANCE, recorded.get(IMPORTANCE), "the model inputs")
    inputs = set(pd.read_csv(importance, dtype={"feature": str})["feature"])
    features = manifest.get("features") or {}
    feature_files = features.get("files_sha256") or {}
    feature_dir = scored_features_folder(config, manifest, label)
    sigungu = str(row["sigungu_code"])
    partition = TableLayout(feature_dir).partition_file(FEATURES_TABLE, sigungu)
    relative = partition.relative_to(feature_dir).as_posix()
    _verified(partition, feature_files.get(relative), "the household's features")
    dictionary_file = _verified(
        feature_dir / DATA_DICTIONARY_CSV,
        feature_files.get(DATA_DICTIONARY_CSV),
        "the data dictionary",
    )
    dictionary = pd.read_csv(dictionary_file, dtype=str)
    columns = [c for c in dictionary["name"] if c in inputs]
    found = read_rows(partition, columns, {KEY: [key]})
    if found.empty:
        raise DataError(f"{partition}: household {key} missing from the round's features")
    used = used_data(found.iloc[0].to_dict(), dictionary, inputs, months_cap)
    names = region_names(config)
    model = manifest.get("model") or {}
    return RoundHousehold(
        key=key,
        round=label,
        folder=folder,
        row=row,
        reasons=reasons,
        emd_name=names.get(str(row[EMD]), str(row[EMD])),
        sigungu_name=names.get(sigungu, sigungu),
        model=f"{model.get('name', '?')} v{model.get('version', '?')}",
        manifest_sha256=sha256_file(folder / MANIFEST),
        used=used,
        services=""
        if row.get(SERVICES_TEXT) is None or pd.isna(row.get(SERVICES_TEXT))
        else str(row[SERVICES_TEXT]),
    )
