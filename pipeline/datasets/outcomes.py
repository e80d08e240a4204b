"""Where imported visit outcomes live, and how other stages read them.

``<output_root>/outcomes/round=YYYY-MM/outcomes.parquet``: one row per household of that round
whose outcome came back (the latest accepted answer per household). Columns (the contract the
feature stage and the report rely on):

- ``household_key`` (string), ``sigungu_code`` (string), ``emd_code`` (string);
- ``round`` (string ``YYYY-MM``);
- ``outcome_code`` (string, a code of ``configs/outcomes.yaml``; null only for a household the
  caseworker skipped without an outcome);
- ``contact_date`` (date32: the day the caseworker resolved or tried to contact; null only for
  ``in_progress`` sent without a date);
- ``added_by_caseworker`` (bool: not on the round's list, added by local discretion);
- ``selection_reason`` (string: ``model_score``, ``random_exploration`` or ``local_discretion``)
  and ``selection_probability`` (float64);
- ``source_file_sha256`` (string: the imported file the answer came from);
- ``resolved_month`` (string ``YYYY-MM``, null for an outcome that is not resolved, i.e. whose
  code has ``resolved: false``): the month from which the answer counts as known (point in time);
- ``override_code`` (string, null = no override: a code of ``override_reasons`` in
  ``configs/outcomes.yaml``). The import allows a ``skip`` reason only on a listed household and
  an ``add`` reason only on an added one, so a row is *skipped* exactly when it has an override
  and was not added (:func:`skipped_mask`). A skipped household gives no label. Files written
  before the column existed are read with it empty (:func:`with_override`).

Rows are sorted by 읍면동 and household key, so the same answers give the same bytes. Notes are
never stored (they are dropped when the returned file is read).

An import reads, merges and writes a round's file while it holds the output root's lock
(:mod:`pipeline.locks`), and the file is replaced atomically: imports running at the same time
take turns, and none loses the answers of another.

Next to the round folders: ``imports.jsonl`` (one JSON line per import: file, sha256, counts,
time) and ``rejected/<file sha256>.csv|.xlsx`` (the rows of a file that were rejected, and why,
in Korean).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.io import sha256_file, write_parquet
from pipeline.months import parse_month
from pipeline.vocabulary import SKIPPED

OUTCOMES_FILE = "outcomes.parquet"
IMPORT_LOG = "imports.jsonl"
REJECTED_DIR = "rejected"
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
    "resolved_month",
    "override_code",
    "service_code",
)
SCHEMA = pa.schema(
    [
        ("household_key", pa.string()),
        ("sigungu_code", pa.string()),
        ("emd_code", pa.string()),
        ("round", pa.string()),
        ("outcome_code", pa.string()),
        ("contact_date", pa.date32()),
        ("added_by_caseworker", pa.bool_()),
        ("selection_reason", pa.string()),
        ("selection_probability", pa.float64()),
        ("source_file_sha256", pa.string()),
        ("resolved_month", pa.string()),
        ("override_code", pa.string()),
        ("service_code", pa.string()),  # the service the visit linked (NA: none recorded)
    ]
)
# What makes two answers for a household the same answer (the source file does not).
ANSWER = (
    "emd_code",
    "outcome_code",
    "contact_date",
    "added_by_caseworker",
    "override_code",
    "service_code",
)


def outcomes_root(config: Config) -> Path:
    return OutputLayout(config.paths.output_root).outcomes


def round_outcomes_file(config: Config, round_label: str) -> Path:
    """The outcomes file of one round (it may not exist yet)."""
    return outcomes_root(config) / f"round={round_label}" / OUTCOMES_FILE


def imported_rounds(config: Config) -> list[str]:
    """Rounds (``YYYY-MM``) with imported outcomes, sorted."""
    return sorted(imported_outcome_files(outcomes_root(config)))


def read_round_outcomes(config: Config, round_label: str) -> pd.DataFrame | None:
    """The imported outcomes of a round, or None when none came back yet."""
    path = round_outcomes_file(config, round_label)
    if not path.is_file():
        return None
    return with_override(pd.read_parquet(path))


def with_override(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``override_code`` and ``service_code`` columns (empty when the file
    predates them); pure."""
    for column in ("override_code", "service_code"):
        if column not in frame.columns:
            frame = frame.assign(**{column: pd.array([None] * len(frame), dtype="string")})
    return frame


