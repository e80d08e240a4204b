"""The report's simulation page (``simulation.html``): the results of ``outreach simulate``.

When the output root holds simulation results (``pipeline.datasets.simulation``), every round's
report gets a page that compares the policies of the living loop (docs/simulation.md): the header
(rounds, policies, seed, reference policy, households, how long it took), the policy table with
the differences against the reference and their bootstrap intervals, the signals of a degrading
loop in plain words, the two plots (inlined as ``data:`` URIs: the pages' Content Security Policy
admits no other image) and a short table per round of a few measures.

:func:`read_simulation` is the only function here that reads files; the rest are pure (frames
and the record in, display rows of strings out). The results are aggregates over synthetic
worlds (no household key), so no count is masked as the overview masks counts under five.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from models.loop import (
    AVERTED_PER_1000,
    CALIBRATION_GAP,
    HARDSHIP_AVERTED,
    MEASURE,
    MONTHS_TO_CONTACT,
    NEED_FOUND,
    NEVER_CONTACTED,
    OVERLAP,
    POLICY,
    PRECISION,
    REPEAT_LISTED,
    ROUND,
    VALUE,
    WORST_PRECISION_RATIO,
    WORST_RECALL_RATIO,
)
from pipeline.config import Config
from pipeline.datasets.simulation import (
    PLOT_FAIRNESS,
    PLOT_MEASURES,
    RECORD,
    has_results,
    read_results,
    results_dir,
)
from pipeline.io import sha256_file
from pipeline.months import format_month, parse_month
from pipeline.report.pages import DASH, decimal, is_missing, number

SIMULATION = "simulation.html"  # inside report/, beside index.html

# Korean name and English name of each policy (docs/simulation.md); another name is shown as is.
POLICY_NAMES: dict[str, tuple[str, str]] = {
    "none": ("접촉 없음 (대조 세계)", "no contact"),
    "rule": ("중앙 규칙 (위기 유형 수)", "central rule"),
    "random": ("무작위 선정", "random"),
    "oracle": ("숨은 실제 기준 (상한)", "oracle"),
    "champion": ("AI 모형 (현행 설정)", "champion"),
    "champion_plain": ("AI 모형 (방문 결과만 학습)", "plain labels"),
    "champion_ipw": ("AI 모형 (선정 확률 역가중)", "IPW"),
    "champion_negatives": ("AI 모형 (조용한 가구 음성 추가)", "quiet negatives"),
    "champion_ipw_negatives": ("AI 모형 (역가중 + 음성 추가)", "IPW + negatives"),
    "champion_no_exploration": ("AI 모형 (무작위 탐색 없음)", "no exploration"),
    "champion_broken": ("AI 모형 (단순 라벨, 탐색 없음)", "broken loop"),
}
# The flags of models.loop.broken_loop_signals, in plain words (Korean, English).
SIGNAL_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("precision_falling", "정밀도 하락", "precision falling"),
    ("list_concentrating", "같은 가구에 목록 집중", "list concentrating"),
    ("need_left_behind", "찾지 못한 필요 증가", "need left behind"),
    ("calibration_drifting", "예상 정밀도 어긋남", "calibration drifting"),
    ("no_exploration", "무작위 탐색 없음", "no exploration"),
)
# The measures of the per-round tables: (measure, Korean, English, format).
ROUND_MEASURES: tuple[tuple[str, str, str, str], ...] = (
    (PRECISION, "정밀도 (방문 목록 중 실제 필요 가구 비율)", "precision", "share"),
    (NEED_FOUND, "발굴 가구 (방문 목록 중 실제 필요 가구)", "need found", "count"),
    (NEVER_CONTACTED, "3회차 연속 필요했으나 접촉 못 한 가구", "never contacted 3 rounds", "count"),
)
PLOT_TITLES = {
    PLOT_MEASURES: "회차별 주요 지표 (정책별) · measures per round and policy",
    PLOT_FAIRNESS: "회차별 공정성 비 (정책별) · fairness ratios per round",
}


@dataclass(frozen=True)
class SimulationResults:
    """What the page shows: the results' tables (by file name without ``.csv``), the record
    (``simulation.json``), the timing, the plots' bytes by file name, and the record's sha256."""

    tables: dict[str, pd.DataFrame]
    record: dict[str, Any]
    timing: dict[str, Any] = field(default_factory=dict)
    plots: dict[str, bytes] = field(default_factory=dict)
    record_sha256: str = ""


def read_simulation(config: Config) -> SimulationResults | None:
    """The simulation results under the output root, or None when there are none."""
    if not has_results(config):
        return None
    results = read_results(config)
    tables = {k: v for k, v in results.items() if isinstance(v, pd.DataFrame)}
    return SimulationResults(
        tables=tables,
        record=dict(results["record"]),
        timing=dict(results.get("timing") or {}),
        plots={name: path.read_bytes() for name, path in results["plots"].items()},
        record_sha256=sha256_file(results_dir(config) / RECORD),
    )


# --- formats ---------------------------------------------------------------------------------


def _float(value: Any) -> float:
    if is_missing(value):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def share(value: Any) -> str:
    """A share or ratio with 3 decimals ("0.275")."""
    return decimal(_float(value), 3)


def whole(value: Any) -> str:
    """A count with thousands separators ("1,234"); a count summed as a float is rounded."""
    v = _float(value)
    return DASH if not math.isfinite(v) else number(round(v))


def signed_whole(value: Any) -> str:
    """A difference with its sign ("+27", "−3", "0")."""
    v = _float(value)
    if not math.isfinite(v):
        return DASH
    r = round(v)
    return f"+{r:,}" if r > 0 else f"−{-r:,}" if r < 0 else "0"


def duration(seconds: Any) -> str:
    """Seconds for people: "1시간 2분 3초", "4분 5초", "6.7초"."""
    s = _float(seconds)
    if not math.isfinite(s):
        return DASH
    if s < 60:
        return f"{s:.1f}초"
    total = round(s)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours:,}시간 {minutes}분 {secs}초"
    return f"{minutes}분 {secs}초"


def round_label(value: Any) -> str:
    """A round month (integer or ``YYYY-MM``) as ``YYYY-MM``."""
    if isinstance(value, str):
        return value
    return format_month(int(value))


def policy_name(policy: str) -> dict[str, str]:
    ko, en = POLICY_NAMES.get(policy, (policy, policy))
    return {"code": policy, "ko": ko, "en": en}


def plot_uri(data: bytes) -> str:
    """A PNG as a ``data:`` URI (the only image source the pages' policy admits)."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


# --- the page's parts ------------------------------------------------------------------------


def difference(row: pd.Series, measure: str, reference: bool) -> dict[str, Any]:
    """The difference of ``measure`` against the reference with its interval; ``excludes_zero``
    when the interval lies wholly above or below zero."""
    column = f"{measure}_minus_reference"
    estimate = _float(row.get(column))
    low, high = _float(row.get(f"{column}_low")), _float(row.get(f"{column}_high"))
    if reference:
        return {"estimate": "기준", "interval": "", "excludes_zero": False, "direction": ""}
    excludes = math.isfinite(low) and math.isfinite(high) and (low > 0 or high < 0)
    interval = (
        f"[{signed_whole(low)}, {signed_whole(high)}]"
        if math.isfinite(low) and math.isfinite(high)
        else ""
    )
    return {
        "estimate": signed_whole(estimate),
        "interval": interval,
        "excludes_zero": excludes,
        "direction": "" if not excludes else "up" if low > 0 else "down",
    }


def policy_rows(table: pd.DataFrame, reference: str) -> list[dict[str, Any]]:
    """The policy table (``policies.csv``) as display rows, in its order."""
    rows = []
    for _, row in table.iterrows():
        policy = str(row[POLICY])
        is_reference = policy == reference
        rows.append(
            {
                **policy_name(policy),
                "reference": is_reference,
                "need_found": whole(row.get(NEED_FOUND)),
                "need_found_diff": difference(row, NEED_FOUND, is_reference),
                "precision": share(row.get(PRECISION)),
                "averted": whole(row.get(HARDSHIP_AVERTED)),
                "averted_diff": difference(row, HARDSHIP_AVERTED, is_reference),
                "averted_per_1000": decimal(_float(row.get(AVERTED_PER_1000)), 1),
                "months_to_contact": decimal(_float(row.get(MONTHS_TO_CONTACT)), 1),
                "never_contacted": whole(row.get(NEVER_CONTACTED)),
                "repeat_listed": whole(row.get(REPEAT_LISTED)),
                "overlap": share(row.get(OVERLAP)),
                "worst_recall": share(row.get(WORST_RECALL_RATIO)),
                "worst_precision": share(row.get(WORST_PRECISION_RATIO)),
                "calibration_gap": share(row.get(CALIBRATION_GAP)),
            }
        )
    return rows


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return not is_missing(value) and bool(value)


def signal_rows(signals: pd.DataFrame) -> list[dict[str, Any]]:
    """The signals of a degrading loop (``signals.csv``), flags as plain words."""
    rows = []
    for _, row in signals.iterrows():
        flags = [
            {"code": code, "ko": ko, "en": en}
            for code, ko, en in SIGNAL_FLAGS
            if code in row.index and _flag(row[code])
        ]
        rows.append(
            {
                **policy_name(str(row[POLICY])),
                "degrading": _flag(row.get("degrading")),
                "flags": flags,
                "precision_slope": share(row.get("precision_slope")),
                "mean_overlap": share(row.get("mean_overlap")),
                "never_share": share(row.get("mean_never_contacted_share")),
                "exploration": share(row.get("mean_exploration_share")),
            }
        )
    return rows


def round_tables(per_round: pd.DataFrame, policies: list[str]) -> list[dict[str, Any]]:
    """Per chosen measure: one row per round, one column per policy (the per-round values)."""
    tables = []
    for measure, ko, en, kind in ROUND_MEASURES:
        part = per_round[per_round[MEASURE] == measure]
        part = part.drop_duplicates([ROUND, POLICY], keep="last")
        wide = part.pivot(index=ROUND, columns=POLICY, values=VALUE)  # NaN kept: shown "–"
        wide = wide.reindex(columns=[p for p in policies if p in wide.columns])
        wide = wide.sort_index(key=lambda s: s.map(_round_order))
        show = share if kind == "share" else whole
        tables.append(
            {
                "measure": measure,
                "ko": ko,
                "en": en,
                "policies": [policy_name(str(p)) for p in wide.columns],
                "rows": [
                    {"round": round_label(r), "values": [show(v) for v in values]}
                    for r, values in zip(wide.index, wide.to_numpy(), strict=True)
                ],
            }
        )
    return tables


def _round_order(value: Any) -> int:
    return parse_month(value) if isinstance(value, str) else int(value)


def header_facts(record: dict[str, Any], timing: dict[str, Any]) -> dict[str, Any]:
    """The header: rounds, policies, seed, reference, households, when and how long."""
    rounds = [round_label(r) for r in record.get("rounds", [])]
    when = next(
        (str(record[k]) for k in ("finished_at", "written_at", "created_at") if record.get(k)),
        "",
    )
    per_policy = timing.get("seconds_per_policy") or {}
    listed = [str(p) for p in record.get("policies", [])]
    timed = [p for p in listed if p in per_policy] + [p for p in per_policy if p not in listed]
    return {
        "rounds": number(len(rounds)),
        "first_round": rounds[0] if rounds else DASH,
        "last_round": rounds[-1] if rounds else DASH,
        "policies": [policy_name(str(p)) for p in record.get("policies", [])],
        "seed": str(record.get("seed", DASH)),
        "reference": policy_name(str(record.get("reference", ""))),
        "households": whole(record.get("households")),
        "retrain_every": str(record.get("retrain_every", DASH)),
        "when": when,
        "seconds": duration(timing.get("seconds")),
        "peak_memory": (
            f"{_float(timing['peak_rss_mb']):,.0f} MB" if "peak_rss_mb" in timing else DASH
        ),
        "config_sha256": str(record.get("config_sha256", "")),
        "offpolicy": _offpolicy(record.get("offpolicy_in_simulated_rounds")),
        "policy_seconds": [
            {
                **policy_name(str(p)),
                "total": duration((per_policy[p] or {}).get("total")),
                "trained": number(len((record.get("trained_rounds") or {}).get(p, []))),
            }
            for p in timed
        ],
    }


def _offpolicy(summary: Any) -> str:
    """The off-policy estimates' check in simulated rounds (``simulation.json``), or ""."""
    if not isinstance(summary, dict) or not summary.get("estimates"):
        return ""
    text = (
        f"추정 {number(summary['estimates'])}건 · 평균 절대 오차 "
        f"{share(summary.get('mean_absolute_error'))} · 구간 포함률 "
        f"{share(summary.get('coverage'))}"
    )
    if summary.get("estimates_label_scale"):  # against what a visit records (docs/offpolicy.md)
        text += (
            f"; 방문 기록 기준 평균 절대 오차 "
            f"{share(summary.get('mean_absolute_error_label_scale'))} · 구간 포함률 "
            f"{share(summary.get('coverage_label_scale'))}"
        )
    return text


def simulation_context(results: SimulationResults, level: float) -> dict[str, Any]:
    """Everything the page shows (pure). ``level``: the intervals' level when the record does
    not say it (the config's ``simulate.interval``)."""
    record = results.record
    reference = str(record.get("reference", ""))
    policies_table = results.tables.get("policies", pd.DataFrame(columns=[POLICY]))
    order = [str(p) for p in policies_table[POLICY]] or [
        str(p) for p in record.get("policies", []) if p != "none"
    ]
    per_round = results.tables.get("rounds")
    level = _float(record.get("interval", level))
    rows = policy_rows(policies_table, reference)
    return {
        "sim": header_facts(record, results.timing),
        "level": f"{level:.0%}",
        "policy_rows": rows,
        "excluding_zero": sum(
            r["need_found_diff"]["excludes_zero"] or r["averted_diff"]["excludes_zero"]
            for r in rows
        ),
        "signal_rows": signal_rows(results.tables.get("signals", pd.DataFrame(columns=[POLICY]))),
        "round_tables": [] if per_round is None else round_tables(per_round, order),
        "plots": [
            {"name": name, "title": PLOT_TITLES[name], "uri": plot_uri(results.plots[name])}
            for name in (PLOT_MEASURES, PLOT_FAIRNESS)
            if name in results.plots
        ],
    }


def simulation_summary(results: SimulationResults) -> dict[str, Any]:
    """What ``report.json`` records of the results the page was built from."""
    record = results.record
    rounds = [round_label(r) for r in record.get("rounds", [])]
    return {
        "record_sha256": results.record_sha256,
        "config_sha256": record.get("config_sha256"),
        "seed": record.get("seed"),
        "rounds": len(rounds),
        "policies": list(record.get("policies", [])),
        "reference": record.get("reference"),
    }


def render_simulation(
    env: Any, common: dict[str, Any], results: SimulationResults, level: float
) -> tuple[str, dict[str, Any]]:
    """The page's text and what the report's record keeps of it."""
    text = env.get_template("simulation.html").render(
        **common, **simulation_context(results, level)
    )
    return text, simulation_summary(results)
