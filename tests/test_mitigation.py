"""Fairness mitigation (issue "A fair, measured champion"): group-aware thresholds at capacity,
reweighing, the backtest plan that compares them, and the lists that apply the registered one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.backtest import backtest_plan
from models.fairness import audit_attributes
from models.metrics import cut_list
from models.mitigation import (
    EQUAL_RECALL,
    ListPolicy,
    cell_codes,
    equal_recall_key,
    reweigh_factors,
)
from pipeline.catalogues import load_catalogues
from pipeline.config import COMPARISONS, ConfigError, TrainingConfig, config_from_mapping
from pipeline.datasets.features import FeatureRounds
from pipeline.datasets.staged import load_capacity
from pipeline.months import default_as_of
from pipeline.score.stage import list_order, list_policy
from pipeline.score.tiers import cut_round, exploration_count
from pipeline.tracking import connect
from pipeline.tracking.models import fetch_model, unpickle_model
from pipeline.tracking.registry import resolve_model
from pipeline.vocabulary import EMD, EXPLORATION, KEY, LIST_ORDER, VISIT


def _two_cells(seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One 읍면동, 2,000 households: cell 1 (a fifth) is much more visible to the model."""
    rng = np.random.default_rng(seed)
    cells = (rng.random(2000) < 0.2).astype(np.int64)
    p = np.where(cells == 1, rng.beta(2, 5, 2000), rng.beta(1, 12, 2000))
    return p, np.full(2000, "1111051000", dtype=object), cells


def _expected_recall(p, cells, listed):
    return [p[listed & (cells == c)].sum() / p[cells == c].sum() for c in (0, 1)]


def test_full_strength_lists_every_cell_to_the_same_expected_recall():
    p, emd, cells = _two_cells()
    capacity = pd.Series({"1111051000": 150})
    plain = cut_list(np.arange(len(p)), emd, p, capacity)["listed"].to_numpy()
    key = equal_recall_key(p, emd, cells, 1.0)
    evened = cut_list(np.arange(len(p)), emd, key, capacity)["listed"].to_numpy()
    low, high = sorted(_expected_recall(p, cells, plain))
    assert high / low > 2  # the plain list finds the visible cell's need far more often
    low, high = sorted(_expected_recall(p, cells, evened))
    assert high - low < p.max() / p[cells == 0].sum() + 1e-12  # equal up to one household
    assert evened.sum() == plain.sum() == 150  # the capacity is unchanged


def test_strength_blends_between_the_plain_list_and_full_equalisation():
    p, emd, cells = _two_cells(2)
    capacity = pd.Series({"1111051000": 150})
    keys = np.arange(len(p))
    plain = cut_list(keys, emd, p, capacity)["listed"].to_numpy()
    zero = cut_list(keys, emd, equal_recall_key(p, emd, cells, 0.0), capacity)
    assert (zero["listed"].to_numpy() == plain).all()
    gaps = []
    for strength in (0.0, 0.5, 1.0):
        listed = cut_list(keys, emd, equal_recall_key(p, emd, cells, strength), capacity)
        low, high = sorted(_expected_recall(p, cells, listed["listed"].to_numpy()))
        gaps.append(high - low)
    assert gaps[0] > gaps[1] > gaps[2]


def test_each_emd_is_evened_on_its_own_and_ties_fall_by_position():
    p = np.array([0.5, 0.5, 0.5, 0.2, 0.9, 0.1])
    emd = np.array(["a", "a", "a", "b", "b", "b"], dtype=object)
    cells = np.array([0, 0, 1, 0, 1, 1])
    key = equal_recall_key(p, emd, cells, 1.0)
    # in "a", cell 0's first household holds half its mass, the second all of it
    assert key[:3].tolist() == [-0.5, -1.0, -1.0]
    assert key[3] == -1.0 and key[4] == pytest.approx(-0.9) and key[5] == -1.0


