"""Monitoring between rounds (docs/monitoring.md): input drift per feature group, score drift,
the expected precision of the visit tier (recorded at scoring, checked against the outcomes),
and the alarms in the score output, the manifest and the report."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json

import numpy as np
import pandas as pd
import pytest
from conftest import copy_outputs

from models.stability import (
    expected_precision,
    psi,
    value_counts,
    wilson_interval,
)
from pipeline.config import MonitoringConfig
from pipeline.report import monitoring as report_monitoring
from pipeline.score import monitor

# --- expected precision and its interval ---------------------------------------------------


def test_expected_precision_and_interval_match_a_simulation():
    rng = np.random.default_rng(7)
    p = rng.beta(2.0, 3.0, size=400)
    estimate = expected_precision(p, level=0.9)
    assert estimate.n == 400
    assert estimate.expected == pytest.approx(p.mean())
    assert estimate.sd == pytest.approx(np.sqrt((p * (1 - p)).sum()) / 400)
    # Households found in need, drawn as calibration says: the share's spread and coverage.
    draws = (rng.random((20_000, p.size)) < p).mean(axis=1)
    assert draws.mean() == pytest.approx(estimate.expected, abs=0.002)
    assert draws.std() == pytest.approx(estimate.sd, rel=0.03)
    inside = ((draws >= estimate.low) & (draws <= estimate.high)).mean()
    assert 0.88 <= inside <= 0.92
    # A list twice as long of the same households: the interval shrinks by sqrt(2).
    longer = expected_precision(np.r_[p, p], level=0.9)
    assert longer.sd == pytest.approx(estimate.sd / np.sqrt(2))


def test_expected_precision_edges():
    empty = expected_precision([], level=0.9)
    assert empty.n == 0 and np.isnan(empty.expected)
    sure = expected_precision([1.0, 1.0, 0.0], level=0.9)
    assert sure.sd == 0.0 and sure.low == sure.high == pytest.approx(2 / 3)
    assert expected_precision([0.99] * 3, level=0.99).high <= 1.0


def test_wilson_interval():
    low, high = wilson_interval(0, 10, 0.95)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(30, 60, 0.9)
    assert low < 0.5 < high and (high - 0.5) == pytest.approx(0.5 - low)
    assert np.isnan(wilson_interval(0, 0, 0.9)[0])


# --- feature groups and their PSI --------------------------------------------------------


@pytest.fixture(scope="module")
def spec_and_catalogue(repo_root):
    from features.spec import load_feature_spec
    from pipeline.catalogue import load_indicators

    return load_feature_spec(repo_root / "configs" / "features.yaml"), load_indicators(
        repo_root / "configs" / "indicators.yaml"
    )


def test_feature_groups_follow_the_spec(spec_and_catalogue):
    spec, catalogue = spec_and_catalogue
    indicator = catalogue.indicators[0]
    columns = [
        "household_key",
        "emd_code",
        f"{indicator.code}__count_3m",
        f"group_{indicator.group}__count_1m",
        "distinct_types__3m",
        "hh__size",
        "hh__tenure",
        "history__times_listed",
        "context__emd_past_need_rate",
        "audit__head_sex",
        "extra__thing",
    ]
    groups = monitor.feature_groups(columns, spec, catalogue)
    crisis = f"crisis.{indicator.group}"
    assert groups[crisis] == [f"{indicator.code}__count_3m", f"group_{indicator.group}__count_1m"]
    assert groups["distinct_types"] == ["distinct_types__3m"]
    assert groups["household"] == ["hh__size", "hh__tenure"]
    assert groups["history"] == ["history__times_listed"]
    assert "extra" in groups and groups["extra"] == ["extra__thing"]
    flat = [c for cols in groups.values() for c in cols]
    assert not any(c.startswith("audit__") or c in ("household_key", "emd_code") for c in flat)
    assert list(groups) == sorted(groups)


def _frames(seed: int, n: int = 3000, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "household_key": [f"H{i:07d}" for i in range(n)],
            "a__x": rng.poisson(2.0 + shift, n).astype("float32"),
            "a__y": rng.normal(0.0, 1.0, n),
            "b__z": rng.choice(["own", "rent"], n, p=[0.5, 0.5]),
        }
    )


def test_group_psi_is_the_largest_psi_of_its_features_with_the_reports_code():
    from pipeline.report import aggregates as agg

    before, after = _frames(1), _frames(2, shift=1.0)
    columns = ["a__x", "a__y", "b__z"]
    groups = {"a": ["a__x", "a__y"], "b": ["b__z"]}
    drift = monitor.group_drift(
        {c: value_counts(after[c]) for c in columns},
        {c: value_counts(before[c]) for c in columns},
        groups,
        bins=10,
    )
    by_group = {r["group"]: r for r in drift["groups"]}
    want_x, want_y = psi(before["a__x"], after["a__x"]), psi(before["a__y"], after["a__y"])
    assert agg.psi is psi  # the report's PSI is the same function, not a copy
    assert by_group["a"]["psi"] == pytest.approx(max(want_x, want_y), abs=1e-6)
    assert by_group["a"]["worst_feature"] == "a__x"
    assert by_group["a"]["psi_mean"] == pytest.approx((want_x + want_y) / 2, abs=1e-6)
    assert by_group["b"]["psi"] == pytest.approx(psi(before["b__z"], after["b__z"]), abs=1e-6)
    assert drift["features"]["a__x"] == pytest.approx(want_x, abs=1e-6)


def _scores(seed: int, emds=("E1", "E2"), n: int = 400, capacity: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for emd in emds:
        score = np.sort(rng.beta(1.5, 6.0, n))[::-1]
        tier = np.array(["monitor"] * n, dtype=object)
        tier[:capacity] = "visit"
        reason = np.array(["model_score"] * n, dtype=object)
        reason[capacity - 2 : capacity] = "random_exploration"
        rows.append(
            pd.DataFrame(
                {
                    "household_key": [f"{emd}-{i:05d}" for i in range(n)],
                    "sigungu_code": "S1",
                    "emd_code": emd,
                    "score": score,
                    "tier": tier,
                    "selection_reason": reason,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_partitions_add_up_and_the_estimate_is_the_visit_tiers_mean_score():
    scores = _scores(3)
    whole = monitor.partition_counts(scores, None, [])
    parts = monitor.combine(
        [monitor.partition_counts(scores[scores["emd_code"] == e], None, []) for e in ("E1", "E2")]
    )
    section = monitor.monitoring_section(
        parts, None, {}, MonitoringConfig(), previous_round="2026-08", previous_missing="x"
    )
    chosen = scores[(scores["tier"] == "visit") & (scores["selection_reason"] == "model_score")]
    overall = section["expected_precision"]["overall"]
    assert overall["n"] == len(chosen) == 76
    assert overall["expected"] == pytest.approx(chosen["score"].mean(), abs=1e-6)
    emd = {r["emd_code"]: r for r in section["expected_precision"]["emd"]}
    for code, part in chosen.groupby("emd_code"):
        assert emd[code]["expected"] == pytest.approx(part["score"].mean(), abs=1e-6)
        assert emd[code]["cut"] == pytest.approx(part["score"].min(), abs=1e-6)
    assert section["previous_round"] is None and section["input_drift"] is None
    assert whole.score.present == parts.score.present == len(scores)


@pytest.mark.parametrize(
    "values",
    [
        [],
        [np.nan, np.nan],
        [0.0, 0.0, -0.0],
        [3.5, -1.0, 0.0, 3.5, np.nan, -1.0, 0.0, 2.0],
        [1.0, 2.0, 2.0],
    ],
)
def test_value_counts_are_numpys_distinct_values_and_counts(values):
    """Zeros are counted apart from the other values (faster on mostly-zero feature columns):
    the distinct values, counts, missing and total are those ``np.unique`` gives."""
    rng = np.random.default_rng(11)
    sparse = np.where(rng.random(5000) < 0.95, 0.0, rng.integers(-4, 30, 5000) / 2)
    fractions = np.where(rng.random(5000) < 0.1, np.nan, rng.random(5000) * 100 - 30)
    for column in (
        pd.Series(values, dtype="float32"),
        pd.Series(sparse, dtype="float32"),
        pd.Series(fractions, dtype="float32"),
    ):
        counts = value_counts(column)
        x = column.to_numpy(dtype=np.float64)
        present = x[~np.isnan(x)]
        distinct, n = np.unique(present, return_counts=True)
        assert np.array_equal(counts.values, distinct) and np.array_equal(counts.counts, n)
        assert counts.values.dtype == np.float64 and counts.counts.dtype == np.int64
        assert counts.missing == int(np.isnan(x).sum()) and counts.distinct == len(distinct)
        assert counts.total == float(present.sum())


def test_value_counts_of_float32_are_those_of_the_same_values_as_float64():
    """float32 columns are counted in float32 (faster): values, counts, merged groups, missing
    and total are exactly those of the column cast to float64."""
    rng = np.random.default_rng(12)
    x = np.where(rng.random(20000) < 0.7, 0.0, rng.normal(5, 40, 20000))
    x[rng.random(20000) < 0.05] = np.nan
    column = pd.Series(x, dtype="float32")
    where = rng.random(20000) < 0.9
    for cap in (None, 50):
        a = value_counts(column, cap, where=where)
        b = value_counts(column.astype("float64"), cap, where=where)
        assert np.array_equal(a.values, b.values) and a.values.dtype == np.float64
        assert np.array_equal(a.counts, b.counts)
        facts = (a.missing, a.distinct, a.merged, a.total)
        assert facts == (b.missing, b.distinct, b.merged, b.total)
    assert a.merged and a.dtype == "float32"


@pytest.mark.parametrize(
    "column",
    [
        pd.Series([3.5, np.nan, 0.0, 3.5, np.nan, -1.0, 0.0, 2.0], dtype="float32"),
        pd.Series(["a", None, "b", "a", None, "c", "a", "b"], dtype="string"),
    ],
)
def test_value_counts_where_counts_the_masked_rows_as_the_masked_column(column):
    """Counting some rows with ``where`` (no copy of a wide frame) gives the counts of the
    masked column itself, missing values included."""
    where = np.array([True, True, False, True, False, True, True, False])
    a, b = value_counts(column, where=where), value_counts(column[where].reset_index(drop=True))
    assert (a.dtype, a.numeric, a.missing, a.distinct, a.merged) == (
        b.dtype,
        b.numeric,
        b.missing,
        b.distinct,
        b.merged,
    )
    assert a.missing == 1 and a.present == 4
    assert np.array_equal(a.values, b.values) and np.array_equal(a.counts, b.counts)
    assert a.total == b.total or (np.isnan(a.total) and np.isnan(b.total))


def test_partition_counts_count_the_feature_rows_of_scored_households_only():
    scores = _scores(4, emds=("E1",), n=50)
    keys = scores["household_key"].tolist()
    features = pd.DataFrame(
        {
            "household_key": pd.array(["not-scored-1", *keys[::-1], "not-scored-2"], "string"),
            "x": np.r_[100.0, np.arange(50, dtype=float)[::-1], 200.0].astype("float32"),
        }
    )
    counts = monitor.partition_counts(scores, features, ["x"])
    assert counts.values["x"].present == 50 and counts.values["x"].values.max() == 49.0


def _assert_same_counts(a: monitor.MonitorCounts, b: monitor.MonitorCounts) -> None:
    assert list(a.values) == list(b.values)
    for x, y in [(a.score, b.score), *((a.values[c], b.values[c]) for c in a.values)]:
        assert (x.dtype, x.numeric, x.missing, x.distinct, x.merged) == (
            y.dtype,
            y.numeric,
            y.missing,
            y.distinct,
            y.merged,
        )
        assert x.total == y.total or (np.isnan(x.total) and np.isnan(y.total))
        assert x.values.dtype == y.values.dtype and x.counts.dtype == y.counts.dtype
        assert np.array_equal(x.values, y.values) and np.array_equal(x.counts, y.counts)
    pd.testing.assert_frame_equal(
        a.visit.reset_index(drop=True), b.visit.reset_index(drop=True), check_dtype=False
    )


def test_stored_counts_read_back_exactly(tmp_path):
    """A round's counts go to its folder and come back the same: numeric and text columns,
    merged ones, missing values, and an empty visit table."""
    rng = np.random.default_rng(5)
    scores = _scores(6, n=150)
    features = pd.DataFrame(
        {
            "household_key": scores["household_key"].astype("string"),
            "amount": pd.Series(rng.normal(0, 1, 300), dtype="float32"),
            "mostly_zero": np.where(rng.random(300) < 0.9, 0.0, rng.integers(1, 5, 300)),
            "band": pd.Series(rng.choice(["a", "b", None], 300), dtype="string"),
        }
    )
    columns = ["amount", "mostly_zero", "band"]
    counts = monitor.partition_counts(scores, features, columns, cap=50)
    assert counts.values["amount"].merged and not counts.values["band"].numeric
    monitor.write_counts(counts, tmp_path)
    _assert_same_counts(monitor.read_counts(tmp_path), counts)
    no_visits = monitor.partition_counts(scores, features, columns, visit=False)
    monitor.write_counts(no_visits, tmp_path / "empty")
    back = monitor.read_counts(tmp_path / "empty")
    assert back.visit.empty and list(back.visit.columns) == monitor.VISIT_COLUMNS
    _assert_same_counts(back, no_visits)


# --- alarms ----------------------------------------------------------------------------------


def _section(group_psi: float, score_psi: float, expected: float) -> dict:
    return {
        "input_drift": {
            "groups": [{"group": "crisis.health", "psi": group_psi, "worst_feature": "x__y"}]
        },
        "score_drift": {"psi": score_psi},
        "expected_precision": {"overall": {"expected": expected}},
    }


def test_alarms_fire_above_the_bounds_and_not_at_them():
    bounds = MonitoringConfig(feature_group_psi=0.25, score_psi=0.2, min_expected_precision=0.3)
    assert monitor.alarms(_section(0.25, 0.2, 0.3), bounds) == []
    assert monitor.alarms(_section(0.1, 0.05, 0.5), bounds) == []
    assert monitor.alarm_line({"alarms": []}) is None
    fired = monitor.alarms(_section(0.2501, 0.2001, 0.2999), bounds)
    assert [a["kind"] for a in fired] == [
        "feature_group_psi",
        "score_psi",
        "min_expected_precision",
    ]
    assert fired[0]["subject"] == "crisis.health"
    line = monitor.alarm_line({"alarms": fired})
    assert line is not None and "\n" not in line and "monitoring alarm (3)" in line
    metrics = monitor.monitoring_metrics({**_section(0.3, 0.1, 0.4), "alarms": fired})
    assert metrics["monitoring.feature_group_psi.crisis.health"] == 0.3
    assert metrics["monitoring.alarms"] == 3.0


# --- the check against the outcomes (pure) ---------------------------------------------------


def _answers(listed: pd.DataFrame, codes: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "household_key": listed["household_key"].to_numpy()[: len(codes)],
            "outcome_code": codes,
            "added_by_caseworker": False,
        }
    )


def test_precision_check_counts_only_labelled_model_choices_and_flags_outside():
    label_of = {"public_support": 1, "closed_no_need": 0, "unreachable": None}
    scores = _scores(5)
    visit = scores[scores["tier"] == "visit"].reset_index(drop=True)
    recorded = monitor.precision_estimate(monitor.visit_table(scores), 0.9)
    # E1's 40: 38 model choices answered (32 need, 3 none, 3 unreachable), 2 explored answered
    e1 = visit[visit["emd_code"] == "E1"]
    codes = ["public_support"] * 32 + ["closed_no_need"] * 3 + ["unreachable"] * 3
    answers = pd.concat(
        [
            _answers(e1, [*codes, "public_support", "public_support"]),
            pd.DataFrame(
                {
                    "household_key": ["ADDED"],
                    "outcome_code": ["public_support"],
                    "added_by_caseworker": [True],
                }
            ),
        ],
        ignore_index=True,
    )
    check = report_monitoring.precision_check(
        visit, answers, label_of, recorded, level=0.9, min_answered=20
    )
    assert check["emd_code"].iloc[0] == "E1" and pd.isna(check["emd_code"].iloc[1])
    total = check.iloc[-1]
    assert total["answered"] == 35 and total["positives"] == 32
    assert total["observed"] == pytest.approx(32 / 35)
    answered = e1.iloc[:35]
    assert total["expected"] == pytest.approx(answered["score"].mean())
    assert total["recorded"] == recorded["overall"]["expected"]
    # The top tenth of Beta(1.5, 6) scores promises about 0.4: 91% found is outside: an alarm.
    assert bool(total["outside"]) and total["observed"] > total["expected_high"]
    alarm = report_monitoring.calibration_alarm(check, MonitoringConfig())
    assert alarm is not None and alarm["kind"] == "calibration"
    # Too few answered: no verdict.
    few = report_monitoring.precision_check(
        visit, answers, label_of, recorded, level=0.9, min_answered=36
    )
    assert not few["outside"].any()
    assert report_monitoring.calibration_alarm(few, MonitoringConfig()) is None
    # Answers drawn as the scores say: inside.
    rng = np.random.default_rng(11)
    model = visit[visit["selection_reason"] == "model_score"]
    drawn = np.where(
        rng.random(len(model)) < model["score"].to_numpy(), "public_support", "closed_no_need"
    )
    calm = report_monitoring.precision_check(
        visit, _answers(model, list(drawn)), label_of, recorded, level=0.9, min_answered=20
    )
    assert not bool(calm.iloc[-1]["outside"])


# --- on the session's scored sample ----------------------------------------------------------


def _run(config_file, *args) -> tuple[int, str]:
    from pipeline.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--no-progress", "--config", str(config_file), *args])
    return code, out.getvalue()


def _write_outcomes(copy, catalogue_codes: tuple[str, str], seed: int) -> None:
    """Answers for every listed household of the round, a label drawn from its score (need:
    ``catalogue_codes[0]``, none: ``[1]``), written through the outcomes store's writer."""
    from pipeline.datasets.outcomes import write_round_outcomes

    scores = pd.read_parquet(copy.round_dir / "scores.parquet")
    listed = scores[scores["tier"].isin(["visit", "phone"])].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    need = rng.random(len(listed)) < listed["score"].to_numpy()
    rows = pd.DataFrame(
        {
            "household_key": listed["household_key"].astype(str),
            "sigungu_code": listed["sigungu_code"].astype(str),
            "emd_code": listed["emd_code"].astype(str),
            "round": copy.as_of,
            "outcome_code": np.where(need, *catalogue_codes),
            "contact_date": pd.Timestamp(f"{copy.as_of}-20"),
            "added_by_caseworker": False,
            "selection_reason": listed["selection_reason"].astype(str),
            "selection_probability": listed["selection_probability"].astype(float),
            "source_file_sha256": "0" * 64,
            "resolved_month": copy.as_of,
            "override_code": None,
        }
    )
    write_round_outcomes(copy.config, copy.as_of, rows)


