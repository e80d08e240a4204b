"""Simulated field work (:mod:`pipeline.simulate.fieldwork`) and the shared visit outcome model
(:mod:`pipeline.visits`).

The unit tests draw on made-up hidden states; the end-to-end test fills in the scored sample's
real lists and call files (a light copy: the round folder and the staged households) and takes
them back through the real ``outreach outcomes import`` and ``import-calls``.
"""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cli_helpers import run_captured
from conftest import ScoredSample, write_config_file

from pipeline.datasets.outcomes import read_round_calls, read_round_outcomes
from pipeline.generate.advance import check_contacts
from pipeline.months import format_month, parse_month
from pipeline.outcomes.normalise import GRACE_MONTHS, RoundFacts
from pipeline.simulate import fieldwork
from pipeline.visits import (
    NOT_RESOLVED,
    OUTCOME_CODES,
    VisitDraws,
    hard_to_reach,
    low_income,
    visit_outcomes,
)
from pipeline.vocabulary import INCOME_BANDS, KEY, PHONE, TENURES, VISIT

# --- the visit outcome model --------------------------------------------------------------------


def _old_generator_draw(
    need: np.ndarray,
    tenure: np.ndarray,
    size: np.ndarray,
    income: np.ndarray,
    round_month: np.ndarray,
    window_end: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A frozen copy of the inline draw of ``_outreach_rounds`` before it moved to
    pipeline.visits (outcome, resolved, unresolved)."""
    m = need.size
    hard = np.isin(tenure, [2, 4]) & (size == 1)
    unreachable_p = np.where(hard, 0.16, 0.07)
    public_share = np.where(income <= 1, 0.62, 0.35)
    u = rng.random(m)
    v = rng.random(m)
    outcome = np.where(
        u < unreachable_p,
        3,
        np.where(
            u < unreachable_p + 0.04,
            4,
            np.where(
                need,
                np.where(v < 0.88, np.where(rng.random(m) < public_share, 0, 1), 2),
                np.where(v < 0.86, 2, np.where(rng.random(m) < 0.3, 0, 1)),
            ),
        ),
    )
    lag = np.searchsorted(np.cumsum([0.3, 0.45, 0.2, 0.05]), rng.random(m), side="right")
    lag = np.minimum(lag, 3)
    resolved = np.where(outcome == 3, round_month + 1, round_month + lag)
    unresolved = (outcome == 4) | (resolved > window_end)
    outcome = np.where(unresolved, 4, outcome)
    return outcome, resolved, unresolved


@pytest.mark.parametrize("seed", [1, 20261126, 7777])
def test_visit_outcomes_equal_the_generators_old_draw(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = 5000
    need = rng.random(m) < 0.4
    tenure = rng.integers(0, len(TENURES), m)
    size = rng.integers(1, 4, m)
    income = rng.integers(0, len(INCOME_BANDS), m)
    round_month = rng.choice(np.arange(24290, 24320, 2), m).astype(np.int32)
    window_end = 24315
    old_outcome, old_resolved, old_unresolved = _old_generator_draw(
        need, tenure, size, income, round_month, window_end, np.random.default_rng(seed + 1)
    )

    new_rng = np.random.default_rng(seed + 1)
    hard = hard_to_reach(tenure, size)
    outcome, resolved = visit_outcomes(
        need, hard, low_income(income), round_month, VisitDraws.draw(new_rng, m)
    )
    unresolved = (outcome == 4) | (resolved > window_end)
    outcome = np.where(unresolved, 4, outcome)
    np.testing.assert_array_equal(outcome, old_outcome)
    np.testing.assert_array_equal(unresolved, old_unresolved)
    np.testing.assert_array_equal(resolved[~unresolved], old_resolved[~old_unresolved])
    assert (resolved[outcome == 4] == NOT_RESOLVED).any() or not (outcome == 4).any()
    # the text levels of the raw table give the same households as the generator's indexes
    text_tenure = np.array(TENURES, dtype=object)[tenure]
    np.testing.assert_array_equal(hard_to_reach(text_tenure, size), hard)
    text_income = np.array(INCOME_BANDS, dtype=object)[income]
    np.testing.assert_array_equal(low_income(text_income), income <= 1)
    assert set(np.unique(outcome)) == set(range(len(OUTCOME_CODES)))


# --- draws with common random numbers -----------------------------------------------------------


def _hidden(n: int, need_share: float = 0.3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            KEY: pd.array([f"H{i:010d}" for i in range(n)], dtype="string"),
            "in_need": rng.random(n) < need_share,
            "hardship": rng.normal(0, 1, n),
            "hard_to_reach": rng.random(n) < 0.1,
            "low_income": rng.random(n) < 0.3,
        }
    )


def test_draws_are_common_random_numbers() -> None:
    hidden = _hidden(400)
    round_month = parse_month("2026-10")
    everyone = fieldwork.draw_visits(hidden[[KEY]], hidden, round_month, seed=11)
    assert list(everyone.columns) == list(fieldwork.VISIT_COLUMNS)
    assert len(everyone) == 400 and everyone[KEY].is_unique
    by_key = everyone.set_index(KEY)

    # each household alone, and a shuffled subset with others: the same answers
    for key in hidden[KEY].iloc[[0, 17, 399]]:
        alone = fieldwork.draw_visits(pd.DataFrame({KEY: [key]}), hidden, round_month, seed=11)
        pd.testing.assert_series_equal(
            alone.set_index(KEY).iloc[0], by_key.loc[key], check_names=False
        )
    subset = hidden.sample(150, random_state=3)[[KEY]]
    some = fieldwork.draw_visits(subset, hidden, round_month, seed=11).set_index(KEY)
    pd.testing.assert_frame_equal(some, by_key.loc[some.index])

    # the same seed and round: identical; another round or seed: other draws
    again = fieldwork.draw_visits(hidden[[KEY]], hidden, round_month, seed=11)
    pd.testing.assert_frame_equal(again, everyone)
    keys = hidden[KEY].tolist()
    same = fieldwork.household_uniforms(keys, 11, round_month)
    assert np.array_equal(same, fieldwork.household_uniforms(keys, 11, round_month))
    assert not np.isclose(same, fieldwork.household_uniforms(keys, 11, round_month + 2)).any()
    assert not np.isclose(same, fieldwork.household_uniforms(keys, 12, round_month)).any()
    later = fieldwork.draw_visits(hidden[[KEY]], hidden, round_month + 2, seed=11)
    assert (later["outcome_code"] != everyone["outcome_code"]).mean() > 0.2
    assert (later["contact_month"] == round_month + 2).all()

    # a household the hidden state lacks: not in need (and still drawn)
    ghost = fieldwork.draw_visits(pd.DataFrame({KEY: ["nobody"]}), hidden, round_month, seed=11)
    assert not ghost["in_need_at_visit"].iloc[0]


def test_shares_of_outcomes_are_those_of_the_model() -> None:
    n = 20000
    hidden = _hidden(2 * n, need_share=0.0)
    hidden["in_need"] = np.arange(2 * n) < n
    hidden["hard_to_reach"] = False
    round_month = parse_month("2026-10")
    visits = fieldwork.draw_visits(hidden[[KEY]], hidden, round_month, seed=5)
    need = visits["in_need_at_visit"].to_numpy()
    code = visits["outcome_code"].astype(str).to_numpy()
    support = np.isin(code, ["public_support", "private_support"])
    assert abs((code == "unreachable").mean() - 0.07) < 0.008
    assert abs((code == "in_progress").mean() - 0.04) < 0.006
    assert (~visits["reached"]).sum() == (code == "unreachable").sum()
    answered = ~np.isin(code, ["unreachable", "in_progress"])
    assert abs(support[need & answered].mean() - 0.88) < 0.015
    assert abs((code[~need & answered] == "closed_no_need").mean() - 0.86) < 0.015
    # the resolved month: in progress none, unreachable the month after, else 0..3 months
    resolved = visits["resolved_month"].to_numpy()
    assert (resolved[code == "in_progress"] == NOT_RESOLVED).all()
    assert (resolved[code == "unreachable"] == round_month + 1).all()
    lag = resolved[answered] - round_month
    shares = np.bincount(lag, minlength=4) / lag.size
    np.testing.assert_allclose(shares, [0.3, 0.45, 0.2, 0.05], atol=0.015)
    days = visits["contact_day"].to_numpy()
    assert days.min() == 1 and days.max() == 28

    # hard to reach: 16% unreachable
    hidden["hard_to_reach"] = True
    hard = fieldwork.draw_visits(hidden[[KEY]], hidden, round_month, seed=5)
    assert abs((hard["outcome_code"] == "unreachable").mean() - 0.16) < 0.01


def test_answers_as_the_field_work_stands() -> None:
    assert fieldwork.ANSWER_GRACE_MONTHS == GRACE_MONTHS  # the importer's rule, kept equal
    r = parse_month("2026-10")
    visits = pd.DataFrame(
        {
            KEY: ["a", "b", "c", "d", "e"],
            "outcome_code": [
                "public_support",
                "closed_no_need",
                "in_progress",
                "private_support",
                "unreachable",
            ],
            "contact_month": [r, r, r, r, r],
            "contact_day": [3, 28, 9, 15, 1],
            "resolved_month": [r, r + 2, NOT_RESOLVED, r + 3, r + 1],
            "reached": [True, True, True, True, False],
            "in_need_at_visit": [True, False, True, True, False],
        }
    )
    early = fieldwork.answers_at(visits, r, through=r, interval_months=2).set_index(KEY)
    assert early.loc["a", "outcome_code"] == "public_support"
    assert early.loc["a", "contact_date"] == date(2026, 10, 3)
    assert (early.loc[["b", "c", "d", "e"], "outcome_code"] == "in_progress").all()
    assert early.loc[["b", "c", "d", "e"], "contact_date"].isna().all()

    late = fieldwork.answers_at(visits, r, through=r + 3, interval_months=2).set_index(KEY)
    assert late.loc["b", "contact_date"] == date(2026, 12, 28)
    assert late.loc["c", "outcome_code"] == "in_progress"
    assert late.loc["e", "contact_date"] == date(2026, 11, 1)
    # resolved in 2027-01, after the import's last day: sent with that day
    facts = RoundFacts(
        "2026-10", 2, pd.DataFrame(), pd.DataFrame(), {}, (), frozenset(), {}, frozenset()
    )
    assert late.loc["d", "contact_date"] == facts.last_day == date(2026, 12, 31)
    assert late.loc["d", "outcome_code"] == "private_support"
    none = fieldwork.answers_at(visits, r, through=r - 1, interval_months=2)
    assert none.empty  # nobody visited yet


def test_contacts_for_advance_keeps_resolved_answers_only(outcome_catalogue) -> None:
    store = pd.DataFrame(
        {
            KEY: ["a", "b", "c", "d", "a"],
            "outcome_code": [
                "public_support",
                "in_progress",
                "unreachable",
                None,
                "public_support",
            ],
            "contact_date": [date(2026, 10, 3), None, date(2026, 11, 30), None, date(2026, 10, 3)],
            "resolved_month": ["2026-10", None, "2026-11", None, "2026-10"],
        }
    )
    contacts = fieldwork.contacts_for_advance(store)
    assert contacts.to_dict("records") == [
        {KEY: "a", "contact_month": "2026-10", "outcome_code": "public_support"},
        {KEY: "c", "contact_month": "2026-11", "outcome_code": "unreachable"},
    ]
    checked = check_contacts(contacts, outcome_catalogue.codes)
    assert checked["contact_month"].tolist() == [parse_month("2026-10"), parse_month("2026-11")]
    assert fieldwork.contacts_for_advance(store.iloc[:0]).columns.tolist() == list(
        fieldwork.CONTACT_COLUMNS
    )


# --- end to end: the real lists through the real imports ----------------------------------------


def _light(scored: ScoredSample, tmp_path: Path):
    out = tmp_path / "outputs"
    source = scored.config.paths.output_root
    shutil.copytree(scored.round_dir, out / "rounds" / scored.as_of)
    shutil.copytree(source / "staged" / "households", out / "staged" / "households")
    config = scored.config.with_overrides(paths={"output_root": str(out)})
    return config, write_config_file(config, tmp_path / "config.yaml")


def _imported(config_file: Path, command: str, files: list[Path]) -> str:
    """Run the real import on ``files``; every file read, no row rejected."""
    code, out, err = run_captured(config_file, "outcomes", command, *map(str, files))
    assert code == 0, err + out
    rejected = re.findall(r"(\d+) rejected", out)
    assert len(rejected) == len(files) and set(rejected) == {"0"}, out
    return out


def test_returned_lists_and_calls_go_through_the_real_imports(
    scored_sample: ScoredSample, tmp_path: Path
) -> None:
    config, config_file = _light(scored_sample, tmp_path)
    round_month = parse_month(scored_sample.as_of)
    scores = pd.read_parquet(
        config.paths.output_root / "rounds" / scored_sample.as_of / "scores.parquet"
    )
    hidden = fieldwork.hidden_state(config, round_month - 1)
    assert list(hidden.columns[:5]) == list(fieldwork.HIDDEN_COLUMNS)
    assert hidden[KEY].is_unique and len(hidden) == 20000
    assert 0 < hidden["in_need"].mean() < 0.2 and hidden["hard_to_reach"].any()

    visit_tier = scores.loc[scores["tier"] == VISIT, [KEY]]
    visits = fieldwork.draw_visits(visit_tier, hidden, round_month, seed=3)
    assert len(visits) == len(visit_tier) > 50
    # the visited households are the listed ones, so in need far more often than the world
    assert visits["in_need_at_visit"].mean() > 3 * hidden["in_need"].mean()

    # 1. at the end of the round's first month: some answers final, the rest in progress
    first = fieldwork.write_returned_lists(
        config, round_month, visits, tmp_path / "returned" / "1", through=round_month
    )
    assert first and all(p.suffix == ".csv" for p in first)
    _imported(config_file, "import", first)
    stored = read_round_outcomes(config, scored_sample.as_of).set_index(KEY)
    assert set(stored.index) == set(visits[KEY])  # one row per answered household
    expected = fieldwork.answers_at(
        visits, round_month, through=round_month, interval_months=2
    ).set_index(KEY)
    assert (stored["outcome_code"] == expected["outcome_code"].reindex(stored.index)).all()
    pending = stored["outcome_code"] == "in_progress"
    assert pending.any() and (~pending).any()
    assert stored.loc[pending, "contact_date"].isna().all()
    assert set(stored["selection_reason"].dropna()) <= {
        "model_score",
        "random_exploration",
        "carried_over",
    }

    # 2. three months later: every answer final but the drawn in_progress; re-imported
    later = round_month + 3
    second = fieldwork.write_returned_lists(
        config, round_month, visits, tmp_path / "returned" / "2", through=later
    )
    _imported(config_file, "import", second)
    stored = read_round_outcomes(config, scored_sample.as_of).set_index(KEY)
    drawn = visits.set_index(KEY).reindex(stored.index)
    assert (stored["outcome_code"] == drawn["outcome_code"]).all()
    final = drawn["outcome_code"] != "in_progress"
    last = fieldwork.last_answer_month(round_month, 2)
    want_month = np.minimum(drawn.loc[final, "resolved_month"], last)
    assert stored.loc[final, "resolved_month"].tolist() == [format_month(m) for m in want_month]
    assert stored.loc[~final, "resolved_month"].isna().all()
    assert (stored.loc[pending & final, "outcome_code"] != "in_progress").all()

    # codes instead of names are taken alike (nothing new)
    codes = fieldwork.write_returned_lists(
        config, round_month, visits, tmp_path / "returned" / "3", through=later, names=False
    )
    assert "nothing new" in _imported(config_file, "import", codes)

    contacts = fieldwork.contacts_for_advance(read_round_outcomes(config, scored_sample.as_of))
    assert len(contacts) == int(final.sum())

    # 3. the phone tier through the call service's import (drawn here: the visits lack it)
    phone = scores.loc[scores["tier"] == PHONE, KEY].astype(str)
    calls = fieldwork.write_call_results(
        config, round_month, visits, tmp_path / "calls", through=round_month, hidden=hidden, seed=3
    )
    assert calls
    _imported(config_file, "import-calls", calls)
    results = read_round_calls(config, scored_sample.as_of).set_index(KEY)
    assert set(results.index) == set(phone)
    called = fieldwork.draw_visits(phone.to_frame(), hidden, round_month, seed=3).set_index(KEY)
    want = np.where(
        ~called["reached"],
        "not_reached",
        np.where(called["in_need_at_visit"], "needs_visit", "reached"),
    )
    assert (results["call_result"].reindex(called.index).to_numpy() == want).all()


def test_the_visits_find_the_need_of_the_rounds_months_before_the_visits():
    """The field work's need is in need at R or R + 1 of the untreated need (the label of the
    generator's history), not the state when the list was made; a household it lacks is not in
    need."""
    round_month = 2027 * 12
    hidden = pd.DataFrame(
        {
            KEY: ["a", "b", "c", "d"],
            "in_need": [True, True, False, False],
            "hardship": [3.0, 3.0, 0.0, 0.0],
            "hard_to_reach": False,
            "low_income": False,
            "emd_code": "E",
        }
    )
    untreated = pd.DataFrame(
        {
            KEY: ["a", "a", "b", "b", "c", "c"],
            "month": [round_month, round_month + 1] * 3,
            "in_need": [False, False, False, True, True, False],
        }
    )
    judged = fieldwork.with_round_need(hidden, untreated, round_month)
    assert judged["in_need"].tolist() == [False, True, True, False]
    assert judged.drop(columns="in_need").equals(hidden.drop(columns="in_need"))


def test_a_linked_visit_records_a_service_of_its_need_and_the_other_draws_stay():
    from pathlib import Path as _Path

    from conftest import REPO_ROOT

    from pipeline.catalogue import load_services
    from pipeline.vocabulary import NEED_TYPES

    services = load_services(_Path(REPO_ROOT / "configs" / "services.yaml")).services
    rng = np.random.default_rng(3)
    n = 2000
    hidden = _hidden(n, need_share=0.6).assign(
        need_type=pd.array(rng.choice(list(NEED_TYPES), n), dtype="string"),
        income_index=rng.integers(0, 3, n),
        head_age=rng.integers(30, 90, n),
        minors=rng.integers(0, 2, n),
        disability=rng.random(n) < 0.2,
    )
    round_month = parse_month("2026-10")
    plain = fieldwork.draw_visits(hidden[[KEY]], hidden, round_month, seed=5)
    linked = fieldwork.draw_visits(hidden[[KEY]], hidden, round_month, seed=5, services=services)
    others = [c for c in fieldwork.VISIT_COLUMNS if c != "service_code"]
    pd.testing.assert_frame_equal(plain[others], linked[others])  # a stream of its own
    assert plain["service_code"].isna().all()
    support = linked["outcome_code"].isin(["public_support", "private_support"]).to_numpy()
    assert linked.loc[~support, "service_code"].isna().all()
    assert linked.loc[support, "service_code"].notna().mean() > 0.9
    by_code = {s.code: s for s in services}
    need = hidden.set_index(KEY).loc[linked[KEY], "need_type"].to_numpy()
    chosen = linked["service_code"].to_numpy()
    fits = [
        by_code[c].outcome == o and (n_ in by_code[c].need_types)
        for c, o, n_ in zip(chosen, linked["outcome_code"], need, strict=True)
        if isinstance(c, str)
    ]
    assert 0.7 < np.mean(fits) < 0.95  # mostly a service of the household's need (85%)