def test_reweighing_makes_the_label_independent_of_the_cell():
    rng = np.random.default_rng(3)
    cells = rng.integers(0, 3, 5000)
    y = (rng.random(5000) < np.array([0.2, 0.5, 0.7])[cells]).astype(np.int64)
    fitted = rng.random(5000) < 0.8
    w = reweigh_factors(cells, y, fitted)
    rates = [
        np.average(y[fitted & (cells == c)], weights=w[fitted & (cells == c)]) for c in range(3)
    ]
    assert max(rates) - min(rates) < 1e-12
    assert (w[~fitted] == 1).all()  # the calibration rows are not reweighed
    assert np.average(y[fitted], weights=w[fitted]) == pytest.approx(y[fitted].mean())


def test_cells_are_the_combinations_of_the_attributes():
    frame = pd.DataFrame({"a": ["x", "x", "y", None], "b": ["1", "2", "1", "1"]})
    codes = cell_codes(frame, ("a", "b"))
    assert len(set(codes.tolist())) == 4 and codes[0] != codes[1]
    assert (cell_codes(frame, ("a",))[:2] == cell_codes(frame, ("a",))[0]).all()


def _plan(**mitigation):
    return backtest_plan(TrainingConfig(mitigation=mitigation, compare=COMPARISONS))


def test_without_comparisons_the_plan_fits_the_registered_candidate_alone():
    for method in ("reweigh", "equal_recall", "none"):
        plan = backtest_plan(TrainingConfig(mitigation={"method": method}))
        assert [s.name for s in plan.specs] == ["lightgbm"] and plan.variants == []
        assert list(plan.selections) == (["lightgbm"] if method == "equal_recall" else [])


def test_the_plan_measures_every_setting_once_and_registers_the_configured_one():
    plan = _plan(
        method="equal_recall", strength=0.5, strengths=[0.5, 1.0], attributes=["head_age_band"]
    )
    assert plan.variants == [
        "lightgbm-unmitigated",
        "lightgbm-equal_recall-100",
        "lightgbm-reweigh-50",
        "lightgbm-reweigh-100",
    ]
    fitted = {s.name: s.reweigh for s in plan.specs}
    # post-processing needs no fit of its own; reweighing does
    assert "lightgbm-unmitigated" not in fitted and fitted["lightgbm-reweigh-50"] == 0.5
    assert fitted["lightgbm"] == 0.0 and fitted["logistic"] == 0.0
    base, policy = plan.selections["lightgbm"]
    assert base == "lightgbm" and policy.method == EQUAL_RECALL and policy.strength == 0.5
    assert plan.selections["logistic"][1] == policy  # every candidate is listed the same way
    assert plan.selections["lightgbm-unmitigated"] == (
        "lightgbm",
        ListPolicy("none", ("head_age_band",), 0.0),
    )


def test_a_reweighed_registered_model_is_compared_with_its_unmitigated_fit():
    plan = _plan(method="reweigh", strength=1.0, strengths=[0.5, 1.0])
    fitted = {s.name: s.reweigh for s in plan.specs}
    assert fitted["lightgbm"] == 1.0 and fitted["lightgbm-unmitigated"] == 0.0
    assert fitted["lightgbm-reweigh-50"] == 0.5 and "lightgbm-reweigh-100" not in fitted
    # the post-processing variants apply to the unmitigated fit
    assert plan.selections["lightgbm-equal_recall-50"][0] == "lightgbm-unmitigated"
    assert "lightgbm" not in plan.selections


def test_no_mitigation_lists_by_probability():
    plan = _plan(method="none", compare=["none", "equal_recall"], strengths=[1.0])
    assert plan.variants == ["lightgbm-equal_recall-100"]
    assert "lightgbm" not in plan.selections


