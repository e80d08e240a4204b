"""Promotion gates: each passes and fails, waivers apply only to failing gates."""

from __future__ import annotations

import pytest

from models.gates import SAME_ROUNDS, champion_not_comparable, decision, evaluate_gates
from pipeline.config import ConfigError, GatesConfig, config_from_mapping

GOOD = dict(
    validation_passed=True,
    candidate_metric=0.6,
    rule_metric=0.4,
    ece=0.03,
    fairness_flags=0,
    champion_metric=None,
    champion_version=None,
)


STRICT = GatesConfig(waivers=())  # the embedded defaults carry the committed sample's waivers


def _by_name(results):
    return {r.name: r for r in results}


def test_all_gates_pass_promotes():
    results = evaluate_gates(STRICT, **GOOD)
    assert all(r.passed for r in results)
    assert decision(results) == (True, "all promotion gates passed")


@pytest.mark.parametrize(
    ("change", "gate"),
    [
        ({"validation_passed": None}, "data_validation"),
        ({"validation_passed": False}, "data_validation"),
        ({"candidate_metric": 0.41}, "lift_over_rule"),
        ({"ece": 0.2}, "calibration"),
        ({"fairness_flags": 2}, "fairness"),
        ({"champion_metric": 0.7, "champion_version": "3"}, "champion"),
    ],
)
def test_each_gate_fails_and_blocks_promotion(change, gate):
    results = _by_name(evaluate_gates(STRICT, **{**GOOD, **change}))
    assert not results[gate].passed
    assert [n for n, r in results.items() if not r.ok] == [gate]
    promoted, reason = decision(list(results.values()))
    assert not promoted and gate in reason


def test_champion_gate_says_on_which_rounds_the_champion_was_judged():
    """Scored on the same test rounds, or its own run's figure with the reason."""
    same = {**GOOD, "champion_metric": 0.5, "champion_version": "2"}
    gate = _by_name(evaluate_gates(STRICT, **same, champion_basis=SAME_ROUNDS))["champion"]
    assert "(0.5000, scored on the same test rounds)" in gate.detail
    why = champion_not_comparable(24300, [24298, 24300], ["a"], ["a"])
    gate = _by_name(evaluate_gates(STRICT, **same, champion_basis=why))["champion"]
    assert "as its own run logged on its test rounds: not scored on these, it was trained" in (
        gate.detail
    )


def test_a_champion_is_scored_on_test_rounds_it_never_learned_from():
    # trained as of round 100: it learned from rounds before 100 only
    assert champion_not_comparable(100, [100, 102, 104], ["a", "b"], ["b", "a", "c"]) == ""
    assert "learned from it" in champion_not_comparable(101, [100, 102], ["a"], ["a"])
    assert "no as-of month" in champion_not_comparable(None, [100], ["a"], ["a"])
    assert "no input columns" in champion_not_comparable(100, [100], None, ["a"])
    assert "1 of its inputs are not among today's features (gone" in champion_not_comparable(
        100, [100], ["a", "gone"], ["a"]
    )


def test_champion_gate_allows_the_tolerance():
    gates = GatesConfig(champion_tolerance=0.05)
    results = _by_name(
        evaluate_gates(gates, **{**GOOD, "champion_metric": 0.64, "champion_version": "2"})
    )
    assert results["champion"].passed


def test_waiver_turns_a_failing_gate_into_a_pass_with_its_reason():
    gates = GatesConfig(waivers=[{"gate": "fairness", "reason": "groups reviewed by the board"}])
    results = _by_name(evaluate_gates(gates, **{**GOOD, "fairness_flags": 3}))
    assert results["fairness"].waived and not results["fairness"].passed
    assert results["fairness"].waiver_reason == "groups reviewed by the board"
    promoted, reason = decision(list(results.values()))
    assert promoted and "waived: fairness" in reason
    # a waiver does not mark a gate that passed anyway
    assert not _by_name(evaluate_gates(gates, **GOOD))["fairness"].waived


def test_sample_defaults_waive_nothing():
    """The committed sample passes every gate since issue 20 (it waived fairness before)."""
    assert GatesConfig().waivers == ()


def test_waiver_needs_a_known_gate_and_a_reason():
    with pytest.raises(ConfigError, match=r"training\.gates\.waivers"):
        config_from_mapping(
            {"training": {"gates": {"waivers": [{"gate": "fairness", "reason": "ok"}]}}}, "t.yaml"
        )
    with pytest.raises(ConfigError, match=r"training\.gates\.waivers"):
        config_from_mapping(
            {"training": {"gates": {"waivers": [{"gate": "speed", "reason": "x" * 20}]}}}, "t.yaml"
        )


def test_model_size_cap_is_enforced_by_the_config():
    with pytest.raises(ConfigError, match="max_trees_x_leaves"):
        config_from_mapping(
            {"training": {"lightgbm": {"n_estimators": 1000, "num_leaves": 63}}}, "t.yaml"
        )