def test_scored_sample_records_monitoring_and_the_report_checks_it(scored_sample, tmp_path):
    copy = copy_outputs(scored_sample, tmp_path)
    manifest = json.loads((copy.round_dir / "manifest.json").read_text(encoding="utf-8"))
    section = manifest["monitoring"]
    overall = section["expected_precision"]["overall"]
    assert overall["n"] > 0 and overall["low"] <= overall["expected"] <= overall["high"]
    assert section["previous_round"] is None and "not scored" in section["previous_missing"]
    assert section["alarms"] == []  # the defaults on the committed sample
    assert section["bounds"] == MonitoringConfig().model_dump(mode="json")
    # the scoring run's metrics
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{copy.config.paths.output_root}/mlflow/mlflow.db")
    run = mlflow.get_run(manifest["scoring_run"]["run_id"])
    assert run.data.metrics["monitoring.expected_precision"] == pytest.approx(overall["expected"])
    assert run.data.metrics["monitoring.alarms"] == 0.0
    # outcomes come back, drawn as the scores say: the follow-up page checks them
    _write_outcomes(copy, ("public_support", "closed_no_need"), seed=3)
    code, _ = _run(copy.config_file, "report", "--as-of", copy.as_of)
    assert code == 0
    report = copy.round_dir / "report"
    followup = (report / "followup.html").read_text(encoding="utf-8")
    assert 'id="precision-check-table"' in followup and 'id="precision-check-total"' in followup
    record = json.loads((report / "report.json").read_text(encoding="utf-8"))
    check = record["precision_check"]
    assert check["recorded_at_scoring"] == pytest.approx(overall["expected"])
    assert check["answered"] > 0
    assert not check["outside"], check
    assert 'id="monitoring-alarms"' not in (report / "index.html").read_text(encoding="utf-8")
    # every answer "in need": the observed precision falls outside, flagged on both pages
    _write_outcomes(copy, ("public_support", "public_support"), seed=3)
    assert _run(copy.config_file, "report", "--as-of", copy.as_of)[0] == 0
    followup = (report / "followup.html").read_text(encoding="utf-8")
    assert "구간 밖" in followup and 'class="banner" id="precision-check-banner"' in followup
    overview = (report / "index.html").read_text(encoding="utf-8")
    assert 'id="monitoring-alarms"' in overview and "보정이 맞지 않음" in overview


