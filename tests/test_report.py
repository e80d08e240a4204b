"""``outreach report``: the administrators' review report of a round (static HTML, offline).

Unit tests use small hand-made frames (the "<5" rule, PSI on known distributions, realised
precision and calibration on a hand-made outcomes frame). The end-to-end tests run the CLI on a
private copy of the session's scored sample (``scored_sample``), once as scored (no previous
round, no outcomes) and once with a previous round and imported outcomes added by the test, and
open the pages in a real headless Chromium (Debian's ``/usr/bin/chromium`` driven by
playwright; no browser download, no network).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _browser import launched_chromium, screenshot
from _ingest_leak import assert_no_identifiers, collect_identifiers
from conftest import REPO_ROOT, copy_outputs, make_config

from pipeline.catalogue import load_outcomes
from pipeline.cli import STAGES, main
from pipeline.datasets import rounds
from pipeline.datasets.staged import read_capacity_table
from pipeline.io import sha256_file, sha256_tree
from pipeline.months import format_month, parse_month
from pipeline.report import aggregates as agg
from pipeline.report import pages
from pipeline.report.render import render_report  # noqa: F401  (the module imports cleanly)

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
)


# --- hand-made frames ------------------------------------------------------------------------


def _scores(rows: list[tuple]) -> pd.DataFrame:
    """scores.parquet-like rows: (key, sigungu, emd, score, tier, selection, reason_1)."""
    frame = pd.DataFrame(
        rows,
        columns=[
            "household_key",
            "sigungu_code",
            "emd_code",
            "score",
            "tier",
            "selection_reason",
            "reason_1",
        ],
    )
    frame["model_rank"] = frame.groupby("emd_code")["score"].rank(ascending=False).astype(int)
    listed = frame["tier"] != "monitor"
    frame["list_rank"] = np.where(listed, frame["model_rank"], np.nan)
    frame["selection_probability"] = np.where(
        frame["selection_reason"] == "random_exploration", 0.25, 1.0
    )
    frame["reason_1_text"] = frame["reason_1"]
    frame["reason_2"] = pd.Series([None] * len(frame), dtype="string")
    frame["reason_2_text"] = frame["reason_2"]
    return frame


# --- the small-count rule --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"), [(0, "<5"), (1, "<5"), (4, "<5"), (5, "5"), (12345, "12,345")]
)
def test_counts_under_five_are_shown_as_less_than_five(value, shown):
    assert pages.count(value, 5) == shown


def test_a_share_of_a_small_count_is_not_shown():
    assert pages.masked_percent(3 / 200, 3, 200, threshold=5) == pages.DASH
    assert pages.masked_percent(30 / 200, 30, 200, threshold=5) == "15.0%"
    assert pages.percent(float("nan")) == pages.DASH


def test_overview_rows_mask_small_counts_but_not_capacity():
    scores = _scores(
        [
            (f"H{i:03d}", "11", "1101", 0.9 - i / 100, "visit", "model_score", "multi")
            for i in range(6)
        ]
        + [("H100", "11", "1101", 0.3, "visit", "random_exploration", "multi")]
        + [(f"H2{i:02d}", "11", "1102", 0.8, "visit", "model_score", "multi") for i in range(3)]
        + [(f"H3{i:02d}", "11", "1102", 0.1, "monitor", "model_score", None) for i in range(40)]
    )
    capacity = pd.DataFrame(
        {"emd_code": ["1101", "1102"], "sigungu_code": ["11", "11"], "capacity_per_round": [7, 3]}
    )
    districts = agg.district_table(scores, capacity)
    rows = {r["emd_code"]: r for r in pages.district_rows(districts, {"1101": "가동"}, 5)}
    assert rows["1101"]["visit"] == "7" and rows["1101"]["explored"] == "<5"
    assert rows["1101"]["fill"] == "100%"
    assert rows["1102"]["visit"] == "<5" and rows["1102"]["fill"] == pages.DASH
    assert rows["1102"]["capacity"] == "3"  # a capacity is not a count of households
    assert rows["1102"]["scored"] == "43"
    assert rows["1101"]["emd_name"] == "가동"
    tiers = {r["tier"]: r for r in pages.tier_rows(agg.tier_table(scores), 5)}
    assert tiers[pages.TIER_PART_KO["visit_exploration"]]["households"] == "<5"
    assert tiers[pages.TIER_PART_KO["visit_exploration"]]["share"] == pages.DASH


def test_fairness_shares_and_ratio_with_small_groups_masked():
    scores = _scores(
        [(f"H{i:03d}", "11", "1101", 0.5, "visit", "model_score", "multi") for i in range(20)]
        + [(f"M{i:03d}", "11", "1101", 0.1, "monitor", "model_score", None) for i in range(80)]
    )
    keys = scores["household_key"].tolist()
    features = pd.DataFrame(
        {
            "household_key": keys,
            # listed: 16 women, 4 men; monitored: 24 women, 56 men
            "audit__head_sex": ["F"] * 16 + ["M"] * 4 + ["F"] * 24 + ["M"] * 56,
            "audit__head_age_band": ["50_64"] * 100,
            "hh__disabled_members": [0] * 100,
            "hh__size": [2] * 100,
            "hh__tenure": ["own"] * 100,
            "hh__urban": [1] * 100,
        }
    )
    table = agg.fairness_table(scores, features)
    sex = table[table["attribute"] == "head_sex"].set_index("group")
    assert sex.loc["F", "eligible"] == 40 and sex.loc["F", "listed"] == 16
    assert sex.loc["F", "eligible_share"] == pytest.approx(0.4)
    assert sex.loc["F", "listed_share"] == pytest.approx(0.8)
    assert sex.loc["F", "ratio"] == pytest.approx(2.0)
    for attribute, part in table.groupby("attribute"):
        assert part["eligible_share"].sum() == pytest.approx(1.0), attribute
    rows = pages.fairness_rows(table, (0.8, 1.25), 5)
    men = next(r for r in rows if r["attribute"] == "가구주 성별" and r["group"] == "남성")
    assert men["listed"] == "<5" and men["listed_share"] == pages.DASH
    assert men["ratio"] == pages.DASH
    women = next(r for r in rows if r["group"] == "여성")
    assert women["ratio"] == "2.00" and women["outside"]


def test_reason_table_counts_households_not_mentions():
    scores = _scores(
        [
            ("H1", "11", "1101", 0.9, "visit", "model_score", "multi"),
            ("H2", "11", "1101", 0.8, "visit", "model_score", "ind:gas_cut"),
            ("H3", "11", "1101", 0.7, "phone", "model_score", "multi"),
            ("H4", "11", "1101", 0.1, "monitor", "model_score", None),
        ]
    )
    scores["reason_2"] = pd.Series(["ind:gas_cut", "multi", None, None], dtype="string")
    table = agg.reason_table(scores).set_index("unit")
    assert table.loc["multi", "first"] == 2 and table.loc["multi", "any"] == 3
    assert table.loc["ind:gas_cut", "first"] == 1 and table.loc["ind:gas_cut", "any"] == 2


def test_listed_change_per_sigungu_and_total():
    previous = _scores(
        [
            ("A", "11", "1101", 0.9, "visit", "model_score", "multi"),
            ("B", "12", "1201", 0.9, "phone", "model_score", "multi"),
        ]
    )
    current = _scores(
        [
            ("A", "11", "1101", 0.9, "visit", "model_score", "multi"),
            ("C", "11", "1101", 0.8, "phone", "model_score", "multi"),
            ("B", "12", "1201", 0.2, "monitor", "model_score", None),
        ]
    )
    change = agg.listed_change(current, previous).set_index("sigungu_code")
    assert change.loc["11", "listed_change"] == 1 and change.loc["12", "listed_change"] == -1
    assert change.loc["total", "listed_previous"] == 2
    assert change.loc["total", "listed_current"] == 2


# --- PSI and the leading features ------------------------------------------------------------


def test_psi_of_identical_samples_is_zero():
    values = pd.Series(np.arange(1000, dtype=float))
    assert agg.psi(values, values.sample(frac=1.0, random_state=1)) == pytest.approx(0.0)


def test_psi_of_known_categorical_distributions():
    expected = pd.Series(["a"] * 50 + ["b"] * 50)
    actual = pd.Series(["a"] * 90 + ["b"] * 10)
    want = (0.9 - 0.5) * math.log(0.9 / 0.5) + (0.1 - 0.5) * math.log(0.1 / 0.5)
    assert agg.psi(expected, actual) == pytest.approx(want)
    assert want == pytest.approx(0.8789, abs=1e-4)


def test_psi_of_numeric_values_uses_the_previous_deciles():
    expected = pd.Series(np.arange(1000, dtype=float))  # ten bins of 10% each
    actual = pd.Series(np.arange(500, dtype=float))  # the lower five bins only, 20% each
    floor = 1e-4
    want = 5 * (0.2 - 0.1) * math.log(0.2 / 0.1) + 5 * (floor - 0.1) * math.log(floor / 0.1)
    assert agg.psi(expected, actual, bins=10, floor=floor) == pytest.approx(want)


def test_psi_counts_missing_values_in_their_own_bin():
    expected = pd.Series([1.0, 2.0, 3.0, 4.0] * 25)
    actual = pd.Series([1.0, 2.0, np.nan, np.nan] * 25)
    assert agg.psi(expected, actual) > 1.0


def test_psi_table_flags_a_shift_above_the_threshold():
    rng = np.random.default_rng(3)
    previous = pd.DataFrame({"x": rng.normal(0, 1, 5000), "y": rng.normal(0, 1, 5000)})
    current = pd.DataFrame({"x": rng.normal(0, 1, 5000), "y": rng.normal(1, 1, 5000)})
    table = agg.psi_table(current, previous, ["x", "y"], bins=10, threshold=0.2).set_index(
        "feature"
    )
    assert table.loc["x", "psi"] < 0.02 and not table.loc["x", "shifted"]
    assert table.loc["y", "psi"] > 0.5 and table.loc["y", "shifted"]
    assert list(table["rank"]) == [1, 2]


def _psi_reference(expected: pd.Series, actual: pd.Series, bins: int = 10) -> float:
    """PSI as the report computed it from whole columns before it counted values (kept here as
    the reference the counts must reproduce)."""
    numeric = pd.api.types.is_numeric_dtype(expected) and pd.api.types.is_numeric_dtype(actual)
    if numeric and expected.nunique(dropna=True) > bins:
        e = expected.to_numpy(dtype=np.float64, na_value=np.nan)
        a = actual.to_numpy(dtype=np.float64, na_value=np.nan)
        edges = np.unique(np.nanquantile(e, np.linspace(0.0, 1.0, bins + 1)[1:-1]))

        def codes(x: np.ndarray) -> np.ndarray:
            return np.where(np.isnan(x), len(edges) + 1, np.searchsorted(edges, x, side="left"))

        e_counts = np.bincount(codes(e), minlength=len(edges) + 2)
        a_counts = np.bincount(codes(a), minlength=len(edges) + 2)
    else:
        e_text = expected.astype("string").fillna("<NA>")
        a_text = actual.astype("string").fillna("<NA>")
        categories = sorted(set(e_text.unique()) | set(a_text.unique()))
        e_counts = e_text.value_counts().reindex(categories, fill_value=0).to_numpy()
        a_counts = a_text.value_counts().reindex(categories, fill_value=0).to_numpy()
    e_share = np.maximum(e_counts / e_counts.sum(), 1e-4)
    a_share = np.maximum(a_counts / a_counts.sum(), 1e-4)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


@pytest.mark.parametrize("seed", range(6))
def test_quantiles_from_value_counts_are_numpys_to_the_bit(seed):
    rng = np.random.default_rng(seed)
    values = np.round(rng.gamma(1.5, 3.0, 3000), int(rng.integers(0, 3))).astype(np.float32)
    values[rng.random(len(values)) < 0.1] = np.nan
    probs = np.linspace(0.0, 1.0, 11)[1:-1]
    parts = [agg.value_counts(pd.Series(p)) for p in np.array_split(values, 4)]
    counts = agg.combine_value_counts(parts)
    whole = values.astype(np.float64)
    assert np.array_equal(agg.quantiles(counts, probs), np.nanquantile(whole, probs))
    assert counts.missing == int(np.isnan(whole).sum()) and not counts.merged
    # pandas adds float32 values in float32; the counts add them in float64, then round
    assert counts.mean == pytest.approx(float(pd.Series(values).mean()), rel=1e-6)


def test_psi_from_partition_counts_equals_the_whole_columns():
    rng = np.random.default_rng(7)
    previous = pd.DataFrame(
        {
            "amount": np.round(rng.lognormal(8, 1, 4000), -2).astype(np.float32),
            "size": rng.integers(1, 7, 4000).astype(np.int8),
            "tenure": pd.Series(rng.choice(["own", "jeonse", "monthly_rent", None], 4000)),
        }
    )
    current = previous.sample(frac=1.0, random_state=2).reset_index(drop=True)
    current["amount"] = (current["amount"] * 2).astype(np.float32)
    columns = ["amount", "size", "tenure"]

    def counts(frame: pd.DataFrame) -> dict[str, agg.ValueCounts]:
        parts = np.array_split(np.arange(len(frame)), 3)
        return {
            c: agg.combine_value_counts([agg.value_counts(frame[c].iloc[i]) for i in parts])
            for c in columns
        }

    table = agg.psi_table_from_counts(
        counts(current), counts(previous), columns, bins=10, threshold=0.2
    ).set_index("feature")
    for c in columns:
        assert table.loc[c, "psi"] == _psi_reference(previous[c], current[c]), c
    assert table.loc["amount", "shifted"] and not table.loc["size", "shifted"]
    assert not table["merged"].any()


def test_value_counts_beyond_the_cap_are_merged_and_flagged():
    rng = np.random.default_rng(11)
    x = rng.normal(size=50_000)
    parts = [agg.value_counts(pd.Series(p), cap=1_000) for p in np.array_split(x, 5)]
    combined = agg.combine_value_counts(parts, cap=2_000)
    assert combined.merged and len(combined.values) <= 2_000 and combined.present == len(x)
    assert combined.distinct > 2_000
    assert combined.mean == pytest.approx(x.mean(), abs=1e-12)
    probs = np.linspace(0.0, 1.0, 11)[1:-1]
    ordered = np.sort(x)
    exact = np.searchsorted(ordered, np.quantile(x, probs))
    approx = np.searchsorted(ordered, agg.quantiles(combined, probs))
    assert np.abs(exact - approx).max() <= len(x) * (1 / 1_000 + 1 / 2_000)
    shifted = pd.Series(x[:20_000] + 0.5)
    merged = agg.psi_from_counts(combined, agg.value_counts(shifted, cap=1_000))
    assert merged == pytest.approx(_psi_reference(pd.Series(x), shifted), rel=0.02)
    table = agg.psi_table_from_counts(
        {"x": agg.value_counts(shifted)}, {"x": combined}, ["x"], bins=10, threshold=0.2
    )
    assert pages.psi_rows(table, {})[0]["merged"]  # the page marks the feature


def test_leading_features_from_the_importance_of_either_model():
    available = ["a__count_3m", "hh__tenure", "hh__size", "b__max_12m"]
    lightgbm = pd.Series({"b__max_12m": 5.0, "hh__size": 9.0, "a__count_3m": 1.0})
    assert agg.leading_from_importance(lightgbm, available, 2) == ["hh__size", "b__max_12m"]
    logistic = pd.Series(
        {
            "cat__hh__tenure_monthly_rent": 3.0,
            "num__a__count_3m": 2.0,
            "cat__hh__tenure_own": 1.5,
            "num__missingindicator_b__max_12m": 0.5,
        }
    )
    assert agg.leading_from_importance(logistic, available, 5) == ["hh__tenure", "a__count_3m"]


def test_leading_features_fall_back_to_the_reasons_named_most():
    scores = _scores(
        [
            ("H1", "11", "1101", 0.9, "visit", "model_score", "ind:gas_cut"),
            ("H2", "11", "1101", 0.8, "visit", "model_score", "ind:gas_cut"),
            ("H3", "11", "1101", 0.7, "phone", "model_score", "multi"),
        ]
    )
    available = ["gas_cut__count_12m", "distinct_types__3m"]
    assert agg.leading_from_reasons(scores, available, 5) == available


# --- follow-up: realised precision and calibration -------------------------------------------


def _outcome_rows(answers: dict[str, str], added: tuple[str, ...] = ()) -> pd.DataFrame:
    keys = [*answers, *added]
    return pd.DataFrame(
        {
            "household_key": keys,
            "outcome_code": [*answers.values(), *["public_support"] * len(added)],
            "added_by_caseworker": [False] * len(answers) + [True] * len(added),
        }
    )


def test_realised_precision_and_calibration_on_hand_made_outcomes(outcome_catalogue):
    visits = [
        (f"V{i}", "11", "1101", 0.9 - i / 20, "visit", "model_score", "multi") for i in range(8)
    ]
    explored = [("X0", "11", "1101", 0.2, "visit", "random_exploration", "multi")]
    phones = [(f"P{i}", "12", "1201", 0.4, "phone", "model_score", "multi") for i in range(4)]
    monitored = [("M0", "12", "1201", 0.1, "monitor", "model_score", None)]
    scores = _scores(visits + explored + phones + monitored)
    answers = {
        "V0": "public_support",
        "V1": "private_support",
        "V2": "closed_no_need",
        "V3": "public_support",
        "V4": "unreachable",  # no label
        "V5": "in_progress",  # no label
        "V6": "closed_no_need",
        # V7 did not come back
        "X0": "private_support",
        "P0": "closed_no_need",
        "P1": "public_support",
        "P2": "made_up_code",  # unknown: no label
    }
    outcomes = _outcome_rows(answers, added=("M0",))
    outcomes.loc[len(outcomes)] = ["ZZ", "closed_no_need", False]  # not in the round at all
    follow = agg.followup_tables(scores, outcomes, outcome_catalogue.label_of(), bins=2)
    summary = follow.summary.set_index("part")
    model = summary.loc["visit_model"]
    assert (model["listed"], model["returned"], model["labelled"], model["positives"]) == (
        8,
        7,
        5,
        3,
    )
    assert model["precision"] == pytest.approx(3 / 5)
    assert model["mean_score"] == pytest.approx(np.mean([0.9, 0.85, 0.8, 0.75, 0.6]))
    assert summary.loc["visit_exploration", "precision"] == pytest.approx(1.0)
    assert summary.loc["phone", "labelled"] == 2 and summary.loc["phone", "positives"] == 1
    whole = summary.loc["list"]
    assert (whole["listed"], whole["labelled"], whole["positives"]) == (13, 8, 5)
    assert follow.added == {"returned": 2, "labelled": 2, "positives": 1}
    assert follow.unmatched == 1
    per = follow.sigungu.set_index("sigungu_code")
    assert per.loc["11", "precision"] == pytest.approx(4 / 6)
    assert per.loc["12", "precision"] == pytest.approx(1 / 2)
    cal = follow.calibration
    assert list(cal["n"]) == [4, 4] and cal["n"].sum() == whole["labelled"]
    low = sorted([0.2, 0.4, 0.4, 0.6, 0.75, 0.8, 0.85, 0.9])[:4]
    assert cal.loc[0, "mean_score"] == pytest.approx(np.mean(low))
    assert cal.loc[0, "realised"] == pytest.approx(2 / 4)  # X0 1, P0 0, P1 1, V6 0
    assert cal.loc[1, "realised"] == pytest.approx(3 / 4)  # V3 1, V2 0, V1 1, V0 1
    want = (abs(np.mean(low) - 0.5) + abs(np.mean([0.75, 0.8, 0.85, 0.9]) - 0.75)) / 2
    assert follow.ece == pytest.approx(want)
    rows = pages.followup_summary_rows(follow, 5)
    assert rows[0]["precision"] == pages.DASH  # 3 positives: under five, not shown
    assert rows[0]["labelled"] == "5"
    # The report reads the listed rows only, and which answered households were scored.
    scored = set(scores["household_key"]) & set(outcomes["household_key"])
    lean = agg.followup_tables(
        agg.listed_rows(scores), outcomes, outcome_catalogue.label_of(), bins=2, scored=scored
    )
    pd.testing.assert_frame_equal(lean.summary, follow.summary)
    pd.testing.assert_frame_equal(lean.calibration, follow.calibration)
    assert (lean.unmatched, lean.added) == (follow.unmatched, follow.added)


# --- end to end: the CLI on a copy of the scored sample --------------------------------------


def _run(config_file: Path, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--no-progress", "--config", str(config_file), *args])
    return code, out.getvalue() + err.getvalue()


def _write_outcomes(config, scores: pd.DataFrame, label: str) -> pd.DataFrame:
    """Outcomes of a round in the store's contract, drawn by the test (never from the truth)."""
    from pipeline.datasets.outcomes import round_outcomes_file

    rng = np.random.default_rng(20261126)
    listed = scores[scores["tier"].isin(["visit", "phone"])].reset_index(drop=True)
    listed = listed[rng.random(len(listed)) > 0.1].reset_index(drop=True)  # 10% not back yet
    need = rng.random(len(listed)) < listed["score"].to_numpy()
    code = np.where(
        need, np.where(rng.random(len(listed)) < 0.3, "public_support", "private_support"), ""
    )
    code = np.where(need, code, "closed_no_need")
    draw = rng.random(len(listed))
    code = np.where(draw < 0.08, "unreachable", np.where(draw < 0.12, "in_progress", code))
    added = scores[scores["tier"] == "monitor"].head(2)
    frame = pd.DataFrame(
        {
            "household_key": [*listed["household_key"], *added["household_key"]],
            "sigungu_code": [*listed["sigungu_code"], *added["sigungu_code"]],
            "emd_code": [*listed["emd_code"], *added["emd_code"]],
            "round": label,
            "outcome_code": [*code, "public_support", "closed_no_need"],
            "added_by_caseworker": [False] * len(listed) + [True] * len(added),
            "selection_reason": [
                *listed["selection_reason"],
                "local_discretion",
                "local_discretion",
            ],
            "selection_probability": [*listed["selection_probability"], 1.0, 1.0],
            "source_file_sha256": "0" * 64,
        }
    )
    resolved = frame["outcome_code"] != "in_progress"
    day = dt.date(int(label[:4]), int(label[5:]), 20)
    frame["contact_date"] = [day if r else None for r in resolved]
    frame["resolved_month"] = [label if r else None for r in resolved]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.cast(
        pa.schema(
            [(f.name, pa.date32() if f.name == "contact_date" else f.type) for f in table.schema]
        )
    )
    path = round_outcomes_file(config, label)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return frame