def skipped_mask(frame: pd.DataFrame) -> np.ndarray:
    """Rows of households the caseworker skipped (an override on a household of the list);
    pure. Added households carry their ``add`` reason, so they are never skipped."""
    frame = with_override(frame)
    override = frame["override_code"].astype("string").notna().to_numpy(dtype=bool)
    added = frame["added_by_caseworker"].astype(bool).to_numpy(dtype=bool)
    return override & ~added


def imported_outcome_files(root: Path, before: int | None = None) -> dict[str, Path]:
    """Round label -> outcomes file under ``root`` (``outputs/outcomes``), for rounds before
    the month index ``before`` when given; sorted by round."""
    if not root.is_dir():
        return {}
    found = {}
    for folder in sorted(root.iterdir()):
        if not (folder.is_dir() and folder.name.startswith("round=")):
            continue
        label = folder.name.removeprefix("round=")
        try:
            month = parse_month(label)
        except ValueError:
            continue
        if (folder / OUTCOMES_FILE).is_file() and (before is None or month < before):
            found[label] = folder / OUTCOMES_FILE
    return found


def rejection_file(config: Config, file_sha256: str, kind: str = "csv") -> Path:
    """Where the rejected rows of an imported file are written (named by the file's sha256), in
    the returned file's format: ``.xlsx`` for an XLSX list, ``.csv`` for a CSV one."""
    suffix = "xlsx" if kind == "xlsx" else "csv"
    return outcomes_root(config) / REJECTED_DIR / f"{file_sha256}.{suffix}"


def import_log_file(config: Config) -> Path:
    """``imports.jsonl``: one JSON line per import."""
    return outcomes_root(config) / IMPORT_LOG


def relative_name(path: Path) -> str:
    """How lineage names an outcomes file: ``round=YYYY-MM/outcomes.parquet``."""
    return f"{path.parent.name}/{path.name}"


def imported_outcome_digests(root: Path, before: int | None = None) -> dict[str, str]:
    """sha256 of the outcomes files of rounds before ``before``, keyed by :func:`relative_name`."""
    return {relative_name(p): sha256_file(p) for p in imported_outcome_files(root, before).values()}


def _day_array(values: pd.Series) -> pa.Array:
    """Dates (a date, a timestamp or empty) as a date32 column."""
    days = [None if v is None or pd.isna(v) else pd.Timestamp(v).date() for v in values]
    return pa.array(days, type=pa.date32())


def _text_array(values: pd.Series) -> pa.Array:
    """Values as a string column, empty cells null (vectorised: a round's outcomes are written
    once per imported file)."""
    text = values.astype("string").to_numpy(dtype=object, na_value=None)
    return pa.array(text, pa.string())


def to_table(frame: pd.DataFrame) -> pa.Table:
    """The stored form of outcome rows (columns and types of ``SCHEMA``; a frame from before the
    override and service columns stores them empty)."""
    frame = with_override(frame)
    arrays = []
    for field in SCHEMA:
        values = frame[field.name]
        if field.name == "contact_date":
            arrays.append(_day_array(values))
        elif pa.types.is_string(field.type):
            arrays.append(_text_array(values))
        elif pa.types.is_boolean(field.type):
            arrays.append(pa.array(values.astype(bool).to_numpy(), pa.bool_()))
        else:
            arrays.append(pa.array(values.astype("float64").to_numpy(), pa.float64()))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _answer_text(frame: pd.DataFrame) -> pd.Series:
    """One comparable string per row for the answer columns."""
    day = pd.to_datetime(frame["contact_date"]).dt.strftime("%Y-%m-%d").fillna("")
    parts = [
        frame["emd_code"].astype("string").fillna(""),
        frame["outcome_code"].astype("string").fillna(""),
        day.astype("string"),
        frame["added_by_caseworker"].astype(bool).astype("string"),
        with_override(frame)["override_code"].astype("string").fillna(""),
    ]
    out = parts[0]
    for part in parts[1:]:
        out = out + "|" + part
    return out


