"""Fairness table on hand-made groups: ratios against the reference, flags, groups too small."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.fairness import ATTRIBUTES, fairness_table
from pipeline.config import FairnessConfig


def _audit(n_a: int, n_b: int, hits_a: int, hits_b: int, sel: int = 50) -> pd.DataFrame:
    """Two head_sex groups, 100 in need each; ``sel`` selected each with the given hits."""
    rows = []
    for group, n, hits in (("M", n_a, hits_a), ("F", n_b, hits_b)):
        need = np.zeros(n, bool)
        need[:100] = True
        listed = np.zeros(n, bool)
        listed[:hits] = True  # in need and listed
        listed[100 : 100 + sel - hits] = True  # listed, not in need
        rows.append(pd.DataFrame({"head_sex": group, "in_need": need, "listed": listed}))
    frame = pd.concat(rows, ignore_index=True)
    for attribute in ATTRIBUTES:
        if attribute != "head_sex":
            frame[attribute] = "all"
    frame["observed"] = pd.array([pd.NA] * len(frame), dtype="Int8")
    frame["probability"] = 0.5
    return frame


def test_equal_groups_are_not_flagged():
    table = fairness_table(_audit(1000, 1000, 30, 30), FairnessConfig(), "listed")
    sex = table[table["attribute"] == "head_sex"].set_index("group")
    assert sex.loc["F", "reference"] == "M"
    assert sex.loc["F", "precision_ratio"] == pytest.approx(1.0)
    assert sex.loc["F", "recall_ratio"] == pytest.approx(1.0)
    assert not table["flagged"].any()


def test_disparity_outside_bounds_is_flagged():
    table = fairness_table(_audit(1000, 1000, 40, 20), FairnessConfig(), "listed")
    f = table[(table["attribute"] == "head_sex") & (table["group"] == "F")].iloc[0]
    assert f["recall"] == pytest.approx(0.2) and f["precision"] == pytest.approx(0.4)
    assert f["recall_ratio"] == pytest.approx(0.5)
    assert f["flag_recall"] and f["flag_precision"] and f["flagged"]
    m = table[(table["attribute"] == "head_sex") & (table["group"] == "M")].iloc[0]
    assert not m["flagged"]
    assert m["selection_rate"] == pytest.approx(0.05)
    assert m["selection_to_need"] == pytest.approx(0.5)
    assert m["false_negative_rate"] == pytest.approx(0.6)


def test_small_groups_get_no_ratio():
    settings = FairnessConfig(min_group_size=60)  # 50 selected per group: too small
    table = fairness_table(_audit(1000, 1000, 40, 20), settings, "listed")
    sex = table[table["attribute"] == "head_sex"]
    assert sex["too_small"].all()
    assert sex["recall_ratio"].isna().all() and not sex["flagged"].any()


def test_largest_group_is_the_reference_when_configured_so():
    settings = FairnessConfig(reference_groups={"head_sex": "largest"})
    table = fairness_table(_audit(800, 1200, 30, 30), settings, "listed")
    assert set(table.loc[table["attribute"] == "head_sex", "reference"]) == {"F"}