def _fake_previous_round(copy, leading: str) -> str:
    """A previous round made from this one: 3 fewer listed in one 시군구, and a feature folder in
    which the leading feature moved (so its PSI is flagged)."""
    config = copy.config
    root = config.paths.output_root
    previous = format_month(parse_month(copy.as_of) - config.window.round_interval_months)
    folder = root / "rounds" / previous
    shutil.copytree(copy.round_dir, folder, ignore=shutil.ignore_patterns("report"))
    scores = pd.read_parquet(folder / "scores.parquet")
    sigungu = sorted(scores["sigungu_code"].unique())[0]
    phone = scores.index[(scores["tier"] == "phone") & (scores["sigungu_code"] == sigungu)][:3]
    scores.loc[phone, "tier"] = "monitor"
    scores.to_parquet(folder / "scores.parquet", index=False)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    current_features = root / manifest["features"]["folder"]
    moved = root / "features" / f"as_of={previous}-report-test"
    shutil.copytree(current_features, moved)
    for part in sorted((moved / "features").glob("sigungu=*/part-0.parquet")):
        frame = pd.read_parquet(part)
        frame[leading] = (frame[leading].astype("float64") + 3).astype(frame[leading].dtype)
        frame.to_parquet(part, index=False)
    manifest["round"] = previous
    manifest["features"]["folder"] = moved.relative_to(root).as_posix()
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return previous


