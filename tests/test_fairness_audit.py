"""Fairness table on hand-made groups: ratios against the reference, flags, groups too small."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _models_fixtures import old_fairness_table

from models.evaluation import LISTED
from models.fairness import (
    ATTRIBUTES,
    add_audit_counts,
    audit_counts,
    fairness_from_counts,
    fairness_table,
)
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


def _random_audit(n: int, seed: int) -> pd.DataFrame:
    """Household rows with several groups per attribute, missing groups and labels."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {a: rng.choice(["a", "b", "c"], size=n).astype(object) for a in ATTRIBUTES}
    )
    frame.loc[rng.random(n) < 0.05, "head_sex"] = pd.NA  # missing: in no group
    frame["sido"] = rng.choice(["11", "41", "26", "50"], size=n)  # a group absent from parts
    frame["in_need"] = rng.random(n) < 0.3
    frame["listed_model"] = rng.random(n) < 0.2
    frame["listed_rule"] = rng.random(n) < 0.2
    observed = rng.choice(np.array([-1, 0, 1]), size=n, p=[0.7, 0.15, 0.15])
    frame["observed"] = np.where(observed < 0, np.nan, observed)  # as the test rounds gave it
    frame["probability"] = rng.random(n)
    return frame


def test_counts_of_parts_give_the_table_of_the_rows():
    """Count tables per partition and round add up to the table computed on all rows."""
    rows = _random_audit(3000, 4)
    rows.loc[:999, "sido"] = rows.loc[:999, "sido"].replace("50", "11")  # not in every part
    parts = [audit_counts(rows.iloc[s], list(LISTED)) for s in (slice(0, 1000), slice(1000, 3000))]
    pooled = add_audit_counts(parts)
    for listed in LISTED:
        settings = FairnessConfig(min_group_size=5)
        expected = old_fairness_table(rows, settings, listed)
        table = fairness_from_counts(pooled, settings, listed)
        pd.testing.assert_frame_equal(table, expected, check_exact=False, rtol=1e-12, atol=0)
        direct = fairness_table(rows, settings, listed)
        pd.testing.assert_frame_equal(direct, expected, check_exact=False, rtol=1e-12, atol=0)
