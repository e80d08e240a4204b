"""The crisis-information catalogue and the outcome codes, loaded from ``configs/``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from pipeline.config import ConfigError, FrozenModel, Month
from pipeline.io import parse_yaml
from pipeline.months import parse_month
from pipeline.vocabulary import (
    CASE_STATUSES_REQUIRED,
    DRIVERS,
    INCOME_BANDS,
    NEED_TYPES,
    NO_SUPPORT,
    TENURES,
)

Driver = Literal[DRIVERS]  # type: ignore[valid-type]
Target = Literal["head", "adult", "elderly", "child", "member"]
ValueModel = Literal[
    "flag", "months", "months_long", "krw_small", "krw_medium", "krw_large", "grade", "days"
]


class _Frozen(FrozenModel):
    """The base of every catalogue entry."""


class SyntheticEmission(_Frozen):
    """How the generator emits one indicator from the hidden state (generator only)."""

    driver: Driver
    target: Target
    base: float = Field(ge=0, le=0.5)
    slope: float = Field(ge=0, le=1)
    lag: tuple[float, ...]
    value: ValueModel
    tenure: tuple[str, ...] | None = None
    alone: bool = False  # only one-person households (an isolation check of people living alone)
    # a bill left unpaid: the false-alarm rate scales with the household's payment habit
    habit: bool = False

    @field_validator("tenure")
    @classmethod
    def _known_tenures(cls, tenure: tuple[str, ...] | None) -> tuple[str, ...] | None:
        unknown = [t for t in tenure or () if t not in TENURES]
        if unknown:
            raise ValueError(f"unknown tenure {unknown[0]!r}: expected one of {', '.join(TENURES)}")
        return tenure

    @field_validator("lag")
    @classmethod
    def _lag_is_distribution(cls, lag: tuple[float, ...]) -> tuple[float, ...]:
        if not lag or any(p < 0 for p in lag) or abs(sum(lag) - 1.0) > 1e-6:
            raise ValueError(
                "lag must be non-negative probabilities for 0, 1, 2... months summing to 1"
            )
        return lag


class Bounds(_Frozen):
    """The plausible values of one indicator, in its unit (checked by validation).

    A value outside ``[min, max]`` is set aside (``quarantine``) or stops the run (``stop``).
    """

    min: float = Field(ge=0)
    max: float
    on_failure: Literal["quarantine", "stop"] = "quarantine"

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.max < self.min:
            raise ValueError(f"bounds: max {self.max:g} is below min {self.min:g}")
        return self


class Unit(_Frozen):
    """A unit of indicator values, with the bounds its indicators have unless they set theirs."""

    name_ko: str
    name_en: str
    bounds: Bounds | None = None


class Indicator(_Frozen):
    """One kind of crisis information delivered by a source agency."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name_ko: str
    name_en: str
    group: str
    unit: str
    agency_ko: str
    agency_en: str
    available_from: Month | None = None
    available_until: Month | None = None  # the source's last month (None: still delivering)
    bounds: Bounds | None = None  # default: the unit's bounds
    synthetic: SyntheticEmission

    @property
    def available_from_index(self) -> int | None:
        return None if self.available_from is None else parse_month(self.available_from)

    @property
    def available_until_index(self) -> int | None:
        return None if self.available_until is None else parse_month(self.available_until)


class NamedEntry(_Frozen):
    name_ko: str
    name_en: str


class CodedEntry(NamedEntry):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")