@pytest.mark.parametrize(
    "mitigation",
    [{"attributes": ["shoe_size"]}, {"attributes": []}, {"strengths": [0]}, {"method": "magic"}],
)
def test_mitigation_settings_are_checked(mitigation):
    with pytest.raises(ConfigError, match=r"training\.mitigation"):
        config_from_mapping({"training": {"mitigation": mitigation}}, "t.yaml")


def test_scoring_ranks_by_the_list_policy_computed_in_key_order():
    """A model measured with group-aware thresholds is listed by them: ``list_order`` computes
    the key in household-key order (as the backtests did) whatever the row order, and
    ``cut_round`` ranks by it instead of the score."""
    p, emd, cells = _two_cells(4)
    n = len(p)
    keys = np.array([f"k{i:05d}" for i in range(n)])
    features = pd.DataFrame(
        {
            "household_key": keys,
            EMD: emd,
            "hh__urban": 1,
            "audit__head_sex": "F",
            "audit__head_age_band": np.where(cells == 1, "75_plus", "50_64"),
            "hh__disabled_members": 0,
            "hh__size": 2,
            "hh__tenure": "own",
        }
    )
    policy = ListPolicy(EQUAL_RECALL, ("head_age_band",), 1.0)
    expected = equal_recall_key(p, emd, cells, 1.0)
    np.testing.assert_array_equal(policy.key(p, emd, audit_attributes(features)), expected)
    shuffled = np.random.default_rng(5).permutation(n)
    frame = features.iloc[shuffled].reset_index(drop=True)

    order = list_order(policy, frame, p[shuffled])
    np.testing.assert_array_equal(order, expected[shuffled])
    scored = pd.DataFrame(
        {
            "household_key": frame["household_key"],
            "emd_code": frame[EMD],
            "score": p[shuffled],
            "has_signal": True,
            LIST_ORDER: order,
        }
    )
    capacity = pd.Series({"1111051000": 150})

    def visits(frame: pd.DataFrame) -> set[str]:
        cut = cut_round(frame, capacity, phone_band=0.0, exploration_share=0.0, seed=1, as_of=30)
        return set(cut.loc[cut["tier"] == VISIT, "household_key"])

    by_key = cut_list(keys, emd, expected, capacity)["listed"].to_numpy()
    assert visits(scored) == set(keys[by_key])
    assert visits(scored.drop(columns=LIST_ORDER)) != set(keys[by_key])  # not by probability


def test_the_registered_model_is_the_reweighed_backtest_model_and_lists_by_probability(
    scored_sample,
):
    """The shipped mitigation is reweighing: it lives in the fit, the model carries no list
    policy, the scoring run records none, and the model-placed visits are each 읍면동's top
    households by probability."""
    config = scored_sample.config
    assert config.training.mitigation.method == "reweigh"
    ref = resolve_model(connect(config), config.training.model_name, None)
    model = unpickle_model(fetch_model(ref))
    assert list_policy(model) is None
    manifest = json.loads((scored_sample.round_dir / "manifest.json").read_text("utf-8"))
    assert manifest["model"]["list_policy"] == "none"
    run = connect(config).get_run(ref.run_id)
    assert run.data.params["training.mitigation.method"] == "reweigh"
    source = FeatureRounds(config, load_catalogues(config).outcomes)
    as_of = default_as_of(config.window)
    features = source.features(as_of)
    features = features[source.eligible(features)].sort_values(KEY).reset_index(drop=True)
    p = model.predict_proba(features)[:, 1]
    emd = features[EMD].astype(str).to_numpy()
    capacity = load_capacity(config)
    slots = capacity.map(lambda c: c - exploration_count(int(c), config.scoring.exploration_share))
    keys = features[KEY].astype(str).to_numpy()
    expected = set(keys[cut_list(keys, emd, p, slots)["listed"].to_numpy()])
    scores = pd.read_parquet(scored_sample.round_dir / "scores.parquet")
    placed = scores[(scores["tier"] == VISIT) & (scores["selection_reason"] != EXPLORATION)]
    assert set(placed[KEY].astype(str)) == expected
