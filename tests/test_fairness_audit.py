"""Fairness table on hand-made groups: ratios against the reference, flags, groups too small."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _models_fixtures import comparable, old_fairness_table
from scipy.stats import fisher_exact

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
    frame["listed_oracle"] = rng.random(n) < 0.2
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
        pd.testing.assert_frame_equal(
            *comparable(table, expected), check_exact=False, rtol=1e-12, atol=0
        )
        direct = fairness_table(rows, settings, listed)
        pd.testing.assert_frame_equal(direct, table)  # same counts, same seed: same intervals


def test_a_disparity_whose_interval_overlaps_the_bounds_is_not_flagged():
    # 40 against 30 of 100 in need: ratio 0.75, but 100 households cannot tell it from 0.8
    table = fairness_table(_audit(1000, 1000, 40, 30), FairnessConfig(), "listed")
    f = table[(table["attribute"] == "head_sex") & (table["group"] == "F")].iloc[0]
    assert f["recall_ratio"] == pytest.approx(0.75)
    assert f["judged_recall_ratio_low"] < 0.8 < f["judged_recall_ratio_high"]
    assert f["recall_p_value"] > 0.05
    assert not f["flag_recall"] and not f["flagged"]


def test_a_clear_disparity_is_flagged_with_its_interval_and_test():
    # 40 against 20 of 100 in need: ratio 0.5, far enough to be told apart on 100 households
    table = fairness_table(_audit(1000, 1000, 40, 20), FairnessConfig(), "listed")
    f = table[(table["attribute"] == "head_sex") & (table["group"] == "F")].iloc[0]
    assert f["judged_recall_ratio_high"] < 0.8
    assert f["recall_p_value"] == pytest.approx(
        fisher_exact([[20, 80], [40, 60]]).pvalue, rel=1e-12
    )
    assert f["recall_p_value"] < 0.01 and f["flag_recall"]


def test_count_bootstrap_gives_the_interval_of_resampled_households():
    """Drawing a group's four counts from a multinomial is resampling its households."""
    rows = _audit(600, 900, 45, 30, sel=70)
    settings = FairnessConfig(min_group_size=5)
    ours = fairness_table(rows, settings, "listed", samples=4000)
    f = ours[(ours["attribute"] == "head_sex") & (ours["group"] == "F")].iloc[0]
    rng = np.random.default_rng(1)
    ratios = []
    # each group's households as arrays (in need and listed, in need): resampling rows of these
    # is resampling the households (numpy indexing instead of DataFrame.iloc: 60 times faster)
    groups = {
        g: ((part["listed"] & part["in_need"]).to_numpy(), part["in_need"].to_numpy())
        for g, part in rows.groupby("head_sex")
    }

    def recall(found, need):
        return found.sum() / need.sum()

    for _ in range(4000):
        drawn = {}
        for g, (found, need) in groups.items():
            take = rng.integers(0, len(need), len(need))
            drawn[g] = recall(found[take], need[take])
        ratios.append(drawn["F"] / drawn["M"])
    low, high = np.percentile(ratios, [2.5, 97.5])
    assert f["judged_recall_ratio_low"] == pytest.approx(low, abs=0.03)
    assert f["judged_recall_ratio_high"] == pytest.approx(high, abs=0.03)


def test_geographic_recall_is_judged_against_what_capacity_allows():
    """Two 시군구 with the same slots and twice the need in one: a perfect list finds half the
    share there. Its recall ratio is 0.5, its share of the attainable need 1: not flagged."""
    parts = []
    for sigungu, need in (("11110", 400), ("11140", 200)):
        frame = pd.DataFrame({"sigungu": sigungu, "in_need": np.arange(4000) < need})
        frame["listed"] = np.arange(4000) < 100  # 100 slots, all on households in need
        parts.append(frame)
    rows = pd.concat(parts, ignore_index=True)
    for attribute in ATTRIBUTES:
        if attribute != "sigungu":
            rows[attribute] = "all"
    rows["listed_oracle"] = rows["listed"]
    rows["observed"] = pd.array([pd.NA] * len(rows), dtype="Int8")
    rows["probability"] = 0.5
    settings = FairnessConfig(reference_groups={"sigungu": "11140"})
    counts = audit_counts(rows, ["listed", "listed_oracle"])
    table = fairness_from_counts(counts, settings, "listed")
    s = table[table["attribute"] == "sigungu"].set_index("group")
    assert s.loc["11110", "recall_ratio"] == pytest.approx(0.5)
    assert s.loc["11110", "judged_recall_ratio"] == pytest.approx(1.0)
    assert set(s["recall_judged_as"]) == {"share_of_attainable"}
    assert not s["flagged"].any()
    # head_sex is not geographic: its recall is judged as recall
    assert set(table.loc[table["attribute"] == "head_sex", "recall_judged_as"]) == {"recall"}