class IndicatorCatalogue(_Frozen):
    """All indicator definitions, their groups and units."""

    groups: dict[str, NamedEntry]
    units: dict[str, Unit]
    indicators: tuple[Indicator, ...]

    @model_validator(mode="after")
    def _consistent(self) -> IndicatorCatalogue:
        codes = [ind.code for ind in self.indicators]
        duplicates = sorted({c for c in codes if codes.count(c) > 1})
        if duplicates:
            raise ValueError(f"duplicate indicator codes: {', '.join(duplicates)}")
        for ind in self.indicators:
            if ind.group not in self.groups:
                raise ValueError(f"indicator {ind.code}: unknown group {ind.group!r}")
            if ind.unit not in self.units:
                raise ValueError(f"indicator {ind.code}: unknown unit {ind.unit!r}")
            if ind.bounds is None and self.units[ind.unit].bounds is None:
                raise ValueError(
                    f"indicator {ind.code}: no plausibility bounds (set bounds on the indicator "
                    f"or on its unit {ind.unit!r})"
                )
        used = {ind.group for ind in self.indicators}
        empty = [g for g in self.groups if g not in used]
        if empty:  # its features would be columns of nothing (and the feature build fails)
            raise ValueError(
                f"group {empty[0]!r} has no indicator: give it one or remove it (and its "
                "entries in services.yaml signal_groups and data_sources.yaml)"
            )
        return self

    @property
    def codes(self) -> list[str]:
        return [ind.code for ind in self.indicators]

    @property
    def agencies(self) -> list[str]:
        return sorted({ind.agency_ko for ind in self.indicators})

    def by_code(self) -> dict[str, Indicator]:
        return {ind.code: ind for ind in self.indicators}

    def bounds_of(self, indicator: Indicator) -> Bounds:
        """The indicator's plausibility bounds: its own, else its unit's."""
        bounds = indicator.bounds or self.units[indicator.unit].bounds
        assert bounds is not None  # checked when the catalogue is loaded
        return bounds


class OutcomeCode(_Frozen):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name_ko: str
    name_en: str
    label: Literal[0, 1] | None
    resolved: bool
    status: str
    ministry: str
    no_support_reason: str | None = None
    carry: bool = False


class SelectionReason(_Frozen):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name_ko: str
    name_en: str
    # whether the probability of choosing a household this way is recorded (false: nobody can
    # know it, as for an office's own choice; the row's selection_probability is then empty)
    probability_logged: bool = True


class OverrideReason(CodedEntry):
    """Why a caseworker skipped a listed household (``skip``) or added one (``add``)."""

    action: Literal["skip", "add"]


