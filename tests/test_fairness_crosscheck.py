"""The fairness audit's per-group figures equal a well-kept library's on a fixed frame.

The project computes them from counts that add up across partitions (``audit_counts`` then
``fairness_from_counts``), so that no process holds a national test round; fairlearn's
``MetricFrame`` computes them from the household rows. Both must agree to the last digit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, count, false_negative_rate, selection_rate
from sklearn.metrics import precision_score, recall_score

from models.fairness import ATTRIBUTES, fairness_table
from pipeline.config import FairnessConfig


@pytest.fixture(scope="module")
def audit() -> pd.DataFrame:
    """5,000 households with skewed groups, need and a selection that depends on both."""
    rng = np.random.default_rng(20261203)
    n = 5000
    frame = pd.DataFrame(
        {
            "sido": rng.choice(["11", "41", "26"], n, p=[0.5, 0.3, 0.2]),
            "sigungu": rng.choice(["11110", "11140", "41110", "26110"], n),
            "urban": rng.choice(["urban", "rural"], n, p=[0.7, 0.3]),
            "head_sex": rng.choice(["M", "F"], n),
            "head_age_band": rng.choice(
                ["under_35", "35_49", "50_64", "65_74", "75_plus"], n, p=[0.1, 0.2, 0.3, 0.2, 0.2]
            ),
            "disability": rng.choice(["no", "yes"], n, p=[0.85, 0.15]),
            "single_person": rng.choice(["no", "yes"], n, p=[0.65, 0.35]),
            "tenure": rng.choice(["own", "jeonse", "monthly_rent", "public_rental", "other"], n),
        }
    )
    risk = 0.08 + 0.10 * (frame["head_age_band"] == "75_plus") + 0.07 * (frame["tenure"] != "own")
    need = rng.random(n) < risk
    score = need * 0.6 + rng.random(n) + 0.2 * (frame["single_person"] == "yes")
    frame["in_need"] = need
    frame["listed_model"] = score > np.quantile(score, 0.85)
    frame["observed"] = np.where(frame["listed_model"], need.astype(float), np.nan)
    frame["probability"] = np.clip(score / 2, 0, 1)
    return frame


@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_per_group_figures_equal_fairlearn_metric_frame(audit, attribute):
    ours = fairness_table(audit, FairnessConfig(min_group_size=1), "listed_model")
    ours = ours[ours["attribute"] == attribute].set_index("group")
    theirs = MetricFrame(
        metrics={
            "size": count,
            "selection_rate": selection_rate,
            "precision": lambda t, p: precision_score(t, p, zero_division=np.nan),
            "recall": recall_score,
            "false_negative_rate": false_negative_rate,
        },
        y_true=audit["in_need"].astype(int),
        y_pred=audit["listed_model"].astype(int),
        sensitive_features=audit[attribute].rename(attribute),
    ).by_group
    theirs.index = theirs.index.astype(str)
    assert sorted(ours.index) == sorted(theirs.index)
    for metric in ("size", "selection_rate", "precision", "recall", "false_negative_rate"):
        np.testing.assert_allclose(
            ours.loc[theirs.index, metric].to_numpy(dtype=float),
            theirs[metric].to_numpy(dtype=float),
            rtol=1e-12,
            err_msg=f"{attribute}: {metric}",
        )
    # ratios against the reference group, as the audit reports them
    reference = ours["reference"].iloc[0]
    recall = theirs["recall"]
    np.testing.assert_allclose(
        ours.loc[theirs.index, "recall_ratio"].to_numpy(dtype=float),
        (recall / recall.loc[reference]).to_numpy(dtype=float),
        rtol=1e-12,
    )
