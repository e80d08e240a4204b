"""The eligibility rule lives in one place (``scoring.ineligible_benefit_status``): training,
scoring, describe and the report follow it when a config changes it.

Before the one-way house, training and describe hard-coded "not on basic livelihood support"
while scoring read the config: with ``near_poor`` added to the rule, training still drew its
negatives and evaluated its test rounds among near-poor households that scoring never lists.
"""

from __future__ import annotations

import pandas as pd
from conftest import copy_outputs, make_config, write_config_file

from pipeline.cli import main
from pipeline.datasets.features import FeatureRounds
from pipeline.describe.stage import plan_rounds as describe_plan
from pipeline.describe.stage import rule_list
from pipeline.vocabulary import BENEFIT_STATUSES, eligible_mask

RULE = ("basic_livelihood", "near_poor")


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "household_key": ["H1", "H2", "H3"],
            "hh__benefit_status": pd.Categorical(list(BENEFIT_STATUSES)),
        }
    )


def test_training_and_describe_follow_the_configured_rule(tmp_path, outcome_catalogue):
    config = make_config(tmp_path)
    changed = config.with_overrides(scoring={"ineligible_benefit_status": list(RULE)})
    frame = _frame()
    expected = [True, False, False]  # none / near_poor / basic_livelihood

    # training reads its rounds through FeatureRounds: pools, test rounds, proxy rows
    source = FeatureRounds(changed, outcome_catalogue)
    assert source.ineligible == RULE
    assert source.eligible(frame).tolist() == expected
    assert eligible_mask(frame, changed.scoring.ineligible_benefit_status).tolist() == expected
    # the defaults keep the near-poor eligible
    assert FeatureRounds(config, outcome_catalogue).eligible(frame).tolist() == [True, True, False]

    # describe: the rule baseline's list leaves out the same households
    plan = describe_plan(changed)
    assert plan.ineligible == RULE
    households = pd.DataFrame(
        {
            "household_key": ["H1", "H2", "H3"],
            "emd_code": ["E"] * 3,
            "benefit_status": list(BENEFIT_STATUSES),
        }
    )
    distinct = pd.Series([1, 5, 9], index=["H1", "H2", "H3"])
    listed = rule_list(households, distinct, pd.Series({"E": 3}), plan.ineligible)
    assert list(listed) == ["H1"]


def test_scoring_and_report_follow_the_configured_rule(scored_sample, tmp_path):
    copy = copy_outputs(scored_sample, tmp_path)
    changed = copy.config.with_overrides(scoring={"ineligible_benefit_status": list(RULE)})
    config_file = write_config_file(changed, tmp_path / "rule.yaml")
    args = ["--no-progress", "--config", str(config_file)]
    assert main([*args, "score", "--force"]) == 0
    assert main([*args, "report"]) == 0

    scores = pd.read_parquet(copy.round_dir / "scores.parquet")
    folder = copy.config.paths.output_root / "features" / f"as_of={copy.as_of}"
    features = pd.concat(
        pd.read_parquet(p, columns=["household_key", "hh__benefit_status"])
        for p in sorted(folder.glob("features/*/part-0.parquet"))
    )
    ineligible = set(features.loc[features["hh__benefit_status"].isin(RULE), "household_key"])
    assert any(features["hh__benefit_status"] == "near_poor"), "the sample has near-poor homes"
    assert not ineligible & set(scores["household_key"])
    assert len(scores) == len(features) - len(ineligible)
    # the report counts the scored (eligible) households of the round: the same number
    report = (copy.round_dir / "report" / "index.html").read_text(encoding="utf-8")
    assert f"{len(scores):,}" in report
