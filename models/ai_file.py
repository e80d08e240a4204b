"""The high-impact AI file (고영향 인공지능 문서) of a registered model version.

Under the AI Framework Act (인공지능 기본법, in force 2026-01-22) AI used in public services is
high-impact: its purpose, data and legal basis, performance, fairness, limits, human oversight,
monitoring and retention must be documented. This module writes that document, in Markdown,
from the *sealed training record* (``pipeline.tracking.seal``: the run's params, tags, metrics
and its version's tags, as sealed) and a few of the run's artifacts whose sha256 the record
holds: the resolved config, the data-source catalogue as the run kept it, the fairness and proxy
tables and the override rates. Pure: the same record and artifacts give the same bytes, so the
audit can generate the file again and compare.

Only facts that the AI file's own logging cannot change are read: the record's ``artifacts``
(which gain the file) and the version's tags (which gain its link) are not.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

# A proxy check AUC at or above this is named among the known limits (an audit-only attribute
# the inputs predict this well can be discriminated against through them).
PROXY_AUC_LIMIT = 0.7


@dataclass(frozen=True)
class AiFileInputs:
    """What the file is generated from: the sealed record (parsed JSON) and the bytes of the
    artifacts it names (None when the run kept none)."""

    record: Mapping[str, Any]
    config: bytes | None
    data_sources: bytes | None
    fairness: bytes | None
    proxy: bytes | None
    overrides: bytes | None


# --- reading the record ----------------------------------------------------------------------


def _last(record: Mapping[str, Any], key: str) -> float | None:
    """The last logged value of a metric (None when not logged; NaN kept as NaN)."""
    history = (record.get("metrics") or {}).get(key)
    if not history:
        return None
    value = history[-1][2]
    return float(value) if not isinstance(value, str) else float("nan")


def _json(data: bytes | None) -> Any:
    return None if data is None else json.loads(data.decode("utf-8"))


def _csv(data: bytes | None) -> pd.DataFrame | None:
    return None if data is None else pd.read_csv(io.BytesIO(data))


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.1f}%"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _interval(record: Mapping[str, Any], model: str, measure: str, low: str, high: str) -> str:
    """``0.623 [0.587, 0.663]`` from the bootstrap metrics of ``model``."""
    base = f"bootstrap.{model}."
    point = _last(record, base + measure)
    if point is None:
        return "n/a"
    return f"{_num(point)} [{_num(_last(record, base + low))}, {_num(_last(record, base + high))}]"


# --- the sections ----------------------------------------------------------------------------


def _header(inputs: AiFileInputs) -> list[str]:
    r = inputs.record
    params, tags = r.get("params") or {}, r.get("tags") or {}
    version = r.get("model_version") or {}
    name = version.get("name") or params.get("training.model_name", "?")
    number = version.get("version") or tags.get("outreach.model_version", "?")
    run = (r.get("run") or {}).get("run_id", "?")
    return [
        f"# 고영향 인공지능 문서 (High-impact AI file): {name} version {number}",
        "",
        "인공지능 기본법(2026-01-22 시행)은 공공 서비스에 쓰이는 인공지능을 고영향 인공지능으로 "
        "보고 위험 관리, 설명, 사람의 감독과 문서화를 요구합니다. 이 문서는 이 모형 버전의 "
        "봉인된 학습 기록(`seal/seal.json`)에서 자동으로 만들어지며, `outreach audit`가 같은 "
        "기록에서 다시 만들어 한 바이트까지 대조합니다.",
        "",
        f"- 모형 (model): `{name}` version {number}, 후보 (candidate) "
        f"`{params.get('training.candidate', '?')}`, 학습 엔진 "
        f"`{params.get('training.engine', '?')}`",
        f"- 학습 실행 (training run): `{run}`, 기준 월 (as of) {params.get('as_of', '?')}",
        f"- 학습 회차 (training rounds): {params.get('train_rounds', '?')}; 시험 회차 (test "
        f"rounds): {params.get('test_rounds', '?')}; 입력 변수 {params.get('n_inputs', '?')}개",
        f"- 코드 (code): commit `{tags.get('code.git_commit', '?')}` (dirty: "
        f"{tags.get('code.git_dirty', '?')}); 특징 자료 digest "
        f"`{tags.get('outreach.features_digest', '?')}`",
        f"- 봉인 형식 (seal format): `{r.get('format', '?')}`",
        "",
    ]


def _purpose(inputs: AiFileInputs) -> list[str]:
    params = inputs.record.get("params") or {}
    return [
        "## 1. 목적과 의도된 용도 (Purpose and intended use)",
        "",
        "복지 사각지대의 위기가구를 찾기 위해, 각 읍면동에서 지원이 필요할 가능성이 높은 가구를 "
        "순서대로 정해 담당 공무원이 방문·전화 확인할 목록을 만듭니다. 목록의 길이는 읍면동의 "
        "방문 가능 인원(capacity)으로 정해지며, 선정된 가구마다 근거가 된 위기정보(선정 사유)가 "
        "함께 전달됩니다.",
        "",
        "Intended use: ranking households within each 읍면동 so that caseworkers can reach those "
        "most likely in hidden need first, within their capacity. The score only orders outreach; "
        "a caseworker decides whether and how to contact, and which support to offer.",
        "",
        "쓰면 안 되는 용도 (not for): 급여 자격 판정, 급여의 거절·중지·환수, 부정수급 조사, "
        "신용·고용 판단, 다른 기관에의 제공. 점수만으로 불이익한 결정을 하지 않습니다.",
        "",
        f"선택적 라벨 처리 `{params.get('training.selective_labels.method', '?')}`, 완화 "
        f"(mitigation) `{params.get('training.mitigation.method', '?')}`; 게이트 지표 "
        f"`{(inputs.record.get('tags') or {}).get('outreach.gate_metric', '?')}`.",
        "",
    ]


def _data(inputs: AiFileInputs) -> list[str]:
    out = [
        "## 2. 자료의 출처와 법적 근거 (Data: source agencies and legal basis)",
        "",
    ]
    sources = _json(inputs.data_sources)
    if not sources:
        return [
            *out,
            "이 학습 실행은 자료 출처 목록을 보관하지 않았습니다 (the run kept no data-source "
            "catalogue: trained before it existed).",
            "",
        ]
    rows = []
    for s in sources:
        agencies = ", ".join(a["ko"] for a in s["agencies"])
        kinds = f" ({', '.join(s['indicators_ko'])})" if s.get("indicators_ko") else ""
        rows.append(
            [
                f"{s['name_ko']} ({s['name_en']}){kinds}",
                agencies,
                s["legal_basis_ko"],
                s["use_ko"],
                ", ".join(f"`{t}`" for t in s["tables"]),
            ]
        )
    out += _table(
        ["자료 (data)", "원천 기관 (agencies)", "법적 근거", "용도 (use)", "원자료"], rows
    )
    out += [
        "",
        "Legal basis (English): "
        + "; ".join(dict.fromkeys(s["legal_basis_en"] for s in sources))
        + ".",
        "",
        "최소 수집: 이름·주민등록번호 같은 직접 식별자는 적재(ingest) 단계에서 가명 키로 바뀌며 "
        "모형 입력, MLflow, 기록과 목록에 들어가지 않습니다. 각 읍면동은 자기 가구만 봅니다. "
        "성별·연령대·장애 같은 보호 속성은 공정성 점검에만 쓰입니다.",
        "",
    ]
    return out


def _performance(inputs: AiFileInputs) -> list[str]:
    r = inputs.record
    params = r.get("params") or {}
    candidate = params.get("training.candidate", "?")
    samples = params.get("training.backtest.bootstrap_samples", "?")
    out = [
        "## 3. 성능 (Performance, with 95% intervals)",
        "",
        f"시험 회차 {params.get('test_rounds', '?')}의 역검증(backtest), 방문 가능 인원(capacity) "
        "까지의 목록 기준. 합성 자료의 숨은 실제(truth)에 대한 값이며, 괄호는 가구 재표본 "
        f"부트스트랩({samples}회) 95% 구간입니다.",
        "",
    ]
    if _last(r, f"bootstrap.{candidate}.truth_precision") is None:
        out += ["실제(truth)가 없어 구간을 계산하지 않았습니다 (no truth: no intervals).", ""]
    else:
        rows = []
        for model, label in ((candidate, f"모형 `{candidate}`"), ("rule", "기존 규칙 (rule)")):
            rows.append(
                [
                    label,
                    _interval(
                        r, model, "truth_precision", "truth_precision_low", "truth_precision_high"
                    ),
                    _interval(r, model, "need_found", "need_found_low", "need_found_high"),
                    _interval(r, model, "lift_over_rule", "lift_low", "lift_high"),
                ]
            )
        out += _table(
            [
                "",
                "정밀도 (precision at capacity)",
                "필요 가구 발견율 (need found)",
                "규칙 대비 향상 (lift over rule)",
            ],
            rows,
        )
        out.append("")
    out += [
        f"- ROC AUC (관측 라벨, observed labels): "
        f"{_num(_last(r, f'{candidate}.roc_auc_mean'))} ± "
        f"{_num(_last(r, f'{candidate}.roc_auc_sd'))} (회차 간 표준편차)",
        f"- 보정 (calibration): pooled ECE {_num(_last(r, f'{candidate}.ece_pooled'), 4)}, "
        f"잡음 한계 (noise 95%) {_num(_last(r, f'{candidate}.ece_noise95'), 4)}, 기준 "
        f"{params.get('training.gates.max_ece', '?')}",
        "",
    ]
    return out


def _fairness(inputs: AiFileInputs) -> list[str]:
    params = inputs.record.get("params") or {}
    tags = inputs.record.get("tags") or {}
    out = ["## 4. 공정성과 대리변수 점검 (Fairness and proxy results)", ""]
    fairness = _csv(inputs.fairness)
    if fairness is None:
        out += ["실제(truth)가 없어 공정성 점검을 하지 않았습니다 (not run: no truth).", ""]
    else:
        flagged = fairness[fairness["flagged"].astype(bool)]
        small = fairness[fairness["too_small"].astype(bool)]
        out += [
            f"- 경고 집단 (flagged groups): {len(flagged)}개 (허용 최대 "
            f"{params.get('training.gates.max_fairness_flags', '?')}), 비교하기에 작은 집단 "
            f"{len(small)}개, 비교한 집단 {len(fairness) - len(small)}개; 비율 한계 "
            f"(ratio bounds) {params.get('training.fairness.ratio_bounds', '?')}",
            f"- 공정성 게이트 (fairness gate): {tags.get('gate.fairness', 'n/a')}",
            f"- 완화 (mitigation): `{params.get('training.mitigation.method', '?')}` (강도 "
            f"{params.get('training.mitigation.strength', '?')}); 이유: "
            f"{params.get('training.mitigation.reason', '')}",
            "",
        ]
        if len(flagged):
            out += _table(
                ["속성 (attribute)", "집단 (group)", "정밀도 비 [95%]", "재현율 비 [95%]"],
                [
                    [
                        row["attribute"],
                        row["group"],
                        f"{_num(row['precision_ratio'])} [{_num(row['precision_ratio_low'])}, "
                        f"{_num(row['precision_ratio_high'])}]",
                        f"{_num(row['judged_recall_ratio'])} "
                        f"[{_num(row['judged_recall_ratio_low'])}, "
                        f"{_num(row['judged_recall_ratio_high'])}]",
                    ]
                    for _, row in flagged.iterrows()
                ],
            )
            out.append("")
        else:
            out += ["경고된 집단이 없습니다 (no group flagged).", ""]
    proxy = _csv(inputs.proxy)
    if proxy is not None and len(proxy):
        out += [
            "대리변수 점검 (proxy check: how well the model inputs predict each audit-only "
            "attribute):",
            "",
            *_table(
                ["속성 (attribute)", "AUC", "정확도 (accuracy)", "다수 집단 비율"],
                [
                    [
                        row["attribute"],
                        _num(row["auc"]),
                        _num(row["accuracy"]),
                        _num(row["majority_accuracy"]),
                    ]
                    for _, row in proxy.iterrows()
                ],
            ),
            "",
        ]
    return out


def _limits(inputs: AiFileInputs) -> list[str]:
    r = inputs.record
    params = r.get("params") or {}
    candidate = params.get("training.candidate", "?")
    tests = [t for t in str(params.get("test_rounds", "")).split(",") if t]
    out = [
        "## 5. 알려진 한계 (Known limits)",
        "",
        "- 합성 자료로 학습·평가했습니다. 실제(truth)에 대한 수치는 실제 자료에서는 잴 수 "
        "없습니다 (trained and evaluated on synthetic data).",
        f"- 시험 회차가 {len(tests)}개뿐이고 읍면동별 목록이 짧아 구간이 넓습니다; 집단별 "
        "수치는 더 그렇습니다.",
        "- 필요(need)는 방문한 공무원의 판단으로 측정되며, 방문 자체에 달려 있습니다.",
        "- 라벨은 과거 목록에 오른 가구에만 있습니다 (6절).",
    ]
    ece, noise = _last(r, f"{candidate}.ece_pooled"), _last(r, f"{candidate}.ece_noise95")
    threshold = params.get("training.gates.max_ece")
    if ece is not None and threshold is not None and ece > float(threshold):
        out.append(
            f"- 보정 오차 ECE {_num(ece, 4)}가 기준 {threshold}를 넘습니다 (잡음 한계 "
            f"{_num(noise, 4)}): 점수를 확률 그대로 읽지 마십시오."
        )
    proxy = _csv(inputs.proxy)
    if proxy is not None:
        strong = proxy[proxy["auc"] >= PROXY_AUC_LIMIT]
        for _, row in strong.iterrows():
            out.append(
                f"- 입력 변수가 `{row['attribute']}`를 AUC {_num(row['auc'])}로 예측합니다: "
                "이 속성의 대리변수로 작동할 수 있습니다 (4절의 공정성 점검 참조)."
            )
    out.append("")
    return out


def _selective(inputs: AiFileInputs) -> list[str]:
    params = inputs.record.get("params") or {}
    compared = params.get("training.compared", "none")
    return [
        "## 6. 선택적 라벨 처리 (Selective-label handling)",
        "",
        "라벨은 과거 목록이 고른 가구(주로 중앙 규칙, 일부 지역 재량과 무작위 탐색)에만 있습니다. "
        "그대로 학습한 모형은 '목록에 오른 가구 중 누가 필요했는가'를 배우고 규칙의 사각지대를 "
        "물려받습니다. 방문 대상이 아니었던 가구는 라벨이 없을 뿐 '필요 없음'이 아니며, 공무원이 "
        "건너뛴(skip) 가구도 라벨에서 빠집니다.",
        "",
        f"- 적용한 방법 (method): `{params.get('training.selective_labels.method', '?')}`; 이유: "
        f"{params.get('training.selective_labels.reason', '')}",
        f"- 역검증에서 함께 비교한 것 (compared): {compared}",
        "",
    ]


def _oversight(inputs: AiFileInputs) -> list[str]:
    r = inputs.record
    tags = r.get("tags") or {}
    out = [
        "## 7. 사람의 감독 (Human oversight)",
        "",
        "담당 공무원이 결정합니다. 목록은 방문·전화 확인의 순서를 제안할 뿐이며, 공무원은 "
        "목록의 가구를 사유와 함께 건너뛰거나(skip) 목록에 없는 가구를 더할(add) 수 있고, 그 "
        "결정은 돌려받은 목록으로 기록되어 다음 학습에 반영됩니다. 점수로 자동 거절되는 것은 "
        "없습니다. 모형의 채택은 게이트가 정하고, 사람이 `outreach promote`·`outreach "
        "rollback`으로 바꿀 수 있으며 모든 이동이 계보 원장(ledger)에 남습니다.",
        "",
    ]
    overrides = _json(inputs.overrides)
    if overrides is None:
        out += ["이 학습 실행에는 재정의 기록이 없습니다 (no override record).", ""]
    else:
        returned = overrides.get("listed_returned", 0)
        out += [
            f"학습 회차에서 돌려받은 목록 (caseworkers' overrides in the training rounds): 목록 "
            f"가구 {returned}가구의 결과, 건너뜀 {overrides.get('skipped', 0)}가구 "
            f"({_pct(overrides.get('skip_rate'))}), 추가 {overrides.get('added', 0)}가구 "
            f"({_pct(overrides.get('add_rate'))}).",
            "",
        ]
        reasons = [x for x in overrides.get("reasons", []) if x.get("households")]
        if reasons:
            out += _table(
                ["사유 (reason)", "구분", "가구", "비율"],
                [
                    [
                        x["name_en"],
                        x["action"],
                        str(x["households"]),
                        _pct(x.get("share_of_listed")),
                    ]
                    for x in reasons
                ],
            )
            out.append("")
    version = r.get("model_version") or {}
    gates = json.loads((version.get("tags") or {}).get("gates", "[]"))
    out += [
        f"게이트 판정 (gates): {tags.get('outreach.decision', '?')}",
        "",
        *_table(
            ["게이트 (gate)", "통과", "값", "기준", "면제 사유 (waiver)"],
            [
                [
                    g["name"],
                    str(g["passed"]),
                    _num(g.get("value"), 4),
                    _num(g.get("threshold"), 4),
                    g.get("waiver_reason") or "",
                ]
                for g in gates
            ],
        ),
        "",
    ]
    return out


def _shadow_line(rounds: str | None) -> str:
    if rounds is None or int(rounds) == 0:
        return (
            "- 새 버전의 그림자 채점(`outreach score --shadow`)은 채택 조건이 아닙니다 "
            "(`training.gates.min_shadow_rounds` = 0)."
        )
    return (
        f"- 새 버전은 그림자 채점(`outreach score --shadow`) {rounds}회를 거쳐야 챔피언이 될 수 "
        "있습니다."
    )


def _monitoring(inputs: AiFileInputs) -> list[str]:
    config = _json(inputs.config) or {}
    m = config.get("monitoring") or {}
    params = inputs.record.get("params") or {}
    return [
        "## 8. 모니터링과 사고 대응 (Monitoring and incident path)",
        "",
        f"- 회차마다 (`outreach score`): 특징 집단의 PSI가 {m.get('feature_group_psi', '?')}, "
        f"점수의 PSI가 {m.get('score_psi', '?')}를 넘거나, 방문 구분의 기대 정밀도가 "
        f"{m.get('min_expected_precision', '?')} 아래이거나, 라벨이 "
        f"{m.get('calibration_min_answered', '?')}가구 이상 돌아온 뒤 관측 정밀도가 점수가 약속한 "
        f"{m.get('interval', '?')} 구간 밖이면 경보가 울리고 보고서 첫 화면에 표시됩니다.",
        _shadow_line(params.get("training.gates.min_shadow_rounds")),
        "- 사고 대응 (incident path): 문제가 보이면 `outreach rollback --reason ...`(make "
        "rollback)으로 이전 챔피언으로 되돌리고, `outreach audit`(make audit)로 목록에서 코드까지 "
        "계보를 검증합니다. 모든 등록·판정과 챔피언 변경은 해시 사슬로 묶인 계보 원장"
        "(`ledger/lineage.jsonl`)에 남습니다.",
        "",
    ]


def _retention(inputs: AiFileInputs) -> list[str]:
    config = _json(inputs.config) or {}
    retention = config.get("retention")
    out = ["## 9. 보존과 파기 (Retention)", ""]
    if retention is None:
        return [*out, "이 학습 실행의 설정에는 보존 기간이 없습니다 (not configured).", ""]
    months = int(retention["period_months"])
    years = f"{months // 12}년" if months % 12 == 0 else f"{months}개월"
    return [
        *out,
        f"가구 단위 자료는 {months}개월({years})이 지나면 파기합니다 (`retention.period_months` "
        f"= {months}; 위기정보는 5년 보존 후 파기). `outreach retention`(make retention)이 원자료, "
        "적재 자료, 특징 회차, 점수·목록·보고서, 결과 저장소와 MLflow의 가구 단위 산출물을 "
        "지우고 파기 기록을 계보 원장에 남깁니다; 집계, digest와 원장은 남습니다. `outreach run`의 "
        f"첫 단계로 실행: {'예' if retention.get('in_run') else '아니오'}.",
        "",
    ]


def _provenance(inputs: AiFileInputs, sources: Mapping[str, str]) -> list[str]:
    digests = inputs.record.get("artifacts") or {}
    rows = [[f"`{path}`", f"`{digests.get(path, 'not kept')}`"] for path in sources.values()]
    return [
        "## 10. 이 문서의 근거 (Provenance)",
        "",
        "봉인된 학습 기록의 params, tags, metrics, 버전 정보와 다음 산출물(봉인 기록이 sha256을 "
        "담고 있음)에서 생성:",
        "",
        *_table(["산출물 (artifact)", "sha256"], rows),
        "",
    ]


def render_ai_file(inputs: AiFileInputs, sources: Mapping[str, str]) -> str:
    """The AI file's Markdown. ``sources``: role (config, data_sources, fairness, proxy,
    overrides) -> the artifact path it was read from, named in the provenance section."""
    lines = [
        *_header(inputs),
        *_purpose(inputs),
        *_data(inputs),
        *_performance(inputs),
        *_fairness(inputs),
        *_limits(inputs),
        *_selective(inputs),
        *_oversight(inputs),
        *_monitoring(inputs),
        *_retention(inputs),
        *_provenance(inputs, sources),
    ]
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["PROXY_AUC_LIMIT", "AiFileInputs", "render_ai_file"]
