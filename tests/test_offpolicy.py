"""Off-policy estimates of precision at capacity (models/offpolicy.py): unbiased with a known
logging policy, DR's variance and its cover of households the log could never visit, interval
coverage, the logging policy's visit probabilities, the gate metric choice, and the figures the
training run logs on the committed sample."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.gates import GATE_COLUMNS, gate_metric
from models.offpolicy import (
    CENTRAL,
    EXPLORE,
    IN_NEED,
    LOCAL,
    OBSERVED,
    PROPENSITY,
    SUPPORT,
    backtest_estimates,
    bootstrap_round,
    estimate,
    logging_propensity,
    observed_rates,
    validation,
)

N = 400  # households on some list
LISTED = 150  # the candidate's list: the first LISTED households


def _world(seed: int, zero_share: float = 0.0) -> tuple[pd.DataFrame, float]:
    """Households with a need probability, a logging policy with known visit probabilities
    (independent draws), labels observed for 80 % of the visits at random, and a candidate
    list. ``zero_share`` of the list has logging probability 0. Returns the frame and the
    list's true precision (its realised need)."""
    rng = np.random.default_rng(seed)
    p_need = rng.uniform(0.1, 0.9, N)
    need = rng.random(N) < p_need
    visit_p = rng.uniform(0.05, 0.6, N)
    zero = np.zeros(N, dtype=bool)
    zero[: int(zero_share * LISTED)] = True
    visit_p[zero] = 0.0
    visited = rng.random(N) < visit_p
    seen = visited & (rng.random(N) < 0.8)
    frame = pd.DataFrame(
        {
            "candidate": np.arange(N) < LISTED,
            OBSERVED: np.where(seen, need.astype(np.int8), -1).astype(np.int8),
            PROPENSITY: np.where(visited, visit_p * 0.8, np.nan),
            SUPPORT: visit_p > 0,
            "model_true": p_need,
            "model_off": np.clip(p_need + 0.15, 0, 1),  # a biased outcome model
            IN_NEED: need,
        }
    )
    return frame, float(need[:LISTED].mean())


def test_estimators_unbiased_and_dr_has_less_variance():
    errors = {"ips": [], "snips": [], "dr": [], "dr_off": []}
    for seed in range(400):
        frame, truth = _world(seed)
        e = estimate(frame, "candidate", "model_true")
        errors["ips"].append(e["ips"] - truth)
        errors["snips"].append(e["snips"] - truth)
        errors["dr"].append(e["dr"] - truth)
        errors["dr_off"].append(estimate(frame, "candidate", "model_off")["dr"] - truth)
        assert e["support_share"] == 1.0
    for name, values in errors.items():
        assert abs(np.mean(values)) < 0.01, name  # a wrong model term: propensities save DR
    assert np.std(errors["dr"]) < 0.8 * np.std(errors["ips"])  # 0.077 against 0.113


def test_zero_logging_probability_is_not_identified_by_ips():
    ips, dr, shares = [], [], []
    for seed in range(300):
        frame, truth = _world(seed, zero_share=0.4)
        e = estimate(frame, "candidate", "model_true")
        ips.append(e["ips"] - truth)
        dr.append(e["dr"] - truth)
        shares.append(e["support_share"])
    assert np.allclose(shares, 0.6)
    assert np.mean(ips) < -0.15  # the unvisitable 40 % count as no need
    assert abs(np.mean(dr)) < 0.01  # covered by a correct model term


def test_intervals_cover_at_about_the_nominal_rate():
    inside = {"ips": [], "dr": []}
    for seed in range(120):
        frame, truth = _world(1000 + seed)
        table = bootstrap_round(frame, {"candidate": "model_true"}, samples=200, seed=seed)
        row = table.iloc[0]
        assert row["truth"] == pytest.approx(truth)
        for est in inside:
            inside[est].append(row[f"{est}_low"] <= truth <= row[f"{est}_high"])
    for est, values in inside.items():
        assert 0.8 <= np.mean(values) <= 0.98, (est, np.mean(values))


def test_bootstrap_is_seeded_and_switch_drops_heavy_corrections():
    frame, _ = _world(7)
    lists = {"candidate": "model_off"}
    a = bootstrap_round(frame, lists, samples=50, seed=3)
    pd.testing.assert_frame_equal(a, bootstrap_round(frame, lists, samples=50, seed=3))
    # with no correction allowed, DR is the model term's mean over the list
    dm = bootstrap_round(frame, lists, samples=50, seed=3, max_weight=0.5)
    assert dm["dr"].iloc[0] == pytest.approx(frame["model_off"][:LISTED].mean())
    table = validation(a.assign(round="r"))
    assert set(table["estimator"]) == {"ips", "snips", "dr"}
    assert (table["n"] == 1).all()