class CallResult(_Frozen):
    """A result of the automated first-contact call, and where it moves the household next."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name_ko: str
    name_en: str
    next_tier: Literal["visit", "phone", "none"]
    status: str
    ministry: str
    no_support_reason: str | None = None


class OutcomeCatalogue(_Frozen):
    """Visit outcome codes with their labels, the reasons a household was listed, case statuses,
    the ministry's table columns, override reasons and call results (``configs/outcomes.yaml``)."""

    outcomes: tuple[OutcomeCode, ...]
    selection_reasons: tuple[SelectionReason, ...]
    case_statuses: tuple[CodedEntry, ...]
    ministry_categories: tuple[CodedEntry, ...]
    no_support_reasons: tuple[CodedEntry, ...]
    override_reasons: tuple[OverrideReason, ...]
    call_results: tuple[CallResult, ...]

    @model_validator(mode="after")
    def _consistent(self) -> OutcomeCatalogue:
        for section in (
            "outcomes",
            "selection_reasons",
            "case_statuses",
            "ministry_categories",
            "no_support_reasons",
            "override_reasons",
            "call_results",
        ):
            codes = [entry.code for entry in getattr(self, section)]
            duplicate = next((c for c in codes if codes.count(c) > 1), None)
            if duplicate is not None:
                raise ValueError(f"{section}: code {duplicate!r} appears twice")
        statuses = {s.code for s in self.case_statuses}
        categories = {c.code for c in self.ministry_categories}
        no_support = {r.code for r in self.no_support_reasons}
        for section in ("outcomes", "call_results"):
            for entry in getattr(self, section):
                where = f"{section}: {entry.code}"
                if entry.status not in statuses:
                    raise ValueError(f"{where}: status {entry.status!r} is not a case status")
                if entry.ministry not in categories:
                    raise ValueError(
                        f"{where}: ministry {entry.ministry!r} is not a ministry_categories code"
                    )
                if (entry.ministry == NO_SUPPORT) != (entry.no_support_reason is not None):
                    raise ValueError(
                        f"{where}: no_support_reason is set exactly when ministry is {NO_SUPPORT}"
                    )
                if (
                    entry.no_support_reason is not None
                    and entry.no_support_reason not in no_support
                ):
                    raise ValueError(
                        f"{where}: no_support_reason {entry.no_support_reason!r} is not a "
                        "no_support_reasons code"
                    )
        for required in CASE_STATUSES_REQUIRED:
            if required not in statuses:
                raise ValueError(f"case_statuses: {required!r} is missing")
        return self

    @property
    def codes(self) -> list[str]:
        return [o.code for o in self.outcomes]

    @property
    def reason_codes(self) -> list[str]:
        return [r.code for r in self.selection_reasons]

    @property
    def logged_reason_codes(self) -> list[str]:
        """The selection reasons whose rows must record a selection probability."""
        return [r.code for r in self.selection_reasons if r.probability_logged]

    def label_of(self) -> dict[str, int | None]:
        return {o.code: o.label for o in self.outcomes}

    def outcome(self, code: str) -> OutcomeCode:
        """The outcome of ``code`` (KeyError when unknown)."""
        return {o.code: o for o in self.outcomes}[code]

    def call_result(self, code: str) -> CallResult:
        """The call result of ``code`` (KeyError when unknown)."""
        return {c.code: c for c in self.call_results}[code]

    def override(self, code: str) -> OverrideReason:
        """The override reason of ``code`` (KeyError when unknown)."""
        return {r.code: r for r in self.override_reasons}[code]

    def status_name(self, code: str, language: str = "ko") -> str:
        """The case status's name in ``language`` (``ko`` or ``en``)."""
        entry = {s.code: s for s in self.case_statuses}[code]
        return entry.name_ko if language == "ko" else entry.name_en


class Eligibility(_Frozen):
    """What a household must have for a service to be offered (all that are given)."""

    income_bands: tuple[str, ...] | None = None
    min_head_age: int | None = Field(None, ge=0, le=120)
    disability: bool = False
    minors: bool = False

    @field_validator("income_bands")
    @classmethod
    def _known_bands(cls, bands: tuple[str, ...] | None) -> tuple[str, ...] | None:
        unknown = [b for b in bands or () if b not in INCOME_BANDS]
        if unknown:
            raise ValueError(
                f"unknown income band {unknown[0]!r}: expected one of {', '.join(INCOME_BANDS)}"
            )
        return bands


