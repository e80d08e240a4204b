"""The service match (models.service_match): the rule mapping reads signal groups as kinds of need
and offers only eligible services; the learned match recovers which service visits linked and
lets the rule fill what it never saw; the top-k hit rate counts a household in need as matched
when a suggested service serves its hidden kind of need."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT

from features.spec import group_count_column
from models.service_match import (
    MODEL,
    RULE,
    ServiceMatch,
    cover,
    suggest_by_rule,
    top_hit,
    top_hit_rate,
)
from pipeline.catalogue import load_indicators, load_services
from pipeline.config import ConfigError, ServiceMatchConfig
from pipeline.vocabulary import NEED_TYPES

SERVICES = load_services(REPO_ROOT / "configs" / "services.yaml")
GROUPS = list(load_indicators(REPO_ROOT / "configs" / "indicators.yaml").groups)
CODES = SERVICES.codes
CONFIG = ServiceMatchConfig(n_jobs=1, n_estimators=40, min_labels=50)


def _frame(rows: list[dict]) -> pd.DataFrame:
    """Feature rows: every group's 3- and 12-month counts (0 unless given) and the facts that
    eligibility reads."""
    base = {group_count_column(g, w): 0.0 for g in GROUPS for w in (3, 12)}
    facts = {
        "hh__income_band": "under_30",
        "hh__disabled_members": 0,
        "hh__minors": 0,
        "audit__head_age_band": "50_64",
    }
    return pd.DataFrame([{**base, **facts, **r} for r in rows])


def _names(indices: np.ndarray) -> list[str]:
    return [CODES[i] for i in indices if i >= 0]


def test_every_signal_group_points_to_a_kind_of_need(tmp_path):
    SERVICES.check_groups(GROUPS, REPO_ROOT / "configs" / "services.yaml")
    with pytest.raises(ConfigError, match="indicator group 'isolation' has no entry"):
        kept = {g: n for g, n in SERVICES.signal_groups.items() if g != "isolation"}
        SERVICES.model_copy(update={"signal_groups": kept}).check_groups(
            GROUPS, tmp_path / "services.yaml"
        )


def test_the_rule_reads_signal_groups_as_kinds_of_need_and_gives_its_reason():
    frame = _frame(
        [
            {group_count_column("finance", 3): 2.0},
            {group_count_column("isolation", 3): 1.0, "audit__head_age_band": "75_plus"},
            {group_count_column("housing", 12): 3.0, group_count_column("health", 3): 1.0},
        ]
    )
    s = suggest_by_rule(frame, SERVICES, GROUPS, CONFIG)
    assert s.services.shape == (3, 3) and (s.source == RULE).all()
    assert CODES[s.services[0, 0]] == "debt_adjustment"
    assert NEED_TYPES[s.reason_need[0, 0]] == "debt" and GROUPS[s.reason_group[0, 0]] == "finance"
    first = SERVICES.services[s.services[1, 0]]
    assert "isolation" in first.need_types and GROUPS[s.reason_group[1, 0]] == "isolation"
    # health (3 months, weight 1) and housing (12 months, weight 0.1): one service covers both
    both = SERVICES.services[s.services[2, 0]]
    assert {"health", "housing"} <= set(both.need_types)
    assert NEED_TYPES[s.reason_need[2, 0]] == "health"
    # once the need is covered, later places add nothing and say so
    assert s.scores[0, 1] == 0.0 and s.reason_need[0, 1] == -1


def test_suggestions_cover_the_most_need_one_service_at_a_time():
    serves = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]], dtype=bool)  # needs × services
    need = np.array([[0.5, 0.3, 0.2]])
    chosen, gained, reason = cover(need, np.ones((1, 3), dtype=bool), serves, top=3)
    # service 1 covers needs 0 and 1 (0.8); then service 2 adds need 2 (0.2); service 0 nothing
    assert chosen.tolist() == [[1, 2, 0]]
    np.testing.assert_allclose(gained, [[0.8, 0.2, 0.0]])
    assert reason.tolist() == [[0, 2, -1]]
    ineligible = np.array([[True, False, True]])
    chosen, _, _ = cover(need, ineligible, serves, top=3)
    assert chosen.tolist() == [[0, 2, -1]]


def test_the_rule_offers_only_services_the_household_may_have():
    frame = _frame(
        [
            {group_count_column("utilities", 3): 3.0, "audit__head_age_band": "50_64"},
            {group_count_column("utilities", 3): 3.0, "audit__head_age_band": "65_74"},
            {group_count_column("utilities", 3): 3.0, "hh__income_band": "over_100"},
        ]
    )
    s = suggest_by_rule(frame, SERVICES, GROUPS, CONFIG.model_copy(update={"top": 10}))
    assert "basic_pension" not in _names(s.services[0])
    assert "basic_pension" in _names(s.services[1])
    rich = _names(s.services[2])
    assert "livelihood_benefit" not in rich and "basic_pension" not in rich
    for code in rich:  # only what a household over the income bands may have
        bands = SERVICES.services[CODES.index(code)].eligible.income_bands
        assert bands is None or "over_100" in bands


def _visits(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.Series]:
    """Linked visits whose service follows their strongest signal group."""
    groups = rng.choice(["finance", "health", "employment"], size=n)
    rows = [{group_count_column(g, 3): float(rng.integers(1, 4))} for g in groups]
    frame = _frame(rows)
    linked = pd.Series(
        np.select(
            [groups == "finance", groups == "health"],
            ["debt_adjustment", "medical_benefit"],
            "employment_support",
        ),
        dtype="string",
    )
    return frame, linked


def test_the_learned_match_estimates_the_need_that_linked_services_met():
    rng = np.random.default_rng(7)
    frame, linked = _visits(600, rng)
    inputs = [c for c in frame.columns if c.startswith("group_")]
    linked[:20] = pd.NA  # visits that linked nothing are no label
    match = ServiceMatch(SERVICES, GROUPS, CONFIG, seed=3).fit(frame[inputs], linked)
    assert match.n_labels_ == 580 and match.model_ is not None
    new, truth = _visits(200, np.random.default_rng(8))
    s = match.suggest(new)
    assert (s.source == MODEL).all()
    need = np.array([SERVICES.services[CODES.index(c)].need_types[0] for c in truth])
    assert top_hit(s.services[:, :1], need, SERVICES).mean() > 0.95
    assert (np.array(NEED_TYPES)[s.reason_need[:, 0]] == need).mean() > 0.95
    assert np.all(s.probability[:, 0] > 0.5)
    for row in s.services:  # never one service twice
        placed = row[row >= 0]
        assert len(placed) == len(set(placed.tolist()))


def test_too_few_labels_leave_the_rule_alone():
    frame, linked = _visits(30, np.random.default_rng(1))
    inputs = [c for c in frame.columns if c.startswith("group_")]
    match = ServiceMatch(SERVICES, GROUPS, CONFIG, seed=3).fit(frame[inputs], linked)
    assert match.model_ is None
    s = match.suggest(frame)
    rule = suggest_by_rule(frame, SERVICES, GROUPS, CONFIG)
    assert (s.source == RULE).all()
    np.testing.assert_array_equal(s.services, rule.services)


def test_a_hit_is_a_suggested_service_that_serves_the_hidden_need():
    at = CODES.index
    suggested = np.array(
        [
            [at("debt_adjustment"), at("food_bank"), -1],
            [at("medical_benefit"), -1, -1],
            [at("debt_adjustment"), -1, -1],
            [at("medical_benefit"), -1, -1],
        ]
    )
    need = np.array(["debt", "debt", "none", "health"], dtype=object)
    np.testing.assert_array_equal(top_hit(suggested, need, SERVICES), [True, False, False, True])
    figures = top_hit_rate(
        suggested, need, SERVICES, clusters=np.array([1, 1, 2, 2]), samples=200, seed=0
    )
    assert figures["households"] == 3.0  # the household not in need is not counted
    assert figures["rate"] == pytest.approx(2 / 3)
    assert 0.0 <= figures["low"] <= figures["rate"] <= figures["high"] <= 1.0


def test_the_match_learns_only_from_services_known_before_the_cutoff():
    from models.backtest import MatchSetup, RoundPool, service_match_for
    from pipeline.config import TrainingConfig

    rng = np.random.default_rng(5)
    pools = []
    for r, resolved in ((100, 101), (102, 103), (104, 106)):
        frame, linked = _visits(200, rng)
        labelled = frame.assign(label=1, resolved_month=resolved, service_code=linked.to_numpy())
        labelled.loc[:9, "service_code"] = pd.NA  # linked nothing: no label
        pools.append(RoundPool(r, labelled, frame.iloc[0:0], r + 4))
    inputs = [c for c in pools[0].labelled.columns if c.startswith("group_")]
    setup = MatchSetup(SERVICES, tuple(GROUPS))
    config = TrainingConfig(service_match=CONFIG)
    # before 104: rounds 100 and 102 (resolved 101, 103); round 104 is not before the cutoff
    assert service_match_for(pools, 104, inputs, setup, config).n_labels_ == 380
    # at 106, round 104's visits were resolved in 106: not yet known
    assert service_match_for(pools, 106, inputs, setup, config).n_labels_ == 380
    assert service_match_for(pools, 107, inputs, setup, config).n_labels_ == 570
    assert service_match_for(pools, 101, inputs, setup, config).model_ is None


def test_the_difference_of_the_matchers_has_a_paired_interval():
    from models.service_match import DIFFERENCE, round_hit_rates

    rng = np.random.default_rng(0)
    emd = np.repeat([f"e{i}" for i in range(30)], 20)
    rule = rng.random(len(emd)) < 0.6
    model = rule | (rng.random(len(emd)) < 0.3)  # the model hits wherever the rule does, and more
    hits = pd.DataFrame({"emd_code": emd, MODEL: model, RULE: rule})
    rates = round_hit_rates(hits, "2026-10", samples=300, seed=1).set_index("matcher")
    diff = rates.loc[DIFFERENCE]
    assert diff["rate"] == pytest.approx(model.mean() - rule.mean())
    assert 0.0 < diff["low"] <= diff["rate"] <= diff["high"]
    # the same draws for both: equal matchers differ by exactly 0 in every draw
    same = round_hit_rates(hits.assign(**{MODEL: rule}), "2026-10", samples=300, seed=1)
    assert same.set_index("matcher").loc[DIFFERENCE, ["low", "high"]].tolist() == [0.0, 0.0]
