"""Monitoring between rounds on the report (docs/monitoring.md).

The score stage records the round's ``monitoring`` section in its manifest (input drift per
feature group, score drift, the expected precision of the visit tier and the alarms it raised).
This module shows it, and checks the expected precision against the outcomes once they return:

- :func:`precision_check` (pure): among the visit tier's model choices whose answers came back
  with a label (``answered``), the observed precision with its Wilson interval, beside the
  expected precision recorded at scoring and the interval the scores of **the answered
  households** promise (``models.stability.expected_precision``: the answered are a subset of
  the list, so the recorded interval of the whole tier is narrower than the one to check
  against). A row is ``outside`` when the observed precision lies outside that interval and at
  least ``min_answered`` households answered; the round's row outside raises the calibration
  alarm.
- :func:`overview_context` and :func:`followup_context`: the display rows of
  ``templates/_alarms.html``, ``_monitoring.html`` and ``_precision_check.html``, with the
  report's small-count rule (``pipeline.report.pages``: "<5", and no rate from such a count).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from models.stability import expected_precision, wilson_interval
from pipeline.config import MonitoringConfig
from pipeline.report import pages
from pipeline.vocabulary import KEY, MODEL_SCORE, VISIT

CHECK_COLUMNS = [
    "sigungu_code",
    "emd_code",
    "recorded",
    "recorded_low",
    "recorded_high",
    "recorded_n",
    "answered",
    "positives",
    "observed",
    "observed_low",
    "observed_high",
    "expected",
    "expected_low",
    "expected_high",
    "outside",
]


def answered_visit_rows(
    listed: pd.DataFrame, outcomes: pd.DataFrame, label_of: Mapping[str, int | None]
) -> pd.DataFrame:
    """The visit tier's model choices (``listed``: the round's listed rows with emd_code, score,
    tier, selection_reason) whose answer came back with a label (0 or 1): their rows with
    ``label``. Added households, skipped ones and answers without a label are left out."""
    out = outcomes
    if "added_by_caseworker" in out:
        out = out[~out["added_by_caseworker"].fillna(False).astype(bool).to_numpy()]
    code = out["outcome_code"].astype("string")
    label = code.map(lambda c: label_of.get(str(c)) if pd.notna(c) else None)
    answers = pd.DataFrame(
        {KEY: out[KEY].astype("string").to_numpy(), "label": label.astype("Float64").to_numpy()}
    ).drop_duplicates(KEY, keep="last")
    chosen = (listed["tier"].astype("string") == VISIT) & (
        listed["selection_reason"].astype("string") == MODEL_SCORE
    )
    rows = listed[chosen.fillna(False).to_numpy(dtype=bool)].copy()
    rows[KEY] = rows[KEY].astype("string")
    merged = rows.merge(answers, on=KEY, how="inner")
    return merged[merged["label"].notna()].reset_index(drop=True)


def _check_row(
    rows: pd.DataFrame, recorded: Mapping[str, Any], level: float, min_answered: int
) -> dict[str, Any]:
    m = len(rows)
    positives = int((rows["label"] == 1).sum())
    observed = positives / m if m else float("nan")
    low, high = wilson_interval(positives, m, level)
    expected = expected_precision(rows["score"].to_numpy(dtype=np.float64), level)
    outside = bool(
        m >= min_answered
        and np.isfinite(observed)
        and not (expected.low <= observed <= expected.high)
    )
    return {
        "recorded": recorded.get("expected"),
        "recorded_low": recorded.get("low"),
        "recorded_high": recorded.get("high"),
        "recorded_n": recorded.get("n"),
        "answered": m,
        "positives": positives,
        "observed": observed,
        "observed_low": low,
        "observed_high": high,
        "expected": expected.expected,
        "expected_low": expected.low,
        "expected_high": expected.high,
        "outside": outside,
    }


def precision_check(
    listed: pd.DataFrame,
    outcomes: pd.DataFrame,
    label_of: Mapping[str, int | None],
    recorded: Mapping[str, Any] | None,
    *,
    level: float,
    min_answered: int,
) -> pd.DataFrame:
    """One row per 읍면동 with an answered visit-tier model choice (sorted), then the round's
    row (``emd_code`` None); columns :data:`CHECK_COLUMNS`. ``recorded``: the manifest's
    ``monitoring.expected_precision`` (None: not recorded, the recorded columns stay empty)."""
    answered = answered_visit_rows(listed, outcomes, label_of)
    recorded = recorded or {}
    by_emd = {str(r.get("emd_code")): r for r in recorded.get("emd", [])}
    rows = []
    for (sigungu, emd), part in answered.groupby(
        [answered["sigungu_code"].astype(str), answered["emd_code"].astype(str)], sort=True
    ):
        rows.append(
            {
                "sigungu_code": sigungu,
                "emd_code": emd,
                **_check_row(part, by_emd.get(emd, {}), level, min_answered),
            }
        )
    rows.append(
        {
            "sigungu_code": None,
            "emd_code": None,
            **_check_row(answered, recorded.get("overall") or {}, level, min_answered),
        }
    )
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def calibration_alarm(check: pd.DataFrame | None, bounds: MonitoringConfig) -> dict | None:
    """The calibration alarm of a :func:`precision_check` (its round's row outside), or None."""
    if check is None or check.empty:
        return None
    total = check.iloc[-1]
    if not bool(total["outside"]):
        return None
    return {
        "kind": "calibration",
        "subject": "visit tier",
        "value": round(float(total["observed"]), 6),
        "bound": [round(float(total["expected_low"]), 6), round(float(total["expected_high"]), 6)],
        "message": f"observed precision {total['observed']:.3f} of {int(total['answered'])} "
        f"answered visit-tier households outside the {bounds.interval:.0%} interval "
        f"{total['expected_low']:.3f}–{total['expected_high']:.3f} their scores promise",
    }


def check_summary(check: pd.DataFrame | None) -> dict[str, Any] | None:
    """The round's row of the check, for ``report.json``."""
    if check is None or check.empty:
        return None
    total = check.iloc[-1]

    def r(v: Any) -> float | None:
        return None if v is None or pd.isna(v) else round(float(v), 6)

    return {
        "answered": int(total["answered"]),
        "positives": int(total["positives"]),
        "observed": r(total["observed"]),
        "observed_interval": [r(total["observed_low"]), r(total["observed_high"])],
        "expected_for_answered": r(total["expected"]),
        "expected_interval": [r(total["expected_low"]), r(total["expected_high"])],
        "recorded_at_scoring": r(total["recorded"]),
        "recorded_interval": [r(total["recorded_low"]), r(total["recorded_high"])],
        "outside": bool(total["outside"]),
        "emd_outside": int(check.iloc[:-1]["outside"].sum()),
    }


# --- display rows ----------------------------------------------------------------------------


def _interval(low: Any, high: Any) -> str:
    if pages.is_missing(low) or pages.is_missing(high):
        return pages.DASH
    return f"{pages.percent(low)}–{pages.percent(high)}"


def _alarm_text(alarm: Mapping[str, Any]) -> str:
    kind = alarm.get("kind")
    value, bound = alarm.get("value"), alarm.get("bound")
    if kind == "feature_group_psi":
        return f"입력 변수군 {alarm.get('subject')}의 분포 변화 PSI {value:.3f} (기준 {bound})"
    if kind == "score_psi":
        return f"위험 점수 분포 변화 PSI {value:.3f} (기준 {bound})"
    if kind == "min_expected_precision":
        return (
            f"방문 대상(AI 순위)의 예상 지원 연계율 {pages.percent(value)} "
            f"(최저 기준 {pages.percent(bound)})"
        )
    if kind == "calibration":
        shown = pages.DASH if value is None else pages.percent(value)
        return (
            f"돌아온 방문 결과의 실제 지원 연계율 {shown}가 위험도로 예상한 구간 "
            f"{_interval(bound[0], bound[1])} 밖입니다(보정이 맞지 않음)"
        )
    return str(alarm.get("message", kind))


def overview_context(
    manifest: Mapping[str, Any], check: pd.DataFrame | None, bounds: MonitoringConfig, t: int
) -> dict[str, Any]:
    """What ``_alarms.html`` and ``_monitoring.html`` show on the overview."""
    section = manifest.get("monitoring")
    if not isinstance(section, Mapping):
        return {"monitoring": None, "alarms": []}
    found = list(section.get("alarms") or [])
    calibration = calibration_alarm(check, bounds)
    if calibration is not None and check is not None:
        total = check.iloc[-1]
        if pages.small(total["positives"], t) or pages.small(total["answered"], t):
            calibration = {**calibration, "value": None}  # the small-count rule
        found.append(calibration)
    precision = section.get("expected_precision") or {}
    overall = precision.get("overall") or {}
    drift = section.get("input_drift") or {}
    score = section.get("score_drift") or {}
    recorded_bounds = section.get("bounds") or {}
    group_bound = recorded_bounds.get("feature_group_psi", bounds.feature_group_psi)
    quiet = set(recorded_bounds.get("quiet_groups", bounds.quiet_groups))
    groups = [
        {
            "group": row["group"],
            "features": row["features"],
            "psi": pages.decimal(row["psi"], 3),
            "psi_mean": pages.decimal(row["psi_mean"], 3),
            "worst": row["worst_feature"],
            "quiet": row["group"] in quiet,
            "flag": row["group"] not in quiet
            and row["psi"] is not None
            and row["psi"] > group_bound,
        }
        for row in drift.get("groups", [])
    ]
    return {
        "alarms": [_alarm_text(a) for a in found],
        "monitoring": {
            "previous_round": section.get("previous_round"),
            "previous_missing": section.get("previous_missing"),
            "expected": pages.percent(overall.get("expected")),
            "interval": _interval(overall.get("low"), overall.get("high")),
            "level": pages.percent(precision.get("level"), 0),
            "households": pages.count(overall.get("n"), t),
            "cut_score": pages.percent(precision.get("cut_score")),
            "groups": groups,
            "score": None
            if not score
            else {
                "psi": pages.decimal(score.get("psi"), 3),
                "mean_previous": pages.percent(score.get("mean_previous")),
                "mean_current": pages.percent(score.get("mean_current")),
                "cut_previous": pages.percent(score.get("cut_previous")),
                "cut_current": pages.percent(score.get("cut_current")),
                "flag": score.get("psi") is not None
                and score["psi"] > recorded_bounds.get("score_psi", bounds.score_psi),
            },
            "bounds": recorded_bounds,
            "min_precision": pages.percent(recorded_bounds.get("min_expected_precision"), 0),
        },
    }


def followup_context(
    check: pd.DataFrame | None,
    names: Mapping[str, str],
    bounds: MonitoringConfig,
    t: int,
) -> dict[str, Any]:
    """What ``_precision_check.html`` shows (``check`` None: the round recorded no estimate)."""
    if check is None:
        return {"check": None}

    def row(r: Mapping[str, Any]) -> dict[str, Any]:
        m, positives = int(r["answered"]), int(r["positives"])
        shown = not (pages.small(m, t) or pages.small(positives, t))
        sigungu, emd = r["sigungu_code"], r["emd_code"]
        total = pages.is_missing(emd)
        return {
            "sigungu_name": "" if total else pages.region_name(names, str(sigungu)),
            "emd_name": "전체" if total else (pages.region_name(names, str(emd)) or str(emd)),
            "emd_code": "" if total else str(emd),
            "recorded": pages.percent(r["recorded"]),
            "recorded_interval": _interval(r["recorded_low"], r["recorded_high"]),
            "answered": pages.count(m, t),
            "positives": pages.count(positives, t),
            "observed": pages.percent(r["observed"]) if shown else pages.DASH,
            "observed_interval": _interval(r["observed_low"], r["observed_high"])
            if shown
            else pages.DASH,
            "expected": pages.percent(r["expected"]) if not pages.small(m, t) else pages.DASH,
            "expected_interval": _interval(r["expected_low"], r["expected_high"])
            if not pages.small(m, t)
            else pages.DASH,
            "outside": bool(r["outside"]) and shown,
        }

    records = check.to_dict("records")
    total = row(records[-1])
    return {
        "check": {
            "total": total,
            "rows": [row(r) for r in records[:-1]],
            "level": pages.percent(bounds.interval, 0),
            "min_answered": bounds.calibration_min_answered,
            "alarm": calibration_alarm(check, bounds) is not None,
            "enough": int(records[-1]["answered"]) >= bounds.calibration_min_answered,
        }
    }