class Service(_Frozen):
    """A service a visit can link a household to (configs/services.yaml)."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name_ko: str
    name_en: str
    sector: Literal["public", "private", "other"]
    outcome: Literal["public_support", "private_support"]
    need_types: tuple[str, ...] = Field(min_length=1)
    eligible: Eligibility = Eligibility()

    @field_validator("need_types")
    @classmethod
    def _known_needs(cls, needs: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in needs if n not in NEED_TYPES]
        if unknown:
            raise ValueError(
                f"unknown need type {unknown[0]!r}: expected one of {', '.join(NEED_TYPES)}"
            )
        return needs


class ServiceCatalogue(_Frozen):
    """The services of configs/services.yaml: codes unique, every kind of need served."""

    services: tuple[Service, ...] = Field(min_length=1)
    # The rule mapping (the baseline of the service match): the kinds of need a caseworker reads
    # from each group of crisis signals (groups of configs/indicators.yaml).
    signal_groups: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _complete(self) -> ServiceCatalogue:
        for group, needs in self.signal_groups.items():
            unknown = [n for n in needs if n not in NEED_TYPES]
            if unknown:
                raise ValueError(
                    f"signal_groups: {group}: unknown need type {unknown[0]!r}: expected one of "
                    f"{', '.join(NEED_TYPES)}"
                )
        codes = [s.code for s in self.services]
        repeated = sorted({c for c in codes if codes.count(c) > 1})
        if repeated:
            raise ValueError(f"service code {repeated[0]!r} given twice")
        served = {n for s in self.services for n in s.need_types}
        unserved = [n for n in NEED_TYPES if n not in served]
        if unserved:
            raise ValueError(f"no service serves the need type {unserved[0]!r}")
        return self

    @property
    def codes(self) -> list[str]:
        return [s.code for s in self.services]

    def check_groups(self, groups: Iterable[str], path: Path) -> None:
        """Every indicator group has an entry in ``signal_groups`` and no other is named."""
        groups = list(groups)
        missing = [g for g in groups if g not in self.signal_groups]
        if missing:
            raise ConfigError(f"{path}: signal_groups: indicator group {missing[0]!r} has no entry")
        unknown = sorted(set(self.signal_groups) - set(groups))
        if unknown:
            raise ConfigError(
                f"{path}: signal_groups: unknown indicator group {unknown[0]!r}: expected one of "
                f"{', '.join(groups)}"
            )

    def serves(self) -> np.ndarray:
        """Need types × services: whether the service serves the kind of need."""
        return np.array(
            [[need in s.need_types for s in self.services] for need in NEED_TYPES], dtype=bool
        )

    def group_needs(self, groups: Sequence[str]) -> np.ndarray:
        """``groups`` × need types: whether signals of the group point to the kind of need."""
        return np.array(
            [[need in self.signal_groups.get(g, ()) for need in NEED_TYPES] for g in groups],
            dtype=bool,
        ).reshape(len(groups), len(NEED_TYPES))

    def serving(self, need_type: str) -> list[Service]:
        """The services that serve ``need_type``, in catalogue order."""
        return [s for s in self.services if need_type in s.need_types]


def _load_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: catalogue file not found")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        raise ConfigError(f"{path}: not valid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _first_error(path: Path, exc: ValidationError) -> ConfigError:
    error = exc.errors()[0]
    location = ".".join(str(p) for p in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    return ConfigError(f"{path}: {location or '(top level)'}: {message}")


def load_indicators(path: Path) -> IndicatorCatalogue:
    """Load and validate ``indicators.yaml``."""
    try:
        return IndicatorCatalogue.model_validate(_load_yaml(path))
    except ValidationError as exc:
        raise _first_error(path, exc) from None


def load_outcomes(path: Path) -> OutcomeCatalogue:
    """Load and validate ``outcomes.yaml``."""
    try:
        return OutcomeCatalogue.model_validate(_load_yaml(path))
    except ValidationError as exc:
        raise _first_error(path, exc) from None


# --- the data-source catalogue (configs/data_sources.yaml) -----------------------------------

DATA_SOURCES_FILE = "data_sources.yaml"


class DataSource(_Frozen):
    """One kind of data: an indicator group of the crisis-information catalogue (names and
    agencies from there) or another kind (its own names and agency), with its legal basis."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    group: str | None = None
    name_ko: str | None = None
    name_en: str | None = None
    agency_ko: str | None = None
    agency_en: str | None = None
    tables: tuple[str, ...] = Field(min_length=1)
    legal_basis_ko: str = Field(min_length=1)
    legal_basis_en: str = Field(min_length=1)
    use_ko: str = Field(min_length=1)
    use_en: str = Field(min_length=1)

    @model_validator(mode="after")
    def _named_once(self) -> DataSource:
        own = (self.name_ko, self.name_en, self.agency_ko, self.agency_en)
        if self.group is not None and any(v is not None for v in own):
            raise ValueError(
                f"{self.code}: an indicator group takes its names and agencies from the "
                "indicator catalogue (remove name_*/agency_*)"
            )
        if self.group is None and any(v is None for v in own):
            raise ValueError(f"{self.code}: name_ko, name_en, agency_ko and agency_en are required")
        return self


