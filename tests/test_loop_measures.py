"""Measures of the living loop (models/loop.py) on a hand-built world whose answers are worked
out by hand, the paired bootstrap over 읍면동, the broken-loop signals and the plots.

The world: 3 읍면동 (E1-E3) × 10 households (local number j = 0..9), 4 rounds (2025-01, -03,
-05, -07), truth from 2024-11 (column 0) to 2025-08 (column 9). Tenure: even j "own", odd j
"rent". In the ``none`` world j = 0, 1, 2 are in need every month and j = 3 from 2025-04
(column 5) on; no one else ever.

- ``oracle`` lists j = 0, 1 at round 0 (reached in 2025-01) and j = 2, 3 at round 1 (reached in
  2025-04), nothing later; expected probability 0.8. A reached household's need ends the month
  after the contact: j = 0, 1 in need columns 0-2, j = 2 columns 0-5, j = 3 column 5 only.
- ``rule`` lists j = 8, 9 (never in need) at every round, j = 9 as random exploration; its
  attempts never reach anyone, so its world is the ``none`` world.
- ``none`` lists and contacts no one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import loop
from models.loop import LoopWorld, PolicyRun
from models.loop_plots import fairness_lines, loop_panels, measure_lines
from pipeline.months import format_month
from pipeline.vocabulary import EMD, EXPLORATION, KEY, MODEL_SCORE, PHONE, VISIT

FIRST = 2024 * 12 + 10  # 2024-11, column 0
ROUNDS = (2025 * 12 + 0, 2025 * 12 + 2, 2025 * 12 + 4, 2025 * 12 + 6)
WIDTH = 10
EMDS = ("E1", "E2", "E3")


def _key(emd: int, j: int) -> str:
    return f"h{emd}{j}"


def _households() -> pd.DataFrame:
    return pd.DataFrame(
        {
            KEY: [_key(e, j) for e in range(3) for j in range(10)],
            EMD: [EMDS[e] for e in range(3) for j in range(10)],
            "tenure": ["own" if j % 2 == 0 else "rent" for e in range(3) for j in range(10)],
        }
    )


def _truth(spans: dict[int, list[int]]) -> pd.DataFrame:
    """Truth of every household and month; ``spans``: in-need columns per local number j."""
    rows = []
    for e in range(3):
        for j in range(10):
            for column in range(WIDTH):
                rows.append(
                    {
                        KEY: _key(e, j),
                        "month": FIRST + column,
                        "in_need": column in spans.get(j, []),
                        "hardship": 1.0 if column in spans.get(j, []) else 0.0,
                    }
                )
    return pd.DataFrame(rows)


NONE_SPANS = {0: list(range(10)), 1: list(range(10)), 2: list(range(10)), 3: list(range(5, 10))}
ORACLE_SPANS = {0: [0, 1, 2], 1: [0, 1, 2], 2: list(range(6)), 3: [5]}


def _listed(entries: list[tuple[int, int, str, float, str]]) -> pd.DataFrame:
    """Rows (round index, j, tier, expected probability, reason) for every 읍면동."""
    rows = [
        {
            "round": ROUNDS[i],
            KEY: _key(e, j),
            EMD: EMDS[e],
            "tier": tier,
            "score": expected,
            "expected_probability": expected,
            "selection_reason": reason,
        }
        for e in range(3)
        for i, j, tier, expected, reason in entries
    ]
    return pd.DataFrame(
        rows,
        columns=["round", KEY, EMD, "tier", "score", "expected_probability", "selection_reason"],
    )


def _contacts(entries: list[tuple[int, int, bool]]) -> pd.DataFrame:
    """Rows (month, j, reached) for every 읍면동."""
    rows = [
        {
            KEY: _key(e, j),
            "contact_month": month,
            "outcome_code": "need_confirmed" if reached else "not_home",
            "reached": reached,
            "linked": reached,
        }
        for e in range(3)
        for month, j, reached in entries
    ]
    return pd.DataFrame(
        rows, columns=[KEY, "contact_month", "outcome_code", "reached", "linked"]
    ).astype({"contact_month": "int64", "reached": bool, "linked": bool})


@pytest.fixture(scope="module")
def world() -> LoopWorld:
    return LoopWorld(
        rounds=ROUNDS,
        households=_households(),
        counterfactual=_truth(NONE_SPANS),
        attributes=("tenure",),
        min_group_size=1,
    )


def _oracle() -> PolicyRun:
    return PolicyRun(
        "oracle",
        _listed(
            [
                (0, 0, VISIT, 0.8, MODEL_SCORE),
                (0, 1, VISIT, 0.8, MODEL_SCORE),
                (1, 2, VISIT, 0.8, MODEL_SCORE),
                (1, 3, VISIT, 0.8, MODEL_SCORE),
            ]
        ),
        _contacts(
            [(ROUNDS[0], 0, True), (ROUNDS[0], 1, True), (FIRST + 5, 2, True), (FIRST + 5, 3, True)]
        ),
        _truth(ORACLE_SPANS),
    )


def _rule() -> PolicyRun:
    listed = [(i, 8, VISIT, np.nan, MODEL_SCORE) for i in range(4)]
    listed += [(i, 9, VISIT, np.nan, EXPLORATION) for i in range(4)]
    attempts = [(ROUNDS[i], j, False) for i in range(4) for j in (8, 9)]
    return PolicyRun("rule", _listed(listed), _contacts(attempts), _truth(NONE_SPANS))


def _none() -> PolicyRun:
    return PolicyRun("none", _listed([]), _contacts([]), _truth(NONE_SPANS))


@pytest.fixture(scope="module")
def measures(world: LoopWorld) -> loop.LoopMeasures:
    return loop.loop_measures([_rule(), _oracle(), _none()], world)


def _values(table: pd.DataFrame, policy: str, measure: str) -> list[float]:
    part = table[(table["policy"] == policy) & (table["measure"] == measure)]
    return part.sort_values("round")["value"].tolist()


def _same(actual: list[float], expected: list[float]) -> None:
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float), atol=1e-12)


NAN = float("nan")


def test_tidy_tables_have_one_value_per_policy_round_and_measure(measures):
    for table in (measures.per_round, measures.cumulative):
        assert list(table.columns) == ["policy", "round", "measure", "value"]
        assert not table.duplicated(["policy", "round", "measure"]).any()
        assert set(table["round"]) == set(ROUNDS)
        assert set(table["policy"]) == {"rule", "oracle", "none"}


def test_need_found_and_precision_by_hand(measures):
    per, cum = measures.per_round, measures.cumulative
    _same(_values(per, "oracle", "need_found"), [6, 6, 0, 0])
    _same(_values(per, "oracle", "need_found_reached"), [6, 6, 0, 0])
    _same(_values(cum, "oracle", "need_found"), [6, 12, 12, 12])
    _same(_values(per, "oracle", "precision"), [1, 1, NAN, NAN])  # the oracle's precision is 1
    _same(_values(cum, "oracle", "precision"), [1, 1, 1, 1])
    _same(_values(per, "oracle", "recall"), [6 / 9, 1, NAN, NAN])
    _same(_values(cum, "oracle", "recall"), [6 / 9, 12 / 15, 12 / 15, 12 / 15])
    _same(_values(per, "rule", "need_found"), [0, 0, 0, 0])
    _same(_values(per, "rule", "precision"), [0, 0, 0, 0])
    _same(_values(per, "rule", "visit_listed"), [6, 6, 6, 6])


def test_hardship_averted_by_hand(measures):
    per, cum = measures.per_round, measures.cumulative
    # none - oracle in-need months per round: (18-12), (21-9), (24-0), (24-0)
    _same(_values(per, "oracle", "hardship_months_averted"), [6, 12, 24, 24])
    _same(_values(cum, "oracle", "hardship_months_averted"), [6, 18, 42, 66])
    _same(_values(per, "oracle", "reached_contacts"), [6, 6, 0, 0])
    _same(_values(per, "oracle", "hardship_averted_per_1000_contacts"), [1000, 2000, NAN, NAN])
    _same(_values(cum, "oracle", "hardship_averted_per_1000_contacts"), [1000, 1500, 3500, 5500])


def test_a_policy_identical_to_none_averts_nothing(measures):
    for policy in ("rule", "none"):
        _same(_values(measures.per_round, policy, "hardship_months_averted"), [0, 0, 0, 0])
        _same(_values(measures.cumulative, policy, "hardship_months_averted"), [0, 0, 0, 0])
        # no one reached: nothing per contact
        _same(_values(measures.per_round, policy, "hardship_averted_per_1000_contacts"), [NAN] * 4)
    assert (measures.per_emd.loc["none", "hardship_months_averted"] == 0).all()


def test_months_from_onset_to_first_contact_by_hand(measures):
    # round 0: j=0,1 reached 2 months after the (censored) onset at column 0;
    # round 1: j=2 after 5 months, j=3 in the onset month
    _same(_values(measures.per_round, "oracle", "median_months_to_contact"), [2, 2.5, NAN, NAN])
    _same(_values(measures.cumulative, "oracle", "median_months_to_contact"), [2, 2, 2, 2])
    _same(_values(measures.per_round, "rule", "median_months_to_contact"), [NAN] * 4)


def test_spell_onsets():
    need = np.array([[True, True, False, True, True], [False, False, False, False, True]])
    onset = loop.spell_onsets(need, 100)
    assert onset.tolist() == [[100, 100, -1, 103, 103], [-1, -1, -1, -1, 104]]


def test_never_contacted_three_rounds_by_hand(measures):
    per, cum = measures.per_round, measures.cumulative
    # rounds 0-2: j=0,1,2 in need and never reached; round 3 adds j=3 (in need rounds 1-3)
    _same(_values(per, "rule", "never_contacted_3_rounds"), [NAN, NAN, 9, 12])
    _same(_values(per, "rule", "never_contacted_3_rounds_share"), [NAN, NAN, 0.75, 1])
    _same(_values(cum, "rule", "never_contacted_3_rounds"), [NAN, NAN, 9, 12])
    _same(_values(cum, "rule", "never_contacted_3_rounds_share"), [NAN, NAN, 0.75, 0.875])
    _same(_values(per, "oracle", "never_contacted_3_rounds"), [NAN, NAN, 0, 0])


def test_a_list_that_repeats_itself(measures):
    per, cum = measures.per_round, measures.cumulative
    _same(_values(per, "rule", "list_overlap"), [NAN, 1, 1, 1])
    _same(_values(per, "rule", "list_jaccard"), [NAN, 1, 1, 1])
    _same(_values(per, "rule", "repeat_listed_without_contact"), [NAN, 6, 6, 6])
    _same(_values(per, "rule", "repeat_listed_without_contact_share"), [NAN, 1, 1, 1])
    _same(_values(cum, "rule", "repeat_listed_without_contact"), [NAN, 6, 12, 18])
    _same(_values(per, "rule", "new_to_list_share"), [NAN, 0, 0, 0])
    _same(_values(cum, "rule", "new_to_list_share"), [1, 1 / 2, 1 / 3, 1 / 4])
    # the oracle's lists never repeat; at round 2 it lists no one (overlap undefined)
    _same(_values(per, "oracle", "list_overlap"), [NAN, 0, NAN, NAN])
    _same(_values(per, "oracle", "list_jaccard"), [NAN, 0, 0, NAN])
    _same(_values(per, "oracle", "repeat_listed_without_contact"), [NAN, 0, 0, 0])


def test_churn_is_a_mean_over_emd(world):
    # E1 keeps its list (overlap 1), E2 keeps half of it, E3 changes all of it
    rows = []
    for e, (before, after) in enumerate([((0, 1), (0, 1)), ((0, 1), (0, 5)), ((0, 1), (6, 7))]):
        rows += [{"round": ROUNDS[0], KEY: _key(e, j), "tier": VISIT} for j in before]
        rows += [{"round": ROUNDS[1], KEY: _key(e, j), "tier": VISIT} for j in after]
    run = PolicyRun("mixed", pd.DataFrame(rows), _contacts([]), _truth(NONE_SPANS))
    churn = loop.list_churn(loop.policy_arrays(run, world))
    assert churn.loc[ROUNDS[1], "list_overlap"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert churn.loc[ROUNDS[1], "list_jaccard"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert churn.loc[ROUNDS[1], "new_to_list_share"] == pytest.approx(3 / 6)


def test_phone_tier_is_listed_but_not_on_the_visit_list(world):
    listed = _listed([(0, 0, PHONE, np.nan, MODEL_SCORE), (1, 0, PHONE, np.nan, MODEL_SCORE)])
    run = PolicyRun("phone", listed, _contacts([]), _truth(NONE_SPANS))
    a = loop.policy_arrays(run, world)
    assert loop.need_found(a)["visit_listed"].tolist() == [0, 0, 0, 0]
    assert loop.repeat_listing(a)["repeat_listed_without_contact"].tolist()[1] == 3


def test_calibration_drift_and_exploration(measures):
    _same(_values(measures.per_round, "oracle", "calibration_gap"), [-0.2, -0.2, NAN, NAN])
    _same(_values(measures.cumulative, "oracle", "calibration_gap"), [-0.2] * 4)
    _same(_values(measures.per_round, "rule", "calibration_gap"), [NAN] * 4)
    _same(_values(measures.per_round, "rule", "exploration_share"), [0.5] * 4)
    _same(_values(measures.per_round, "oracle", "exploration_share"), [0, 0, NAN, NAN])


def test_fairness_ratios_by_hand(measures, world):
    per, cum = measures.per_round, measures.cumulative
    # round 0: own in need 6 (j=0,2), found 3; rent in need 3 (j=1), found 3; reference own
    _same(_values(per, "oracle", "recall_ratio_min:tenure"), [1, 1, NAN, NAN])
    _same(_values(per, "oracle", "recall_ratio_max:tenure"), [2, 1, NAN, NAN])
    _same(_values(per, "oracle", "worst_recall_ratio"), [0.5, 1, NAN, NAN])
    _same(_values(per, "oracle", "worst_precision_ratio"), [1, 1, NAN, NAN])
    # pooled to round 1: own 6/9, rent 6/6
    _same(_values(cum, "oracle", "worst_recall_ratio"), [0.5, 2 / 3, 2 / 3, 2 / 3])
    table = measures.fairness
    row = table[
        (table["policy"] == "oracle") & (table["round"] == ROUNDS[0]) & (table["group"] == "rent")
    ].iloc[0]
    assert (row["in_need"], row["selected"], row["hits"]) == (3, 3, 3)
    assert row["recall_ratio"] == pytest.approx(2.0) and not row["reference"]
    # a named reference group turns the ratios round
    rent_world = LoopWorld(
        ROUNDS,
        world.households,
        world.counterfactual,
        attributes=("tenure",),
        references={"tenure": "rent"},
        min_group_size=1,
    )
    extremes = loop.fairness_extremes(loop.policy_arrays(_oracle(), rent_world))
    assert extremes["recall_ratio_min:tenure"].iloc[0] == pytest.approx(0.5)
    # groups below the minimum size get no ratio: at round 0 only 3 "rent" households in need
    strict = LoopWorld(ROUNDS, world.households, world.counterfactual, ("tenure",), {}, 4)
    strict_table = loop.fairness_over_time(loop.policy_arrays(_oracle(), strict))
    first = strict_table[strict_table["round"] == ROUNDS[0]].set_index("group")
    assert np.isnan(first.loc["rent", "recall_ratio"]) and first.loc["own", "recall_ratio"] == 1
    assert first["precision_ratio"].isna().all()  # 3 listed per group


def test_per_emd_totals(measures):
    oracle = measures.per_emd.loc["oracle"]
    assert oracle.index.tolist() == list(EMDS)
    assert oracle["need_found"].tolist() == [4, 4, 4]
    assert oracle["hardship_months_averted"].tolist() == [22, 22, 22]
    assert oracle["reached_households"].tolist() == [4, 4, 4]
    assert measures.per_emd.loc["rule", "visit_listed"].tolist() == [8, 8, 8]


def test_paired_interval_excludes_zero_when_better_in_every_emd():
    rng = np.random.default_rng(3)
    index = pd.Index([f"E{i}" for i in range(40)], name=EMD)
    base = pd.Series(rng.integers(0, 50, size=40).astype(float), index=index)
    better = base + rng.integers(1, 5, size=40)
    d = loop.paired_difference(better, base, samples=500, seed=1)
    assert d.estimate == pytest.approx(float((better - base).sum()))
    assert 0 < d.low <= d.estimate <= d.high
    same = loop.paired_difference(base, base.copy(), samples=500, seed=1)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    assert same.low <= 0 <= same.high


def test_paired_interval_includes_zero_when_equal_on_average():
    index = pd.Index([f"E{i}" for i in range(40)], name=EMD)
    a = pd.Series(np.tile([3.0, -3.0], 20), index=index)
    d = loop.paired_difference(a, pd.Series(0.0, index=index), samples=500, seed=2)
    assert d.estimate == 0.0 and d.low < 0 < d.high


def test_paired_bootstrap_is_deterministic_with_a_seed():
    rng = np.random.default_rng(5)
    index = pd.Index([f"E{i}" for i in range(30)])
    a = pd.Series(rng.normal(size=30), index=index)
    b = pd.Series(rng.normal(size=30), index=index)
    first = loop.paired_difference(a, b, samples=300, seed=7, level=0.9)
    assert first == loop.paired_difference(a, b, samples=300, seed=7, level=0.9)
    assert first != loop.paired_difference(a, b, samples=300, seed=8, level=0.9)
    # a missing 읍면동 counts 0 on that side
    short = loop.paired_difference(a, b.iloc[:-1], samples=10, seed=7)
    assert short.estimate == pytest.approx(a.sum() - b.iloc[:-1].sum())


def test_policy_table(measures):
    table = loop.policy_table(measures, reference="rule", samples=400, seed=0)
    assert table["policy"].tolist() == ["rule", "oracle", "none"]
    oracle = table.set_index("policy").loc["oracle"]
    assert oracle["need_found"] == 12 and oracle["precision"] == 1
    assert oracle["hardship_months_averted"] == 66
    assert oracle["need_found_minus_reference"] == 12
    assert oracle["need_found_minus_reference_low"] > 0  # better in every 읍면동
    assert oracle["hardship_months_averted_minus_reference"] == 66
    assert oracle["hardship_months_averted_minus_reference_low"] > 0
    rule = table.set_index("policy").loc["rule"]
    assert (rule["need_found_minus_reference"], rule["need_found_minus_reference_low"]) == (0, 0)
    assert rule["list_overlap"] == 1 and rule["never_contacted_3_rounds"] == 12
    with pytest.raises(ValueError, match="reference"):
        loop.policy_table(measures, reference="champion")


def test_broken_loop_signals_on_the_hand_world(measures):
    signals = loop.broken_loop_signals(measures.per_round).set_index("policy")
    rule = signals.loc["rule"]
    assert rule["list_concentrating"] and rule["need_left_behind"] and rule["degrading"]
    assert rule["never_contacted_share_slope"] == pytest.approx(0.25)
    assert not rule["no_exploration"]
    oracle = signals.loc["oracle"]
    assert not oracle["degrading"] and oracle["no_exploration"]
    # no one looks for need at all: it is left behind, but no list concentrates
    none = signals.loc["none"]
    assert none["need_left_behind"] and not none["list_concentrating"]
    assert not none["no_exploration"]


def _random_world(seed: int, n_emd: int = 12, per_emd: int = 60, rounds: int = 8):
    """Need that comes and goes: each household starts spells of need at random (lasting 4
    months); one policy chases the newest need with some exploration, one lists the same top
    households forever and never explores (labels only from its own lists)."""
    rng = np.random.default_rng(seed)
    n = n_emd * per_emd
    keys = np.array([f"k{i:05d}" for i in range(n)])
    emd = np.repeat([f"E{i:02d}" for i in range(n_emd)], per_emd)
    months = 2 * rounds + 2
    first = 2025 * 12
    starts = rng.random((n, months)) < 0.04
    need = np.zeros((n, months), bool)
    for lag in range(4):
        need[:, lag:] |= starts[:, : months - lag]
    households = pd.DataFrame(
        {KEY: keys, EMD: emd, "urban": np.where(rng.random(n) < 0.5, "u", "r")}
    )
    round_months = tuple(first + 2 + 2 * i for i in range(rounds))

    def truth(matrix):
        return pd.DataFrame(
            {
                KEY: np.repeat(keys, months),
                "month": np.tile(np.arange(first, first + months), n),
                "in_need": matrix.ravel(),
                "hardship": matrix.ravel().astype(float),
            }
        )

    world = LoopWorld(round_months, households, truth(need), ("urban",), min_group_size=5)
    capacity = 4
    fixed = np.zeros(n, bool)
    for e in range(n_emd):
        # the broken loop's favourites: the households in need at the first round, then fill
        at = round_months[0] - first
        local = np.arange(e * per_emd, (e + 1) * per_emd)
        order = local[np.argsort(~(need[local, at] | need[local, at + 1]), kind="stable")]
        fixed[order[:capacity]] = True
    runs = []
    for name in ("healthy", "broken"):
        rows = []
        for r in round_months:
            at = r - first
            now = need[:, at] | need[:, at + 1]
            for e in range(n_emd):
                local = np.arange(e * per_emd, (e + 1) * per_emd)
                if name == "broken":
                    chosen = local[fixed[local]]
                    reasons = [MODEL_SCORE] * len(chosen)
                    expected = 0.9
                else:
                    in_need = local[now[local]]
                    chosen = list(rng.permutation(in_need)[: capacity - 1])
                    rest = np.setdiff1d(local, chosen)
                    chosen.append(int(rng.choice(rest)))
                    chosen = np.asarray(chosen)
                    reasons = [MODEL_SCORE] * (len(chosen) - 1) + [EXPLORATION]
                    expected = 0.7
                rows += [
                    {
                        "round": r,
                        KEY: keys[c],
                        "tier": VISIT,
                        "expected_probability": expected,
                        "selection_reason": reason,
                    }
                    for c, reason in zip(chosen, reasons, strict=True)
                ]
        listed = pd.DataFrame(rows)
        contacts = pd.DataFrame(
            {
                KEY: listed[KEY],
                "contact_month": listed["round"],
                "reached": True,
            }
        )
        runs.append(PolicyRun(name, listed, contacts, truth(need)))
    return runs, world


def test_broken_loop_is_told_from_a_healthy_one():
    runs, world = _random_world(11)
    measures = loop.loop_measures(runs, world)
    signals = loop.broken_loop_signals(measures.per_round).set_index("policy")
    broken, healthy = signals.loc["broken"], signals.loc["healthy"]
    assert broken["degrading"] and broken["no_exploration"] and broken["list_concentrating"]
    assert broken["precision_falling"] and broken["calibration_drifting"]
    assert not healthy["degrading"] and not healthy["no_exploration"]
    assert broken["mean_overlap"] == 1 and healthy["mean_overlap"] < 0.5
    assert broken["mean_never_contacted_share"] > healthy["mean_never_contacted_share"]
    # against a reference that explores, the need the broken loop leaves behind is in excess
    against = loop.broken_loop_signals(measures.per_round, reference="healthy").set_index("policy")
    assert against.loc["broken", "never_contacted_excess"] > 0.05
    assert against.loc["broken", "need_left_behind"]
    assert against.loc["healthy", "never_contacted_excess"] == 0
    assert not against.loc["healthy", "degrading"]


def test_plots_write_deterministic_png(measures, tmp_path):
    first = loop_panels(measures.per_round, measures.cumulative, tmp_path / "a" / "loop.png")
    again = loop_panels(measures.per_round, measures.cumulative, tmp_path / "b" / "loop.png")
    assert first.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and first.stat().st_size > 1000
    assert first.read_bytes() == again.read_bytes()
    fairness = fairness_lines(measures.per_round, tmp_path / "fairness.png")
    assert fairness.stat().st_size > 1000
    line = measure_lines(
        measures.cumulative, "need_found", "Need found (cumulative)", tmp_path / "need.png"
    )
    assert line.stat().st_size > 1000


def test_months_as_text_give_the_same_measures(world, measures):
    run = _oracle()
    truth = run.truth.assign(month=[format_month(int(m)) for m in run.truth["month"]])
    contacts = run.contacts.assign(
        contact_month=[format_month(int(m)) for m in run.contacts["contact_month"]]
    )
    text = loop.loop_measures([PolicyRun("oracle", run.listed, contacts, truth)], world)
    expected = measures.per_round[measures.per_round["policy"] == "oracle"]
    pd.testing.assert_frame_equal(text.per_round, expected.reset_index(drop=True))


def test_unknown_households_and_rounds_are_errors(world):
    listed = pd.DataFrame({"round": [ROUNDS[0]], KEY: ["nobody"], "tier": [VISIT]})
    with pytest.raises(ValueError, match="listed"):
        loop.policy_arrays(PolicyRun("x", listed, _contacts([]), _truth({})), world)
    listed = pd.DataFrame({"round": [ROUNDS[0] + 1], KEY: [_key(0, 0)], "tier": [VISIT]})
    with pytest.raises(ValueError, match="rounds"):
        loop.policy_arrays(PolicyRun("x", listed, _contacts([]), _truth({})), world)


def test_a_round_is_judged_on_the_need_before_its_own_visits(world):
    """A visit that relieves need at once (in the policy world j = 0, 1 are no longer in need in
    the round's months) still found need: the untreated need of the round's months (what the
    advance records) decides need found and precision; hardship averted keeps the policy
    world's months."""
    listed = _listed([(0, 0, VISIT, 0.8, MODEL_SCORE), (0, 1, VISIT, 0.8, MODEL_SCORE)])
    contacts = _contacts([(ROUNDS[0], 0, True), (ROUNDS[0], 1, True)])
    fast = _truth({0: [0, 1], 1: [0, 1], 2: list(range(10)), 3: list(range(5, 10))})
    columns = [2, 3]  # the first round's months, R and R + 1
    untreated = _truth(NONE_SPANS)
    untreated = untreated[untreated["month"].isin([FIRST + c for c in columns])]
    untreated = untreated[[KEY, "month", "in_need"]]
    judged_after = loop.loop_measures([PolicyRun("fast", listed, contacts, fast)], world)
    judged_before = loop.loop_measures(
        [PolicyRun("fast", listed, contacts, fast, untreated=untreated)], world
    )
    assert _values(judged_after.per_round, "fast", "need_found")[0] == 0
    _same(_values(judged_before.per_round, "fast", "need_found")[:1], [6])
    _same(_values(judged_before.per_round, "fast", "precision")[:1], [1])
    for measures in (judged_after, judged_before):
        # none - fast: j = 0, 1 out of need from column 2 on, 3 emd × 2 households × 2 months
        _same(_values(measures.per_round, "fast", "hardship_months_averted")[:1], [12])


def test_runs_can_be_read_one_at_a_time(world, measures):
    """A generator of runs (each read when measured, then let go) gives the same measures."""
    lazy = loop.loop_measures((run() for run in (_rule, _oracle, _none)), world)
    pd.testing.assert_frame_equal(lazy.per_round, measures.per_round)
    pd.testing.assert_frame_equal(lazy.cumulative, measures.cumulative)


def test_the_order_and_string_type_of_the_truth_do_not_change_the_measures(world, measures):
    """The truth is read in partition order, not sorted (read_truth_since), and its keys are
    looked up once per distinct key: shuffled rows with Arrow, object or categorical keys give
    the same measures; a key the world lacks is still an error."""
    run = _oracle()
    shuffled = run.truth.sample(frac=1.0, random_state=7).reset_index(drop=True)
    expected = measures.per_round[measures.per_round["policy"] == "oracle"]
    for dtype in ("string[pyarrow]", object, "category"):
        truth = shuffled.assign(**{KEY: shuffled[KEY].astype(dtype)})
        got = loop.loop_measures([PolicyRun("oracle", run.listed, run.contacts, truth)], world)
        pd.testing.assert_frame_equal(got.per_round, expected.reset_index(drop=True))
    stranger = shuffled.copy()
    stranger.loc[3, KEY] = "nobody"
    with pytest.raises(ValueError, match="truth holds households"):
        loop.need_matrix(stranger.astype({KEY: "string[pyarrow]"}), world)
    missing = shuffled.astype({KEY: "string[pyarrow]"})
    missing.loc[5, KEY] = pd.NA
    with pytest.raises(ValueError, match="truth holds households"):
        loop.need_matrix(missing, world)


def test_a_truth_whose_keys_are_all_missing_is_refused_by_name(world):
    """Every key missing (nothing distinct to look up) is the same one-line error, not an
    IndexError from the empty look-up table."""
    truth = _truth({0: [0]}).astype({KEY: "string[pyarrow]"})
    truth[KEY] = pd.NA
    with pytest.raises(ValueError, match="truth holds households"):
        loop.need_matrix(truth, world)
