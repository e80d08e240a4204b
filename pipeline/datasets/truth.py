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
    these households). Columns: in_need (bool, False when the truth lacks the household) and
    hardship (the latent state at the round month, NaN when lacking).
    """
    if not paths:
        return pd.DataFrame({"in_need": np.zeros(len(keys), bool), "hardship": np.nan})
    wanted = [format_month(round_month), format_month(round_month + 1)]
    parts = [
        pd.read_parquet(
            path, columns=[KEY, "month", "hardship", "in_need"], filters=[("month", "in", wanted)]
        )
        for path in paths
    ]
    truth = pd.concat(parts, ignore_index=True)
    truth[KEY] = truth[KEY].astype("string")
    truth["month"] = parse_month_series(truth["month"]).astype("int64")
    truth["in_need"] = truth["in_need"].astype(bool)
    per = truth_for_round(truth, round_month).reindex(pd.Index(keys))
    return pd.DataFrame(
        {
            "in_need": per["in_need"].fillna(False).astype(bool).to_numpy(),
            "hardship": per["hardship"].to_numpy(dtype=np.float64),
        }
    )


def truth_for_round(truth: pd.DataFrame, round_month: int) -> pd.DataFrame:
    """Per household: in need in the round's month or the month after, and hardship at the round.

    Index household_key; columns in_need (bool), hardship (the latent state at the round month).
    """
    now = truth[truth["month"] == round_month].set_index(KEY)
    after = truth[truth["month"] == round_month + 1].set_index(KEY)["in_need"]
    need = now["in_need"] | after.reindex(now.index, fill_value=False).astype(bool)
    return pd.DataFrame({"in_need": need.astype(bool), "hardship": now["hardship"].astype(float)})


def read_truth_since(truth_dir: Path, first_month: int) -> pd.DataFrame:
    """The hidden truth in ``truth_dir`` from ``first_month`` on (evaluation only):
    household_key (string), month (int), in_need (bool), hardship; sorted by key and month."""
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
    return truth.sort_values([KEY, "month"], kind="stable").reset_index(drop=True)
