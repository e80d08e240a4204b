"""The declared feature specification (``configs/features.yaml``) and the names it produces."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.catalogue import IndicatorCatalogue
from pipeline.config import ConfigError
from pipeline.io import parse_yaml

HouseholdFeature = Literal[
    "size",
    "tenure",
    "income_band",
    "benefit_status",
    "minors",
    "elderly_members",
    "disabled_members",
    "single_elderly",
    "single_parent",
    "urban",
]
AuditAttribute = Literal["head_sex", "head_age_band"]
HistoryFeature = Literal["times_listed", "months_since_listed", "last_outcome"]
ContextFeature = Literal["emd_signal_rate_3m", "emd_past_need_rate"]

Windows = tuple[int, ...]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_windows(windows: Windows) -> Windows:
    if any(w < 1 or w > 36 for w in windows) or len(set(windows)) != len(windows):
        raise ValueError("windows must be distinct whole months between 1 and 36")
    return tuple(sorted(windows))


class TrendSpec(_Frozen):
    recent: int = Field(3, ge=1, le=12)
    previous: int = Field(3, ge=1, le=12)


class IndicatorAggregations(_Frozen):
    count_windows: Windows = (1, 3, 6, 12)
    sum_windows: Windows = (12,)
    max_windows: Windows = (12,)
    months_since_last: bool = True
    trend: TrendSpec | None = TrendSpec()

    _windows = field_validator("count_windows", "sum_windows", "max_windows")(_check_windows)


class GroupAggregations(_Frozen):
    count_windows: Windows = (1, 3, 6, 12)
    months_since_last: bool = True

    _windows = field_validator("count_windows")(_check_windows)


class ContextSpec(_Frozen):
    smoothing_households: float = Field(200, gt=0)
    smoothing_visits: float = Field(20, gt=0)
    features: tuple[ContextFeature, ...] = ("emd_signal_rate_3m", "emd_past_need_rate")


class FeatureSpec(_Frozen):
    """What to compute for a round; the names are derived from it, never typed by hand."""

    indicator: IndicatorAggregations = IndicatorAggregations()
    group: GroupAggregations = GroupAggregations()
    distinct_types_windows: Windows = (1, 3, 6, 12)
    months_since_cap: int = Field(36, ge=1, le=120)
    household: tuple[HouseholdFeature, ...] = get_args(HouseholdFeature)
    audit_only: tuple[AuditAttribute, ...] = ("head_sex", "head_age_band")
    history: tuple[HistoryFeature, ...] = ("times_listed", "months_since_listed", "last_outcome")
    context: ContextSpec = ContextSpec()

    _windows = field_validator("distinct_types_windows")(_check_windows)

    @property
    def lookback_months(self) -> int:
        """How far back any window reaches."""
        spans = [
            *self.indicator.count_windows,
            *self.indicator.sum_windows,
            *self.indicator.max_windows,
            *self.group.count_windows,
            *self.distinct_types_windows,
            3,
        ]
        if self.indicator.trend is not None:
            spans.append(self.indicator.trend.recent + self.indicator.trend.previous)
        return max(spans)


def load_feature_spec(path: Path) -> FeatureSpec:
    """Load and validate ``features.yaml`` (one-line errors naming file and key)."""
    if not path.is_file():
        raise ConfigError(f"{path}: feature spec not found")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise ConfigError(f"{path}: not valid YAML") from None
    try:
        return FeatureSpec.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = ".".join(str(p) for p in error["loc"])
        raise ConfigError(
            f"{path}: {location}: {error['msg'].removeprefix('Value error, ')}"
        ) from None


@dataclass(frozen=True)
class FeatureColumn:
    """One model input (or audit column) and what it means."""

    name: str
    kind: str  # indicator, group, distinct, household, history, context, audit
    aggregation: str
    window_months: int | None
    unit: str
    source_indicators: tuple[str, ...]
    description_ko: str
    description_en: str
    dtype: str = "float32"


_AGG_TEXT = {
    "count": ("{w}개월간 보고 건수", "number of signals reported in the last {w} months"),
    "sum": ("{w}개월간 값의 합", "sum of values reported in the last {w} months"),
    "max": ("{w}개월간 최대값", "largest value reported in the last {w} months"),
    "months_since_last": ("마지막 보고 후 경과 개월", "months since the last report"),
    "trend": (
        "최근 {r}개월 건수 - 직전 {p}개월 건수",
        "signals in the last {r} months minus the {p} months before",
    ),
}


def feature_columns(spec: FeatureSpec, catalogue: IndicatorCatalogue) -> list[FeatureColumn]:
    """Every column the spec produces, in a fixed order (model inputs first, audit last)."""
    columns: list[FeatureColumn] = []
    cap = spec.months_since_cap
    for ind in catalogue.indicators:
        unit = catalogue.units[ind.unit].name_en
        src = (ind.code,)
        agg = spec.indicator

        def add(aggregation: str, window: int | None, col_unit: str, ind=ind, src=src) -> None:
            ko, en = _AGG_TEXT[aggregation]
            trend = spec.indicator.trend or TrendSpec()
            fmt = {"w": window, "r": trend.recent, "p": trend.previous}
            suffix = {
                "count": f"count_{window}m",
                "sum": f"sum_{window}m",
                "max": f"max_{window}m",
                "months_since_last": "months_since_last",
                "trend": f"trend_{trend.recent}m",
            }[aggregation]
            columns.append(
                FeatureColumn(
                    name=f"{ind.code}__{suffix}",
                    kind="indicator",
                    aggregation=aggregation,
                    window_months=window,
                    unit=col_unit,
                    source_indicators=src,
                    description_ko=f"{ind.name_ko}: {ko.format(**fmt)}",
                    description_en=f"{ind.name_en}: {en.format(**fmt)}",
                )
            )

        for w in agg.count_windows:
            add("count", w, "signals")
        for w in agg.sum_windows:
            add("sum", w, unit)
        for w in agg.max_windows:
            add("max", w, unit)
        if agg.months_since_last:
            add("months_since_last", None, f"months (cap {cap})")
        if agg.trend is not None:
            add("trend", agg.trend.recent + agg.trend.previous, "signals")
    for group, names in catalogue.groups.items():
        members = tuple(i.code for i in catalogue.indicators if i.group == group)
        for w in spec.group.count_windows:
            columns.append(
                FeatureColumn(
                    group_count_column(group, w),
                    "group",
                    "count",
                    w,
                    "signals",
                    members,
                    f"{names.name_ko}: {w}개월간 보고 건수",
                    f"{names.name_en}: signals reported in the last {w} months",
                )
            )
        if spec.group.months_since_last:
            columns.append(
                FeatureColumn(
                    f"group_{group}__months_since_last",
                    "group",
                    "months_since_last",
                    None,
                    f"months (cap {cap})",
                    members,
                    f"{names.name_ko}: 마지막 보고 후 경과 개월",
                    f"{names.name_en}: months since the last report",
                )
            )
    every = tuple(catalogue.codes)
    for w in spec.distinct_types_windows:
        columns.append(
            FeatureColumn(
                f"distinct_types__{w}m",
                "distinct",
                "distinct",
                w,
                "crisis types",
                every,
                f"{w}개월간 보고된 위기정보 종류 수",
                f"number of distinct crisis types reported in the last {w} months",
            )
        )
    household_text = {
        "size": ("가구원 수", "household size", "persons", "int8"),
        "tenure": ("주거 형태", "tenure", "category", "category"),
        "income_band": (
            "소득 구간(기준중위소득 대비, 0=30% 미만 … 4=100% 초과)",
            "income band (share of median income, 0 = under 30% … 4 = over 100%)",
            "ordinal",
            "int8",
        ),
        "benefit_status": ("수급 상태", "benefit status", "category", "category"),
        "minors": ("18세 미만 가구원 수", "members under 18", "persons", "int8"),
        "elderly_members": ("65세 이상 가구원 수", "members aged 65 or more", "persons", "int8"),
        "disabled_members": ("장애인 가구원 수", "members with a disability", "persons", "int8"),
        "single_elderly": ("1인 노인 가구", "one-person household aged 65 or more", "flag", "int8"),
        "single_parent": ("한부모 가구", "single parent with minors", "flag", "int8"),
        "urban": ("동 지역(도시) 여부", "lives in a 동 (urban)", "flag", "int8"),
    }
    for name in spec.household:
        ko, en, unit, dtype = household_text[name]
        columns.append(
            FeatureColumn(f"hh__{name}", "household", "attribute", None, unit, (), ko, en, dtype)
        )
    history_text = {
        "times_listed": ("이전 발굴 대상 선정 횟수", "times listed before", "rounds", "int8"),
        "months_since_listed": (
            "마지막 선정 후 경과 개월",
            "months since last listed",
            f"months (cap {cap})",
            "float32",
        ),
        "last_outcome": (
            "직전 방문 결과",
            "outcome of the last resolved visit",
            "category",
            "category",
        ),
    }
    for name in spec.history:
        ko, en, unit, dtype = history_text[name]
        columns.append(
            FeatureColumn(f"history__{name}", "history", "history", None, unit, (), ko, en, dtype)
        )
    context_text = {
        "emd_signal_rate_3m": (
            "읍면동 위기정보 보고 가구 비율(3개월, 평활)",
            "share of the 읍면동's households with a signal, 3 months (smoothed)",
        ),
        "emd_past_need_rate": (
            "읍면동 과거 방문 중 지원 연계 비율(평활)",
            "share of the 읍면동's resolved visits that found need (smoothed)",
        ),
    }
    for name in spec.context.features:
        ko, en = context_text[name]
        columns.append(
            FeatureColumn(f"context__{name}", "context", "context", None, "share", (), ko, en)
        )
    audit_text = {
        "head_sex": ("가구주 성별(감사 전용)", "sex of the head (audit only)"),
        "head_age_band": ("가구주 연령대(감사 전용)", "age band of the head (audit only)"),
    }
    for name in spec.audit_only:
        ko, en = audit_text[name]
        columns.append(
            FeatureColumn(
                f"audit__{name}", "audit", "attribute", None, "category", (), ko, en, "category"
            )
        )
    return columns


def group_count_column(group: str, window: int) -> str:
    """The column counting a group's signals reported in the last ``window`` months."""
    return f"group_{group}__count_{window}m"


def model_input_names(spec: FeatureSpec, catalogue: IndicatorCatalogue) -> list[str]:
    """Names of the columns a model may use (audit columns excluded)."""
    return [c.name for c in feature_columns(spec, catalogue) if c.kind != "audit"]