def test_logging_propensity_combines_the_reasons():
    # one 읍면동: a central pick above the cut, two tied central picks (probability 0.5), a local
    # pick, an exploration pick (0.01); unvisited: a tied household, one with a recent signal,
    # one without
    reason = np.array([CENTRAL, CENTRAL, CENTRAL, LOCAL, EXPLORE, "", "", ""], dtype=object)
    prob = np.array([1.0, 0.5, 0.5, 0.2, 0.01, np.nan, np.nan, np.nan])
    score = np.array([3, 2, 2, 0, 1, 2, 1, 0], dtype=float)
    recent = np.array([1, 1, 1, 1, 1, 0, 1, 0], dtype=bool)
    visit, support = logging_propensity(reason, prob, np.array(["e"] * 8), score, recent)
    assert visit[0] == 1.0 and visit[1] == pytest.approx(1 - 0.5 * 0.99)  # or explored
    assert visit[3] == pytest.approx(1 - 0.8 * 0.99)  # local, or else explored
    assert visit[4] == pytest.approx(0.01)  # score 1 is not at the tie: no central chance
    assert np.isnan(visit[5:]).all()
    assert support.tolist() == [True] * 7 + [False]
    visits = pd.DataFrame(
        {"selection_reason": [CENTRAL, CENTRAL, LOCAL], "label": pd.array([1, None, 0], "Int8")}
    )
    assert observed_rates(visits) == {CENTRAL: 0.5, LOCAL: 1.0}


def test_a_visit_of_unknown_probability_is_left_to_the_model_term():
    """A local pick logs no probability (nobody records how an office chose): its visit
    probability is unknown, it vouches for nothing, and its label corrects no estimate; a
    household that was also in the exploration pool keeps that support."""
    reason = np.array([CENTRAL, LOCAL, LOCAL, EXPLORE], dtype=object)
    prob = np.array([1.0, np.nan, np.nan, 0.01])
    score = np.array([3, 0, 0, 1], dtype=float)
    recent = np.array([1, 0, 1, 1], dtype=bool)
    visit, support = logging_propensity(reason, prob, np.array(["e"] * 4), score, recent)
    assert visit[0] == 1.0 and np.isnan(visit[1]) and np.isnan(visit[2])
    assert support.tolist() == [True, False, True, True]
    frame = pd.DataFrame(
        {
            "candidate": [True, True, True, True],
            OBSERVED: np.array([1, 1, 0, 1], dtype=np.int8),
            PROPENSITY: visit,
            SUPPORT: support,
            "model": [0.9, 0.5, 0.5, 0.3],
        }
    )
    got = estimate(frame, "candidate", "model")
    # IPS counts the central pick (1 / 1) and the explored one (1 / 0.01) over 4 listed
    assert got["ips"] == pytest.approx((1.0 + 100.0) / 4)
    # DR: the locals are their model terms alone, 0.5 each
    assert got["dr"] == pytest.approx((1.0 + 0.5 + 0.5 + (0.3 + 100.0 * 0.7)) / 4)


def test_gate_metric_choice():
    assert gate_metric("auto", has_truth=True) == "truth_precision_emd"
    assert gate_metric("auto", has_truth=False) == "offpolicy_dr_precision_emd"
    assert gate_metric("auto", False, has_offpolicy=False) == "observed_precision_emd"
    assert gate_metric("observed_precision_emd", True) == "observed_precision_emd"
    assert GATE_COLUMNS["offpolicy_dr_precision_emd"] == "offpolicy_dr_emd_precision_mean"


def test_training_run_logs_the_offpolicy_validation(scored_sample):
    from pipeline.tracking import connect

    client = connect(scored_sample.config)
    manifest = json.loads((scored_sample.round_dir / "manifest.json").read_text("utf-8"))
    run = client.get_run(manifest["model"]["training_run_id"])
    metrics = run.data.metrics
    for est in ("ips", "snips", "dr"):
        assert 0 <= metrics[f"offpolicy.{est}.coverage"] <= 1
        assert metrics[f"offpolicy.{est}.n"] >= 3  # rounds x lists
    assert 0 < metrics["lightgbm.offpolicy_dr_emd_precision_mean"] < 1
    assert 0 < metrics["rule.offpolicy_support_share_mean"] <= 1
    # per test round, the truth on the labels' scale the simulation judges the estimates on too
    history = client.get_metric_history(run.info.run_id, "bt.rule.offpolicy_truth_label_scale")
    assert history and all(0 < m.value < 1 for m in history)
    assert run.data.tags["outreach.gate_metric"] == "truth_precision_emd"  # truth exists


def test_without_truth_there_is_nothing_to_validate():
    frame, _ = _world(11)
    table = backtest_estimates(
        [("2026-08", frame.drop(columns=IN_NEED))],
        {"candidate": "model_true"},
        samples=20,
        seed=1,
    )
    assert "truth" not in table.columns and table["dr"].notna().all()
    assert validation(table).empty


def test_champion_without_the_metric_is_said_so():
    from models.gates import evaluate_gates
    from pipeline.config import GatesConfig

    common = dict(
        validation_passed=True,
        candidate_metric=0.6,
        rule_metric=0.4,
        ece=0.01,
        fairness_flags=0,
        metric_name="offpolicy_dr_precision_emd",
    )
    gates = {
        g.name: g
        for g in evaluate_gates(GatesConfig(), **common, champion_metric=None, champion_version="2")
    }
    assert gates["champion"].passed and "logged no offpolicy_dr_precision_emd" in (
        gates["champion"].detail
    )
    assert "doubly robust" in gates["lift_over_rule"].detail
    gates = {
        g.name: g
        for g in evaluate_gates(
            GatesConfig(), **common, champion_metric=None, champion_version=None
        )
    }
    assert gates["champion"].detail == "no current champion"