def test_tight_bounds_raise_alarms_in_the_output_manifest_and_overview(scored_sample, tmp_path):
    from conftest import write_config_file

    copy = copy_outputs(scored_sample, tmp_path)
    # the previous round scored too, then this round again with tight bounds
    assert _run(copy.config_file, "score", "--as-of", "2026-08")[0] == 0
    tight = copy.config.with_overrides(
        monitoring={"feature_group_psi": 1e-6, "score_psi": 1e-6, "min_expected_precision": 0.99}
    )
    config_file = write_config_file(tight, tmp_path / "tight.yaml")
    code, out = _run(config_file, "score", "--as-of", copy.as_of, "--force")
    assert code == 0
    warnings = [line for line in out.splitlines() if "monitoring alarm" in line]
    assert len(warnings) == 1 and "docs/monitoring.md" in warnings[0]
    manifest = json.loads((copy.round_dir / "manifest.json").read_text(encoding="utf-8"))
    section = manifest["monitoring"]
    assert section["previous_round"] == "2026-08"
    kinds = {a["kind"] for a in section["alarms"]}
    assert kinds == {"feature_group_psi", "score_psi", "min_expected_precision"}
    groups = {r["group"] for r in section["input_drift"]["groups"]}
    assert {"household", "history", "distinct_types"} <= groups
    assert any(g.startswith("crisis.") for g in groups)
    assert section["score_drift"]["cut_current"] is not None
    assert _run(config_file, "report", "--as-of", copy.as_of)[0] == 0
    overview = (copy.round_dir / "report" / "index.html").read_text(encoding="utf-8")
    assert 'id="monitoring-alarms"' in overview and 'id="group-psi-table"' in overview
    assert "위험 점수 분포 변화 PSI" in overview