@pytest.fixture(scope="module")
def reported(scored_sample, tmp_path_factory):
    """The report of a copy of the scored sample: first as scored, then with a previous round
    and imported outcomes. Returns a dict of what the tests need."""
    tmp = tmp_path_factory.mktemp("report")
    copy = copy_outputs(scored_sample, tmp)
    manifest = copy.round_dir / "manifest.json"
    manifest_sha = sha256_file(manifest)
    code, first_output = _run(copy.config_file, "report", "--as-of", copy.as_of)
    assert code == 0, first_output
    first = tmp / "first_report"
    shutil.copytree(copy.round_dir / "report", first)
    record = json.loads((first / "report.json").read_text(encoding="utf-8"))
    sample = pd.read_parquet(
        next(
            (copy.config.paths.output_root / "features").glob(
                f"as_of={copy.as_of}/features/sigungu=*/part-0.parquet"
            )
        )
    )
    leading = next(
        f for f in record["leading_features"]["features"] if pd.api.types.is_float_dtype(sample[f])
    )
    scores = pd.read_parquet(copy.round_dir / "scores.parquet")
    previous = _fake_previous_round(copy, leading)
    outcomes = _write_outcomes(copy.config, scores, copy.as_of)
    code, second_output = _run(copy.config_file, "report")  # default round: the scored one
    assert code == 0, second_output
    return {
        "copy": copy,
        "first": first,
        "report": copy.round_dir / "report",
        "manifest_sha": manifest_sha,
        "scores": scores,
        "outcomes": outcomes,
        "previous": previous,
        "leading": leading,
        "output": first_output + second_output,
    }


