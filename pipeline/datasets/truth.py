"""The hidden truth of synthetic data (``truth/household_month``), read only by evaluation.

It never reaches a training input; real data has none (every reader then returns nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.datasets import TableLayout
from pipeline.months import format_month, parse_month_series
from pipeline.vocabulary import KEY

TRUTH_TABLE = "household_month"
TRUTH_SUMMARY = "_summary.json"  # figures of the hidden truth, written by `outreach generate`
# Months an advance added (`outreach generate --advance` with contacts): in need had that
# advance's contacts not been made. A round's list is judged on it (docs/simulation.md, "Need
# before the round's own visits"); months without it read the truth's in_need.
UNTREATED_TABLE = "untreated_need"
UNTREATED_COLUMNS = (KEY, "month", "in_need")
NEED_TYPE = "need_type"  # the kind of need (pipeline.vocabulary.NEED_TYPES) of a household in need
NO_NEED = "none"


def truth_available(config: Config) -> bool:
    return bool(TableLayout(config.paths.truth_input).partitions(TRUTH_TABLE))


def truth_covers(config: Config, months: Iterable[int]) -> bool:
    """Whether the hidden truth has every one of ``months`` (it ends where its data window
    ended: a round scored after that, e.g. once visit outcomes came back, has no truth)."""
    import pyarrow.parquet as pq

    layout = TableLayout(config.paths.truth_input)
    codes = layout.partitions(TRUTH_TABLE)
    if not codes:
        return False
    known = pq.read_table(layout.partition_file(TRUTH_TABLE, codes[0]), columns=["month"])
    present = {str(m) for m in known.column("month").unique().to_pylist()}
    return all(format_month(m) in present for m in months)


def truth_files(config: Config) -> list[Path]:
    """The partition files of the hidden truth (none for real data)."""
    layout = TableLayout(config.paths.truth_input)
    return [layout.partition_file(TRUTH_TABLE, code) for code in layout.partitions(TRUTH_TABLE)]


def read_round_truth(paths: Sequence[Path], keys: pd.Series, round_month: int) -> pd.DataFrame:
    """The truth of a round for some households (evaluation only), aligned on ``keys``.

    Reads the round's month and the month after from ``paths`` (the truth files that can hold
    these households). Columns: in_need (bool, False when the truth lacks the household),
    hardship (the latent state at the round month, NaN when lacking) and need_type (the kind of
    need of a household in need, ``none`` otherwise; only when the truth records kinds of need).
    """
    if not paths:
        return pd.DataFrame({"in_need": np.zeros(len(keys), bool), "hardship": np.nan})
    wanted = [format_month(round_month), format_month(round_month + 1)]
    import pyarrow.parquet as pq

    columns = [KEY, "month", "hardship", "in_need"]
    if NEED_TYPE in pq.read_schema(paths[0]).names:
        columns.append(NEED_TYPE)
    parts = [
        pd.read_parquet(path, columns=columns, filters=[("month", "in", wanted)]) for path in paths
    ]
    truth = pd.concat(parts, ignore_index=True)
    truth[KEY] = truth[KEY].astype("string")
    truth["month"] = parse_month_series(truth["month"]).astype("int64")
    truth["in_need"] = truth["in_need"].astype(bool)
    untreated = [
        _read_untreated(file, [("month", "in", wanted)])
        for file in map(untreated_file, paths)
        if file.is_file()
    ]
    if untreated:
        truth = with_untreated_need(truth, pd.concat(untreated, ignore_index=True))
    per = truth_for_round(truth, round_month).reindex(pd.Index(keys))
    out = pd.DataFrame(
        {
            "in_need": per["in_need"].fillna(False).astype(bool).to_numpy(),
            "hardship": per["hardship"].to_numpy(dtype=np.float64),
        }
    )
    if NEED_TYPE in per.columns:
        out[NEED_TYPE] = np.where(out["in_need"], per[NEED_TYPE].fillna(NO_NEED), NO_NEED)
    return out


def untreated_file(truth_file: Path) -> Path:
    """The untreated need's partition file beside a truth partition file (same partition)."""
    partition = truth_file.parent
    return partition.parent.parent / UNTREATED_TABLE / partition.name / truth_file.name