@dataclass(frozen=True)
class Merge:
    """Stored rows after an import, and what the import changed."""

    rows: pd.DataFrame
    new: int
    replaced: int
    unchanged: int

    @property
    def changed(self) -> bool:
        return bool(self.new or self.replaced)


def merge_outcomes(existing: pd.DataFrame | None, incoming: pd.DataFrame) -> Merge:
    """Merge accepted answers into a round's stored ones; pure.

    A household not stored yet is new; one stored with the same answer is unchanged (its stored
    row, with its first source file, is kept); one stored with another answer is replaced by the
    incoming answer. Households stored but absent from the incoming rows keep their answers.
    """
    incoming = with_override(incoming)[list(COLUMNS)].reset_index(drop=True)
    if existing is None or existing.empty:
        rows = incoming
        new, replaced, unchanged = len(incoming), 0, 0
    else:
        existing = with_override(existing)[list(COLUMNS)].reset_index(drop=True)
        stored = pd.Series(
            _answer_text(existing).to_numpy(), index=existing["household_key"].astype(str)
        )
        keys = incoming["household_key"].astype(str)
        before = stored.reindex(keys).to_numpy()
        now = _answer_text(incoming).to_numpy()
        known = pd.notna(before)
        same = known & (before == now)
        new = int((~known).sum())
        replaced = int((known & ~same).sum())
        unchanged = int(same.sum())
        take = incoming[~same]
        keep = existing[~existing["household_key"].astype(str).isin(set(keys[~same]))]
        rows = pd.concat([keep, take], ignore_index=True)
    rows = rows.sort_values(["emd_code", "household_key"], kind="stable").reset_index(drop=True)
    return Merge(rows, new, replaced, unchanged)


def write_round_outcomes(config: Config, round_label: str, rows: pd.DataFrame) -> Path:
    """Write a round's outcomes atomically; returns the file."""
    path = round_outcomes_file(config, round_label)
    write_parquet(to_table(rows), path)
    return path


def feature_outcomes(path: Path, sigungu: str) -> pd.DataFrame:
    """One round's imported outcomes of one 시군구 in the shape of the staged
    ``outreach_outcomes`` table the feature stage reads (month indexes, resolved may be NA).

    A household the caseworker skipped (:func:`skipped_mask`) enters with the outcome code
    ``skipped`` (``pipeline.vocabulary.SKIPPED``, no outcome of the catalogue) and no resolved
    month, whatever outcome the row had: it was listed, never visited, and gives no label
    (``features.labels``: missing reason ``skipped``; history features count it as listed, not
    as a visit)."""
    frame = with_override(pd.read_parquet(path))
    frame = frame[frame["sigungu_code"].astype("string") == sigungu]
    skipped = skipped_mask(frame)
    resolved = frame["resolved_month"].astype("string").mask(skipped)
    return pd.DataFrame(
        {
            "household_key": frame["household_key"].astype("string").to_numpy(),
            "emd_code": frame["emd_code"].astype("string").to_numpy(),
            "round_month": np.array(
                [parse_month(r) for r in frame["round"].astype(str)], dtype=np.int64
            ),
            "selection_reason": frame["selection_reason"].astype("string").to_numpy(),
            "selection_probability": frame["selection_probability"].astype("float64").to_numpy(),
            "outcome_code": frame["outcome_code"]
            .astype("string")
            .mask(skipped, SKIPPED)
            .to_numpy(),
            "resolved_month": pd.array(
                [None if pd.isna(r) else parse_month(str(r)) for r in resolved], dtype="Int64"
            ),
            "service_code": (
                frame["service_code"].astype("string").mask(skipped).to_numpy()
                if "service_code" in frame.columns
                else pd.array([pd.NA] * len(frame), dtype="string")
            ),
        }
    )