def test_the_previous_rounds_stored_counts_give_what_counting_it_again_gives(
    scored_sample, tmp_path, capfd
):
    """The next round compares with the counts a round stored when it was scored; without
    them (a round scored before they were kept), or when they differ from the round's
    manifest, the round is counted again from its files, with the same section."""
    import shutil

    copy = copy_outputs(scored_sample, tmp_path)
    assert _run(copy.config_file, "score", "--as-of", "2026-08")[0] == 0
    previous = copy.round_dir.parent / "2026-08"
    kept = tmp_path / "kept"
    shutil.copytree(previous / "monitoring", kept)

    def section() -> dict:
        assert _run(copy.config_file, "score", "--as-of", copy.as_of, "--force")[0] == 0
        manifest = json.loads((copy.round_dir / "manifest.json").read_text(encoding="utf-8"))
        return manifest["monitoring"]

    stored = section()
    assert stored["previous_round"] == "2026-08" and stored["input_drift"]["groups"]
    shutil.rmtree(previous / "monitoring")
    assert section() == stored  # counted again from the round's scores and features
    # counts that differ from what the round's manifest records are not used
    shutil.copytree(kept, previous / "monitoring")
    counts = monitor.read_counts(previous)
    first = next(iter(counts.values))
    counts.values[first] = dataclasses.replace(
        counts.values[first], counts=counts.values[first].counts * 2
    )
    monitor.write_counts(counts, previous)
    capfd.readouterr()
    assert section() == stored
    assert "counts.parquet: differs from the sha256 its round's manifest" in capfd.readouterr().err