def _fairness_reference(scores: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """The fairness snapshot as the report computed it from whole frames before it counted
    partitions (a merge of every scored household with its groups), kept as the reference."""
    f = features
    disabled = pd.to_numeric(f["hh__disabled_members"], errors="coerce").fillna(0).to_numpy()
    size = pd.to_numeric(f["hh__size"], errors="coerce").fillna(0).to_numpy()
    urban = pd.to_numeric(f["hh__urban"], errors="coerce").fillna(0).to_numpy()
    groups = pd.DataFrame(
        {
            "household_key": f["household_key"].astype(str).to_numpy(),
            "head_sex": f["audit__head_sex"].astype("string").fillna("unknown").to_numpy(),
            "head_age_band": f["audit__head_age_band"]
            .astype("string")
            .fillna("unknown")
            .to_numpy(),
            "disability": np.where(disabled > 0, "yes", "no"),
            "single_person": np.where(size == 1, "yes", "no"),
            "tenure": f["hh__tenure"].astype("string").fillna("unknown").to_numpy(),
            "urban": np.where(urban == 1, "urban", "rural"),
        }
    )
    frame = pd.DataFrame(
        {
            "household_key": scores["household_key"].astype(str).to_numpy(),
            "listed": scores["tier"].isin(["visit", "phone"]).to_numpy().astype(int),
        }
    ).merge(groups, on="household_key", how="left")
    rows = []
    for attribute in agg.ATTRIBUTES:
        values = frame[attribute].astype("string").fillna("unknown")
        stats = frame.assign(group=values).groupby("group")["listed"].agg(["size", "sum"])
        for group, row in stats.iterrows():
            e_share = row["size"] / len(frame)
            l_share = row["sum"] / frame["listed"].sum()
            rows.append(
                {
                    "attribute": attribute,
                    "group": str(group),
                    "eligible": int(row["size"]),
                    "listed": int(row["sum"]),
                    "eligible_share": e_share,
                    "listed_share": l_share,
                    "ratio": l_share / e_share,
                }
            )
    return pd.DataFrame(rows, columns=agg.FAIRNESS_TABLE)


def _count_round(scores_file: Path, folder: Path, leading: list[str], edges) -> agg.RoundCounts:
    from pipeline.report import inputs

    tasks = inputs.count_tasks(
        "round",
        scores_file,
        folder,
        score_columns=[
            *inputs.COUNT_COLUMNS,
            *agg.reason_columns(pq.read_schema(scores_file).names),
        ],
        feature_columns=list(dict.fromkeys(["household_key", *agg.FAIRNESS_COLUMNS, *leading])),
        leading=leading,
        edges=edges,
        fairness=True,
    )
    assert len(tasks) > 1, "the sample must have several partitions"
    return agg.combine_counts([inputs.count_partition(t) for t in tasks], cap=agg.ROUND_DISTINCT)


@pytest.mark.parametrize("layout", ["as scored", "other row groups, no statistics"])
def test_counts_partition_by_partition_equal_the_whole_round(scored_sample, tmp_path, layout):
    from pipeline.report import inputs

    config = scored_sample.config
    scores_file = scored_sample.round_dir / "scores.parquet"
    if layout != "as scored":  # row groups across 시군구 and no statistics: fallbacks used
        table = pq.read_table(scores_file)
        scores_file = tmp_path / "scores.parquet"
        pq.write_table(table, scores_file, row_group_size=3_000, write_statistics=False)
    scores = pd.read_parquet(scores_file)
    root = config.paths.output_root
    current = root / "features" / f"as_of={scored_sample.as_of}"
    previous_label = format_month(
        parse_month(scored_sample.as_of) - config.window.round_interval_months
    )
    previous = root / "features" / f"as_of={previous_label}"
    features = pd.concat(
        [pd.read_parquet(p) for p in sorted(current.glob("features/sigungu=*/part-0.parquet"))]
    )
    previous_features = pd.concat(
        [pd.read_parquet(p) for p in sorted(previous.glob("features/sigungu=*/part-0.parquet"))]
    )
    importance = inputs.training_importance(config, None, scored_sample.round_dir)
    leading = agg.leading_from_importance(importance, list(features.columns[2:]), 10)
    leading = list(dict.fromkeys([*leading, "hh__tenure", "hh__benefit_status"]))
    assert any(features[c].nunique() > 10 for c in leading), "a column cut at deciles"
    low, high = rounds.score_range(scores_file)
    assert (low, high) == (scores["score"].min(), scores["score"].max())
    assert rounds.scores_sigungu(scores_file) == sorted(scores["sigungu_code"].unique())
    edges = agg.score_edges(low, high, config.report.score_bins)

    counts = _count_round(scores_file, current, leading, edges)
    before = _count_round(scores_file, previous, leading, None)

    capacity = read_capacity_table(config)
    pd.testing.assert_frame_equal(
        agg.district_table_from_counts(counts.districts, capacity),
        agg.district_table(scores, capacity),
    )
    pd.testing.assert_frame_equal(counts.tiers, agg.tier_table(scores))
    pd.testing.assert_frame_equal(
        counts.histogram, agg.score_histogram(scores, config.report.score_bins)
    )
    pd.testing.assert_frame_equal(
        agg.reason_table_from_counts(counts.reasons), agg.reason_table(scores)
    )
    assert (counts.scored, counts.listed) == (len(scores), len(agg.listed_rows(scores)))
    pd.testing.assert_frame_equal(
        agg.fairness_table_from_counts(counts.fairness), _fairness_reference(scores, features)
    )
    keys = set(scores["household_key"])
    now = features[features["household_key"].isin(keys)]
    then = previous_features[previous_features["household_key"].isin(keys)]
    table = agg.psi_table_from_counts(
        counts.values, before.values, leading, bins=10, threshold=0.2
    ).set_index("feature")
    for column in leading:
        assert table.loc[column, "psi"] == _psi_reference(then[column], now[column]), column
        assert table.loc[column, "mean_current"] == pytest.approx(
            agg.psi_table(now, then, [column], bins=10, threshold=0.2)["mean_current"].iloc[0],
            rel=1e-6,
            nan_ok=True,
        )
    assert not table["merged"].any()


def test_report_from_the_process_pool_is_the_same(reported, scored_sample, tmp_path):
    """Partitions counted and 읍면동 pages written by two worker processes: the same files."""
    copy = copy_outputs(scored_sample, tmp_path)
    config = copy.config.with_overrides(runtime={"workers": 2})
    from pipeline.report.stage import write_report

    result = write_report(config, parse_month(copy.as_of))
    assert sha256_tree(result.folder) == sha256_tree(reported["first"])


def test_report_is_registered_after_score_and_part_of_run():
    names = [s.name for s in STAGES]
    assert names.index("report") == names.index("score") + 1
    assert next(s for s in STAGES if s.name == "report").in_run


def test_make_report_calls_the_cli():
    result = subprocess.run(
        ["make", "-n", "report", "AS_OF=2026-10"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "outreach" in result.stdout and "report --as-of 2026-10" in result.stdout
    listing = subprocess.run(["make"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert "report" in listing.stdout


def test_report_of_a_round_not_scored_is_a_usage_error(tmp_path, capsys):
    from conftest import write_config_file

    config_file = write_config_file(make_config(tmp_path / "outputs"), tmp_path / "c.yaml")
    assert main(["--config", str(config_file), "report", "--as-of", "2026-10"]) == 2
    assert "has not been scored" in capsys.readouterr().err


def test_report_writes_its_pages_and_record_without_touching_the_round(reported):
    copy, folder = reported["copy"], reported["report"]
    assert sha256_file(copy.round_dir / "manifest.json") == reported["manifest_sha"]
    record = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    assert record["round_manifest_sha256"] == reported["manifest_sha"]
    assert record["files_sha256"] == {
        k: v for k, v in sha256_tree(folder).items() if k != "report.json"
    }
    emds = set(pd.read_parquet(copy.round_dir / "scores.parquet")["emd_code"])
    assert {f"emd/{e}.html" for e in emds} <= set(record["files_sha256"])
    assert {"index.html", "followup.html"} <= set(record["files_sha256"])
    assert record["previous_round"]["round"] == reported["previous"]
    assert record["leading_features"]["source"] == "training_feature_importance"
    assert record["shifted_features"] == [reported["leading"]]
    assert not list(copy.round_dir.glob(".report.*"))  # nothing left from the atomic swap
    local = re.compile(
        r'(?:src|href|action)\s*=\s*"(?!#|emd/\d+\.html"|index\.html"|followup\.html"'
        r'|ai_file\.md"|ai_file\.html")'  # the model's AI file, copied into the report and rendered
    )
    for page in folder.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not local.search(text), f"{page}: a link or resource outside the report"
        assert "<link" not in text and "url(http" not in text and "@import" not in text, page


def test_first_report_says_there_is_no_previous_round_and_no_outcomes(reported):
    text = (reported["first"] / "index.html").read_text(encoding="utf-8")
    assert 'id="no-previous"' in text and "이전 회차(" in text
    assert 'id="no-followup"' in text
    assert not (reported["first"] / "followup.html").exists()
    assert "no previous round to compare with" in reported["output"]


def test_a_failed_report_leaves_the_earlier_one_in_place(scored_sample, tmp_path, monkeypatch):
    import pipeline.report.stage as stage

    copy = copy_outputs(scored_sample, tmp_path)
    assert _run(copy.config_file, "report")[0] == 0
    before = sha256_tree(copy.round_dir / "report")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(stage, "write_json", broken)
    with pytest.raises(OSError, match="disk full"):
        stage.write_report(copy.config, parse_month(copy.as_of))
    assert sha256_tree(copy.round_dir / "report") == before
    assert not list(copy.round_dir.glob(".report.*"))


def test_report_folder_holds_no_direct_identifier(reported, sample_raw):
    identifiers = collect_identifiers(sample_raw)
    searched = assert_no_identifiers(
        [reported["report"], reported["first"]],
        identifiers,
        texts={"stdout and stderr": reported["output"]},
    )
    assert searched >= 2 * 3  # overview, 읍면동 pages, follow-up, report.json


# --- in a real headless browser --------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    yield from launched_chromium()


def _open(browser, path: Path, requests: list[str]):
    page = browser.new_page(viewport={"width": 1300, "height": 900}, locale="ko-KR")
    page.on("request", lambda request: requests.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, errors


def _visible_rows(page) -> int:
    return page.locator("#households tbody tr:not([hidden])").count()


def test_overview_and_emd_page_render_in_headless_chromium(reported, browser, tmp_path):
    folder = reported["report"]
    scores = reported["scores"]
    listed = scores[scores["tier"].isin(["visit", "phone"])]
    requests: list[str] = []

    page, errors = _open(browser, folder / "index.html", requests)
    overview_shot = tmp_path / "report-overview.png"
    screenshot(page, overview_shot, full_page=True)
    why = f"(screenshot: {overview_shot})"
    assert page.inner_text("#total-listed") == f"{len(listed):,}", why
    assert page.inner_text("#total-visit") == f"{(listed['tier'] == 'visit').sum():,}", why
    assert page.inner_text("#total-scored") == f"{len(scores):,}", why
    assert page.locator("#emd-table tbody tr").count() == scores["emd_code"].nunique(), why
    assert page.locator("#psi-table tr.flag").count() == 1, why
    assert reported["leading"] in page.inner_text("#psi-table tr.flag"), why
    assert "변화 큼" in page.inner_text("#psi-table"), why
    change = page.inner_text("#change-table")
    assert "+3" in change, why  # the previous round listed 3 fewer in one 시군구
    assert page.locator("#followup-link").count() == 1, why
    assert "<5" in page.inner_text("#emd-table"), why  # the few explored per 읍면동
    assert not errors, errors
    page.close()

    counts = listed.groupby("emd_code").size()
    emd = str(counts.idxmax())
    rows = listed[listed["emd_code"] == emd]
    page, errors = _open(browser, folder / "emd" / f"{emd}.html", requests)
    emd_shot = tmp_path / f"report-emd-{emd}.png"
    screenshot(page, emd_shot, full_page=True)
    why = f"(screenshot: {emd_shot})"
    keys = page.locator("#households tbody td.key").all_inner_texts()
    assert len(keys) == len(rows), why
    assert sorted(keys) == sorted(rows["household_key"].astype(str)), why
    assert page.inner_text("#shown") == f"{len(rows)} / {len(rows)}가구 표시", why

    heads = page.locator("#households thead th").all_inner_texts()
    risk = f"nth-child({[h.strip() for h in heads].index('위험도(%)') + 1})"

    def scores_shown() -> list[float]:
        return [float(v) for v in page.locator(f"#households tbody td:{risk}").all_inner_texts()]

    page.click(f"#households thead th:{risk} button")
    ascending = scores_shown()
    assert ascending == sorted(ascending), why
    assert page.get_attribute(f"#households thead th:{risk}", "aria-sort") == "ascending"
    page.click(f"#households thead th:{risk} button")
    assert scores_shown() == sorted(ascending, reverse=True), why

    one = str(rows["household_key"].iloc[-1])
    page.fill("#filter", one)
    assert _visible_rows(page) == 1, why
    assert page.locator("#households tbody tr:not([hidden]) td.key").inner_text() == one
    page.fill("#filter", "전화")
    assert _visible_rows(page) == int((rows["tier"] == "phone").sum()), why
    page.fill("#filter", "")
    page.select_option("#tier-filter", "visit")
    assert _visible_rows(page) == int((rows["tier"] == "visit").sum()), why
    assert page.inner_text("#shown").startswith(f"{(rows['tier'] == 'visit').sum()} / "), why
    assert not errors, errors
    page.close()

    inside = folder.resolve().as_uri() + "/"
    assert requests, "no request recorded"
    outside = [u for u in requests if not u.startswith(inside)]
    assert not outside, f"requests outside the report folder: {outside} {why}"
    assert overview_shot.stat().st_size > 10_000 and emd_shot.stat().st_size > 10_000


def test_followup_page_shows_the_realised_precision(reported, browser, tmp_path):
    folder = reported["report"]
    labels = load_outcomes(REPO_ROOT / "configs" / "outcomes.yaml").label_of()
    outcomes = reported["outcomes"]
    scores = reported["scores"]
    visits = scores[scores["tier"] == "visit"][["household_key"]]
    back = outcomes[~outcomes["added_by_caseworker"]].merge(visits, on="household_key")
    label = back["outcome_code"].map(labels).dropna()
    assert len(label) >= 5 and label.sum() >= 5
    precision = f"{100 * label.mean():.1f}%"
    requests: list[str] = []
    page, errors = _open(browser, folder / "followup.html", requests)
    shot = tmp_path / "report-followup.png"
    screenshot(page, shot, full_page=True)
    why = f"(screenshot: {shot})"
    assert page.inner_text("#precision-visit") == precision, why
    assert (
        page.locator("#followup-sigungu-table tbody tr").count() == scores["sigungu_code"].nunique()
    ), why
    assert page.locator("#calibration-table tbody tr").count() == 5, why
    assert page.locator("svg.chart circle").count() >= 1, why
    assert not errors, errors
    inside = folder.resolve().as_uri() + "/"
    assert all(u.startswith(inside) for u in requests), requests
    page.close()