def _read_untreated(path: Path, filters: list | None = None) -> pd.DataFrame:
    frame = pd.read_parquet(path, columns=list(UNTREATED_COLUMNS), filters=filters)
    frame[KEY] = frame[KEY].astype("string")
    frame["month"] = parse_month_series(frame["month"]).astype("int64")
    frame["in_need"] = frame["in_need"].astype(bool)
    return frame


def with_untreated_need(truth: pd.DataFrame, untreated: pd.DataFrame) -> pd.DataFrame:
    """``truth`` (household_key, month as int, in_need, ...) with in_need replaced by the
    untreated need where it has the household and month (pure)."""
    if untreated.empty:
        return truth
    index = pd.MultiIndex.from_arrays([truth[KEY], truth["month"]])
    override = untreated.set_index([KEY, "month"])["in_need"]
    value = override.reindex(index)
    known = value.notna().to_numpy()
    out = truth.copy()
    need = out["in_need"].to_numpy(dtype=bool).copy()
    need[known] = value.to_numpy()[known].astype(bool)
    out["in_need"] = need
    return out


def read_untreated_since(truth_dir: Path, first_month: int) -> pd.DataFrame:
    """The untreated need in ``truth_dir`` from ``first_month`` on: household_key, month (int),
    in_need; empty when no advance wrote one."""
    layout = TableLayout(truth_dir)
    parts = [
        _read_untreated(layout.partition_file(UNTREATED_TABLE, code))
        for code in layout.partitions(UNTREATED_TABLE)
    ]
    parts = [p.loc[p["month"] >= first_month] for p in parts]
    if not parts:
        return pd.DataFrame(
            {
                KEY: pd.Series(dtype="string"),
                "month": pd.Series(dtype="int64"),
                "in_need": pd.Series(dtype=bool),
            }
        )
    return pd.concat(parts, ignore_index=True)


def read_untreated_file(path: Path) -> pd.DataFrame:
    """An untreated need written by ``outreach generate --advance --untreated-need PATH``."""
    return _read_untreated(path)


def truth_for_round(truth: pd.DataFrame, round_month: int) -> pd.DataFrame:
    """Per household: in need in the round's month or the month after, and hardship at the round.

    Index household_key; columns in_need (bool), hardship (the latent state at the round month;
    NaN when ``truth`` has none, as the untreated need).
    """
    now = truth[truth["month"] == round_month].set_index(KEY)
    later = truth[truth["month"] == round_month + 1].set_index(KEY)
    after = later["in_need"]
    need = now["in_need"] | after.reindex(now.index, fill_value=False).astype(bool)
    hardship = now["hardship"].astype(float) if "hardship" in now else np.nan
    out = pd.DataFrame({"in_need": need.astype(bool), "hardship": hardship}, index=now.index)
    if NEED_TYPE in now.columns:
        # the kind of need at the round month, else the month after (where the need was)
        at_round = now[NEED_TYPE].astype(object).where(now["in_need"].astype(bool))
        next_kind = later[NEED_TYPE].astype(object).where(later["in_need"].astype(bool))
        kind = at_round.fillna(next_kind.reindex(now.index)).fillna(NO_NEED)
        out[NEED_TYPE] = kind.where(out["in_need"], NO_NEED).astype(str)
    return out


def read_truth_since(truth_dir: Path, first_month: int) -> pd.DataFrame:
    """The hidden truth in ``truth_dir`` from ``first_month`` on (evaluation only):
    household_key (string), month (int), in_need (bool), hardship; in partition and file order
    (the loop's measures place rows by key and month, so no sort is paid for)."""
    layout = TableLayout(truth_dir)
    parts = []
    for code in layout.partitions(TRUTH_TABLE):
        part = pd.read_parquet(
            layout.partition_file(TRUTH_TABLE, code), columns=[KEY, "month", "in_need", "hardship"]
        )
        part["month"] = parse_month_series(part["month"]).astype("int64")
        parts.append(part.loc[part["month"] >= first_month])
    truth = pd.concat(parts, ignore_index=True)
    truth[KEY] = truth[KEY].astype("string")
    truth["in_need"] = truth["in_need"].astype(bool)
    return truth