class DataSourceCatalogue(_Frozen):
    """Every kind of household-level data, its source agencies and legal basis."""

    sources: tuple[DataSource, ...] = Field(min_length=1)

    def resolved(self, indicators: IndicatorCatalogue) -> list[dict[str, object]]:
        """Each source with its names, agencies (Korean, English; an indicator group's from its
        indicators, in catalogue order) and indicator names filled in: plain data, as the
        training run keeps it."""
        out: list[dict[str, object]] = []
        for s in self.sources:
            if s.group is not None:
                members = [i for i in indicators.indicators if i.group == s.group]
                group = indicators.groups[s.group]
                names = (group.name_ko, group.name_en)
                agencies = list(dict.fromkeys((i.agency_ko, i.agency_en) for i in members))
                kinds = [i.name_ko for i in members]
            else:
                names = (str(s.name_ko), str(s.name_en))
                agencies = [(str(s.agency_ko), str(s.agency_en))]
                kinds = []
            out.append(
                {
                    "code": s.code,
                    "group": s.group,
                    "name_ko": names[0],
                    "name_en": names[1],
                    "tables": list(s.tables),
                    "agencies": [{"ko": ko, "en": en} for ko, en in agencies],
                    "indicators_ko": kinds,
                    "legal_basis_ko": s.legal_basis_ko,
                    "legal_basis_en": s.legal_basis_en,
                    "use_ko": s.use_ko,
                    "use_en": s.use_en,
                }
            )
        return out


def data_sources_path(indicators: Path) -> Path:
    """The data-source catalogue beside the indicator catalogue it completes."""
    return indicators.with_name(DATA_SOURCES_FILE)


def load_data_sources(
    path: Path, indicators: IndicatorCatalogue, tables: tuple[str, ...] = ()
) -> DataSourceCatalogue:
    """Load and validate ``data_sources.yaml`` against the indicator catalogue: every indicator
    group exactly once, no unknown group; with ``tables`` (the household-level raw tables),
    every one covered and no other named (ConfigError naming the file and entry)."""
    try:
        catalogue = DataSourceCatalogue.model_validate(_load_yaml(path))
    except ValidationError as exc:
        raise _first_error(path, exc) from None
    codes = [s.code for s in catalogue.sources]
    twice = next((c for c in codes if codes.count(c) > 1), None)
    if twice is not None:
        raise ConfigError(f"{path}: sources: code {twice!r} appears twice")
    groups = [s.group for s in catalogue.sources if s.group is not None]
    for s in catalogue.sources:
        if s.group is not None and s.group not in indicators.groups:
            raise ConfigError(f"{path}: sources: {s.code}: unknown indicator group {s.group!r}")
        if s.group is not None and groups.count(s.group) > 1:
            raise ConfigError(f"{path}: sources: indicator group {s.group!r} appears twice")
    missing = [g for g in indicators.groups if g not in groups]
    if missing:
        raise ConfigError(f"{path}: sources: indicator group {missing[0]!r} has no entry")
    if tables:
        named = {t for s in catalogue.sources for t in s.tables}
        unknown = sorted(named - set(tables))
        if unknown:
            raise ConfigError(
                f"{path}: sources: unknown table {unknown[0]!r}: expected one of "
                f"{', '.join(tables)}"
            )
        uncovered = [t for t in tables if t not in named]
        if uncovered:
            raise ConfigError(f"{path}: sources: table {uncovered[0]!r} has no entry")
    return catalogue


def load_services(path: Path) -> ServiceCatalogue:
    """Load and validate ``services.yaml``."""
    try:
        return ServiceCatalogue.model_validate(_load_yaml(path))
    except ValidationError as exc:
        raise _first_error(path, exc) from None