# --- call results of the phone tier (``outreach outcomes import-calls``) -------------------------
#
# ``<output_root>/outcomes/round=YYYY-MM/calls.parquet``: one row per household of the round's
# phone tier whose call result came back from the automated call service (the latest accepted
# result per household). Columns: household_key, sigungu_code, emd_code, round (``YYYY-MM``),
# call_result (a code of ``call_results`` in configs/outcomes.yaml), call_date (date32),
# source_file_sha256. Sorted by 읍면동 and household key; written atomically under the output
# root's lock, like the outcomes file. docs/callcentre.md.

CALLS_FILE = "calls.parquet"
CALL_STORE_COLUMNS = (
    "household_key",
    "sigungu_code",
    "emd_code",
    "round",
    "call_result",
    "call_date",
    "source_file_sha256",
)
CALLS_SCHEMA = pa.schema(
    [
        ("household_key", pa.string()),
        ("sigungu_code", pa.string()),
        ("emd_code", pa.string()),
        ("round", pa.string()),
        ("call_result", pa.string()),
        ("call_date", pa.date32()),
        ("source_file_sha256", pa.string()),
    ]
)
CALL_ANSWER = ("emd_code", "call_result", "call_date")


def round_calls_file(config: Config, round_label: str) -> Path:
    """The call results file of one round (it may not exist yet)."""
    return outcomes_root(config) / f"round={round_label}" / CALLS_FILE


def read_round_calls(config: Config, round_label: str) -> pd.DataFrame | None:
    """The imported call results of a round, or None when none came back yet."""
    path = round_calls_file(config, round_label)
    if not path.is_file():
        return None
    return pd.read_parquet(path)


def calls_table(frame: pd.DataFrame) -> pa.Table:
    """The stored form of call results (columns and types of ``CALLS_SCHEMA``)."""
    arrays = []
    for field in CALLS_SCHEMA:
        values = frame[field.name]
        if field.name == "call_date":
            arrays.append(_day_array(values))
        else:
            arrays.append(_text_array(values))
    return pa.Table.from_arrays(arrays, schema=CALLS_SCHEMA)


def _call_answer(frame: pd.DataFrame) -> np.ndarray:
    day = frame["call_date"].map(
        lambda v: "" if v is None or pd.isna(v) else pd.Timestamp(v).date().isoformat()
    )
    emd = frame["emd_code"].astype("string").fillna("")
    result = frame["call_result"].astype("string").fillna("")
    return (emd + "|" + result + "|" + day.astype("string")).to_numpy()


def merge_calls(existing: pd.DataFrame | None, incoming: pd.DataFrame) -> Merge:
    """Merge accepted call results into a round's stored ones; pure. The rules of
    :func:`merge_outcomes`: new, unchanged (the stored row and its first source file kept) or
    replaced by a different result; households not in ``incoming`` keep theirs."""
    incoming = incoming[list(CALL_STORE_COLUMNS)].reset_index(drop=True)
    if existing is None or existing.empty:
        rows, new, replaced, unchanged = incoming, len(incoming), 0, 0
    else:
        existing = existing[list(CALL_STORE_COLUMNS)].reset_index(drop=True)
        stored = pd.Series(_call_answer(existing), index=existing["household_key"].astype(str))
        keys = incoming["household_key"].astype(str)
        before = stored.reindex(keys).to_numpy()
        known = pd.notna(before)
        same = known & (before == _call_answer(incoming))
        new, replaced, unchanged = (
            int((~known).sum()),
            int((known & ~same).sum()),
            int(same.sum()),
        )
        keep = existing[~existing["household_key"].astype(str).isin(set(keys[~same]))]
        rows = pd.concat([keep, incoming[~same]], ignore_index=True)
    rows = rows.sort_values(["emd_code", "household_key"], kind="stable").reset_index(drop=True)
    return Merge(rows, new, replaced, unchanged)


def write_round_calls(config: Config, round_label: str, rows: pd.DataFrame) -> Path:
    """Write a round's call results atomically; returns the file."""
    path = round_calls_file(config, round_label)
    write_parquet(calls_table(rows), path)
    return path
