"""The one typed configuration object, loaded from YAML and validated once at the entry point.

Relative paths in a config are resolved against the working directory the command runs in (the
project root when run through ``make``). A config file only needs the keys it changes: everything
else takes the embedded defaults, which describe a run on the committed sample.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.errors import ConfigError
from pipeline.io import parse_yaml
from pipeline.months import format_month, parse_month
from pipeline.vocabulary import (
    AUDIT_ATTRIBUTES,
    BENEFIT_STATUSES,
    INCOME_BANDS,
    RELATIONS,
    SEXES,
    TENURES,
)


def _check_month(value: str) -> str:
    parse_month(value)
    return value


Month = Annotated[str, AfterValidator(_check_month)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]


class FrozenModel(BaseModel):
    """A frozen settings object that refuses unknown keys and pickles to the same bytes in every
    process: pydantic keeps the names of the fields that were set in a ``set``, whose pickled
    order follows the process's string-hash seed, so they are pickled sorted (the registered
    model holds such objects, and its file's sha256 is part of the lineage)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        return {**state, "__pydantic_fields_set__": sorted(state["__pydantic_fields_set__"])}

    def __setstate__(self, state: dict[str, Any]) -> None:
        fields_set = set(state["__pydantic_fields_set__"])  # a set in pickles made before
        super().__setstate__({**state, "__pydantic_fields_set__": fields_set})


class _Strict(FrozenModel):
    """The base of every section of the config."""


class PathsConfig(_Strict):
    """Where inputs are read from and outputs written to."""

    output_root: Path = Path("outputs")
    raw_input: Path = Path("data_samples/raw")
    truth_input: Path = Path("data_samples/truth")
    indicators: Path = Path("configs/indicators.yaml")
    outcomes: Path = Path("configs/outcomes.yaml")
    features: Path = Path("configs/features.yaml")
    services: Path = Path("configs/services.yaml")


class WindowConfig(_Strict):
    """The data window. ``end`` is "now": no stage reads the wall clock to decide it."""

    start: Month = "2023-10"
    end: Month = "2026-09"
    round_interval_months: int = Field(2, ge=1, le=12)
    first_round: Month = "2024-04"

    @model_validator(mode="after")
    def _ordered(self) -> WindowConfig:
        if parse_month(self.end) < parse_month(self.start):
            raise ValueError(f"end {self.end} is before start {self.start}")
        first = parse_month(self.first_round)
        if not parse_month(self.start) < first <= parse_month(self.end):
            raise ValueError(
                f"first_round {self.first_round} must lie after start and not after end"
            )
        return self

    @property
    def start_index(self) -> int:
        return parse_month(self.start)

    @property
    def end_index(self) -> int:
        return parse_month(self.end)

    @property
    def months(self) -> int:
        return self.end_index - self.start_index + 1

    def round_months(self) -> list[int]:
        """Month indexes of the outreach rounds inside the window."""
        first = parse_month(self.first_round)
        return list(range(first, self.end_index + 1, self.round_interval_months))

    def round_labels(self) -> list[str]:
        return [format_month(m) for m in self.round_months()]


class EconomicShockConfig(_Strict):
    """One period of economic shock: job losses are more frequent inside it."""

    start: Month = "2025-01"
    end: Month = "2025-06"
    job_loss_multiplier: float = Field(2.5, ge=1.0, le=20.0)


class SelectionConfig(_Strict):
    """How past outreach rounds chose households under capacity."""

    capacity_share: float = Field(0.009, gt=0.0, le=0.2)
    central_rule_share: Share = 0.80
    local_discretion_share: Share = 0.12
    exploration_share: Share = 0.08
    rule_window_months: int = Field(3, ge=1, le=12)

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> SelectionConfig:
        total = self.central_rule_share + self.local_discretion_share + self.exploration_share
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                "central_rule_share + local_discretion_share + exploration_share must be 1, "
                f"got {total:.4f}"
            )
        return self


class HardshipConfig(_Strict):
    """Parameters of the hidden monthly hardship process (see docs/synthetic_data.md)."""

    need_threshold: float = 4.5
    burn_in_months: int = Field(36, ge=0, le=120)
    job_loss_rate: float = Field(0.006, ge=0, le=0.5)
    illness_rate: float = Field(0.004, ge=0, le=0.5)
    benefit_loss_rate: float = Field(0.01, ge=0, le=0.5)
    housing_shock_rate: float = Field(0.004, ge=0, le=0.5)
    disaster_rate: float = Field(0.004, ge=0, le=0.5)
    debt_shock_rate: float = Field(0.004, ge=0, le=0.5)
    care_onset_rate: float = Field(0.003, ge=0, le=0.5)
    isolation_rate: float = Field(0.012, ge=0, le=0.5)
    noise_sd: float = Field(0.35, ge=0, le=5)


class ContactEffectConfig(_Strict):
    """What contact does to the hidden process: in the generated history (its past rounds) and
    when the world moves on (``generate --advance``; the setting may change between advances).

    A household linked to support recovers faster: each month of support removes this share of
    its accumulated strain, shocks and lasting needs (public support more than private), for
    ``support_months`` months. Other outcomes (no need found, unreachable, in progress,
    declined, ...) have no effect.
    """

    public_support: Share = 0.15
    private_support: Share = 0.075
    support_months: int = Field(6, ge=1, le=36)

    def effect(self, outcome_code: str) -> float:
        return float(getattr(self, outcome_code, 0.0)) if outcome_code in _SUPPORT_CODES else 0.0


_SUPPORT_CODES = ("public_support", "private_support")


class GeneratorConfig(_Strict):
    """Size and seed of the synthetic administrative data."""

    seed: int = Field(20261126, ge=0)
    households: int = Field(20000, ge=100, le=30_000_000)
    sigungu: int = Field(4, ge=1, le=400)
    emd_per_sigungu: tuple[int, int] = (3, 5)
    economic_shock: EconomicShockConfig = EconomicShockConfig()
    selection: SelectionConfig = SelectionConfig()
    hardship: HardshipConfig = HardshipConfig()
    contact_effect: ContactEffectConfig = ContactEffectConfig()

    @model_validator(mode="after")
    def _emd_range(self) -> GeneratorConfig:
        low, high = self.emd_per_sigungu
        if not 1 <= low <= high <= 99:
            raise ValueError("emd_per_sigungu must be [min, max] with 1 <= min <= max <= 99")
        if self.households < self.sigungu * high * 20:
            raise ValueError(
                f"households ({self.households}) is too small for {self.sigungu} 시군구 with up "
                f"to {high} 읍면동 each: need at least 20 households per 읍면동"
            )
        return self


class RuntimeConfig(_Strict):
    """How the stages run: on this machine (``local``) or on a Dask cluster (``dask``).

    ``workers`` is the size of the local process pool; with ``engine: dask`` the cluster's workers
    decide the parallelism and ``scheduler`` (for example ``tcp://10.0.0.5:8786``) is required.
    """

    workers: int = Field(2, ge=1, le=256)
    progress: bool = True
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    engine: Literal["local", "dask"] = "local"
    scheduler: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _scheduler_for_dask(self) -> RuntimeConfig:
        if self.engine == "dask" and self.scheduler is None:
            raise ValueError(
                "engine dask needs a scheduler address (runtime.scheduler or --scheduler, "
                "for example tcp://127.0.0.1:8786)"
            )
        return self


class BenchConfig(_Strict):
    """``make bench`` settings."""

    households: int = Field(1_000_000, ge=1000)
    sigungu: int = Field(11, ge=1)
    emd_per_sigungu: tuple[int, int] = (10, 18)


class VolumeConfig(_Strict):
    """Bounds on signals per source and reported month, from that source's previous months.

    reference = median of the source's previous ``reference_months`` checked months (at least
    ``min_reference_months`` of them, after its first ``warmup_months``); then
    lower = reference * low_factor - poisson_slack * sqrt(reference) and
    upper = reference * high_factor + poisson_slack * sqrt(reference); a month whose reference is
    below ``min_reference_signals`` is not checked.
    """

    reference_months: int = Field(6, ge=1, le=36)
    min_reference_months: int = Field(3, ge=1, le=36)
    min_reference_signals: int = Field(10, ge=0)
    warmup_months: int = Field(2, ge=0, le=12)
    low_factor: float = Field(0.5, gt=0.0, lt=1.0)
    high_factor: float = Field(1.75, gt=1.0, le=1000.0)
    poisson_slack: float = Field(3.0, ge=0.0, le=20.0)
    high_factor_by_source: dict[str, Annotated[float, Field(gt=1.0, le=1000.0)]] = {
        "disaster_damage": 50.0
    }
    # A source that comes in bursts falls far below the months of a burst once it is over: 0
    # checks no lower bound for it (a disaster source is quiet most months).
    low_factor_by_source: dict[str, Annotated[float, Field(ge=0.0, lt=1.0)]] = {
        "disaster_damage": 0.0
    }

    @model_validator(mode="after")
    def _reference_window(self) -> VolumeConfig:
        if self.min_reference_months > self.reference_months:
            raise ValueError("min_reference_months must not exceed reference_months")
        return self


class ValueSetsConfig(_Strict):
    """Allowed values of the raw tables' coded columns (indicators and outcomes: catalogues)."""

    tenure: tuple[str, ...] = TENURES
    income_band: tuple[str, ...] = INCOME_BANDS
    benefit_status: tuple[str, ...] = BENEFIT_STATUSES
    relation: tuple[str, ...] = RELATIONS
    sex: tuple[str, ...] = SEXES
    max_household_size: int = Field(20, ge=1, le=100)
    max_age: int = Field(120, ge=1, le=150)


class ValidationConfig(_Strict):
    """``outreach validate``: what stops a run, what is set aside, what is kept.

    Partitions are validated in batches of about ``batch_rows`` raw rows (as many
    batches per worker): Great Expectations runs once per table and batch. See docs/validation.md.
    """

    max_rejected_share: Share = 0.01
    example_keys: int = Field(5, ge=1, le=20)
    batch_rows: int = Field(10_000_000, ge=1_000)
    keep_runs: int = Field(20, ge=1, le=1000)
    data_docs: bool = True
    value_sets: ValueSetsConfig = ValueSetsConfig()
    volume: VolumeConfig = VolumeConfig()


class IngestConfig(_Strict):
    """``outreach ingest``: where the pseudonym key comes from.

    The key is read from the environment variable ``key_env`` or else from ``key_file`` (a file
    outside the repository). ``demo_key`` allows the public demo key when neither is given, and
    only for synthetic data; it is meant for the committed sample and must be off for real data.
    """

    key_env: str = Field("OUTREACH_PSEUDONYM_KEY", pattern=r"^[A-Z_][A-Z0-9_]*$")
    key_file: Path | None = None
    demo_key: bool = True


class BacktestConfig(_Strict):
    """Temporal backtests: train on earlier rounds, test on each of the last ``test_rounds``."""

    test_rounds: int = Field(3, ge=1, le=24)
    min_train_rounds: int = Field(3, ge=1, le=60)
    bootstrap_samples: int = Field(500, ge=50, le=20_000)
    seed: int = Field(20261201, ge=0)


class LogisticConfig(_Strict):
    """Logistic regression (median imputation + scaling, one-hot categoricals)."""

    C: float = Field(0.05, gt=0.0)
    max_iter: int = Field(2000, ge=50)


class LightGBMConfig(_Strict):
    """LightGBM; ``n_estimators * num_leaves`` is capped: per-row reasons cost time with it."""

    n_estimators: int = Field(200, ge=1)
    num_leaves: int = Field(15, ge=2)
    learning_rate: float = Field(0.05, gt=0.0, le=1.0)
    min_child_samples: int = Field(20, ge=1)
    subsample: float = Field(0.8, gt=0.0, le=1.0)
    colsample_bytree: float = Field(0.5, gt=0.0, le=1.0)
    reg_lambda: float = Field(1.0, ge=0.0)
    n_jobs: int = Field(2, ge=1, le=256)
    max_trees_x_leaves: int = Field(6000, ge=2)

    @model_validator(mode="after")
    def _size_cap(self) -> LightGBMConfig:
        size = self.n_estimators * self.num_leaves
        if size > self.max_trees_x_leaves:
            raise ValueError(
                f"n_estimators × num_leaves = {size} exceeds max_trees_x_leaves "
                f"{self.max_trees_x_leaves}"
            )
        return self


SelectiveMethod = Literal["plain", "ipw", "negatives", "ipw_negatives"]
SELECTIVE_EVIDENCE = (
    "The living loop on the world of issue 20, where a quarter of the households in need send no "
    "crisis signal for months (docs/simulation.md): over 12 rounds on the sample's world, "
    "retrained on its own lists with plain labels the champion found 41 more households in "
    "need than with added negatives (90% interval -6 to 89) and averted 216 more "
    "hardship-months (38 to 384), and the negatives' first two models failed the calibration "
    "gate; at 200,000 households (seed 20261209) plain labels listed 0.704 truly in need "
    "against 0.679, pooled ECE 0.016 against 0.021."
)
EXPLORATION_EVIDENCE = (
    "The living loop at 200,000 households, every policy over 12 rounds "
    "(docs/simulation.md, 'Exploration that off-policy evaluation can use' and the "
    "section after it): reserved of the capacity and drawn at the margin, the 5% share "
    "makes the doubly robust estimates of other lists unbiased on the labels' scale (the "
    "exploring loops' 81 estimates: mean absolute error 0.025, 90% intervals holding it "
    "in 99%, against 15% of 54 without exploration) and costs no measurable need (+39 "
    "households in need against no exploration, interval -77 to 148) for 3% more visits. "
    "Drawn from what carried-over cases left and among every household with a signal, it "
    "was rarely drawn and its weights were too large to use."
)


class SelectiveLabelsConfig(_Strict):
    """How training corrects for labels that exist only where earlier lists chose.

    ``ipw`` weighs each labelled visit by 1 / selection_probability (clipped at ``weight_clip``);
    ``negatives`` adds eligible households not listed in a round and with no crisis signal
    reported in the ``quiet_months`` after it, as negatives (``negatives_per_label`` of them per
    labelled visit, weight ``negative_weight``).
    """

    method: SelectiveMethod = "plain"
    compare: tuple[SelectiveMethod, ...] = ("plain", "ipw", "negatives", "ipw_negatives")
    weight_clip: float = Field(20.0, ge=1.0)
    quiet_months: int = Field(4, ge=1, le=12)
    negatives_per_label: float = Field(1.0, gt=0.0, le=20.0)
    negative_weight: float = Field(1.0, gt=0.0)
    # Why this method: the evidence the model card cites (docs/simulation.md, the living loop).
    reason: str = Field(SELECTIVE_EVIDENCE, min_length=10)


class CalibrationConfig(_Strict):
    """Probabilities calibrated on the latest ``holdout_rounds`` training rounds (not the test)."""

    method: Literal["sigmoid", "beta", "isotonic", "centered_isotonic"] = "centered_isotonic"
    holdout_rounds: int = Field(2, ge=1, le=6)
    bins: int = Field(10, ge=2, le=50)


class FairnessConfig(_Strict):
    """Fairness audit at the capacity cut, against the truth (synthetic data)."""

    ratio_bounds: tuple[float, float] = (0.8, 1.25)
    min_group_size: int = Field(20, ge=1)
    reference_groups: dict[str, str] = {
        "sido": "largest",
        "sigungu": "largest",
        "urban": "urban",
        "head_sex": "M",
        "head_age_band": "50_64",
        "disability": "no",
        "single_person": "no",
        "tenure": "own",
    }
    proxy_sample: int = Field(5000, ge=200)
    bootstrap_samples: int = Field(1000, ge=100, le=20_000)  # draws per ratio interval


MitigationMethod = Literal["none", "equal_recall", "reweigh"]


class MitigationConfig(_Strict):
    """Fairness mitigation (docs/fairness.md): ``method`` at ``strength`` is what the registered
    model and its lists apply; every method of ``compare`` at every strength of ``strengths`` is
    measured beside it in the backtests (the precision-disparity trade-off)."""

    method: MitigationMethod = "reweigh"
    attributes: tuple[str, ...] = ("head_age_band", "single_person", "tenure", "disability")
    strength: float = Field(0.75, ge=0.0, le=1.0)
    compare: tuple[MitigationMethod, ...] = ("none", "equal_recall", "reweigh")
    strengths: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)
    reason: str = Field(
        "Reweighing the training rows over head's age band, one-person household, tenure and "
        "disability at strength 0.75: on the committed sample the only strength of 0.1 to 0.75 "
        "that leaves no group flagged (below it renters' recall is 1.6 to 2.1 times owners'), at "
        "no cost in truth precision (0.683 against 0.676 unmitigated). Larger worlds need less: "
        "at 200,000 households 0.75 leaves 1 to 7 groups flagged, and configs/bench.yaml and "
        "configs/fresh_seed.yaml set 0.3 (docs/fairness.md, 'The strength across worlds').",
        min_length=10,
    )

    @field_validator("attributes")
    @classmethod
    def _known_attributes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [a for a in value if a not in AUDIT_ATTRIBUTES]
        if unknown or not value:
            raise ValueError(
                f"attributes must be some of {', '.join(AUDIT_ATTRIBUTES)}"
                + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            )
        return value

    @field_validator("strengths")
    @classmethod
    def _strengths_in_range(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.0 < s <= 1.0 for s in value):
            raise ValueError("every strength must be above 0 and at most 1")
        return tuple(sorted(set(value)))


GateName = Literal["data_validation", "lift_over_rule", "calibration", "fairness", "champion"]
GATE_NAMES: tuple[str, ...] = get_args(GateName)


class GateWaiver(_Strict):
    """A written exception to one promotion gate; the reason is logged with the model."""

    gate: GateName
    reason: str = Field(min_length=10)


class GatesConfig(_Strict):
    """Promotion gates: all must pass (or be waived) for a new version to become ``champion``."""

    # auto: precision at capacity against the truth when it exists (synthetic data), else the
    # doubly robust off-policy estimate from the test rounds' logged visits (docs/offpolicy.md);
    # observed_precision_emd: among the listed households that happen to have a label.
    metric: Literal[
        "auto", "observed_precision_emd", "truth_precision_emd", "offpolicy_dr_precision_emd"
    ] = "auto"
    min_lift_over_rule: float = Field(1.1, ge=0.0)
    max_ece: float = Field(0.03, gt=0.0, le=1.0)
    max_fairness_flags: int = Field(0, ge=0)
    champion_tolerance: float = Field(0.02, ge=0.0, le=1.0)
    # Shadow rounds (docs/scoring.md "Shadow mode"): while a champion exists, a version becomes
    # champion (by the gates or `outreach promote`) only after it was scored beside it on this
    # many distinct rounds (`outreach score --shadow VERSION`). 0: no shadow rounds needed.
    min_shadow_rounds: int = Field(0, ge=0, le=60)
    # The embedded defaults describe a run on the committed sample (see configs/sample.yaml),
    # which passes every gate: no waivers (until issue 20 the sample waived fairness).
    waivers: tuple[GateWaiver, ...] = ()


# What training can measure beside the registered candidate (``training.compare``).
Comparison = Literal["candidates", "selective_labels", "mitigation", "offpolicy"]
COMPARISONS: tuple[str, ...] = get_args(Comparison)


class ServiceMatchConfig(_Strict):
    """The learned service match (docs/services.md): a multiclass LightGBM over the services
    past visits linked, and how many services are suggested per listed household."""

    top: int = Field(3, ge=1, le=10)
    # 50 trees per kind of need: the same top-3 hit rate as 100 on three worlds (within 0.003),
    # in half the time; the match is fitted in every backtest round (docs/services.md)
    n_estimators: int = Field(50, ge=1)
    num_leaves: int = Field(15, ge=2)
    learning_rate: float = Field(0.1, gt=0.0, le=1.0)
    min_child_samples: int = Field(20, ge=1)
    colsample_bytree: float = Field(0.5, gt=0.0, le=1.0)
    n_jobs: int = Field(2, ge=1, le=256)
    min_labels: int = Field(50, ge=1)  # fewer linked visits than this: the rule mapping alone
    rule_windows: tuple[int, ...] = (3, 12)  # group counts the rule mapping reads (months)
    rule_weights: tuple[float, ...] = (1.0, 0.1)

    @model_validator(mode="after")
    def _windows(self) -> ServiceMatchConfig:
        if len(self.rule_windows) != len(self.rule_weights) or not self.rule_windows:
            raise ValueError("rule_windows and rule_weights need one weight per window")
        return self


class TrainingConfig(_Strict):
    """``outreach train``: candidates, backtests, calibration, fairness, gates and MLflow.

    ``compare``: what the backtests fit and measure beside the registered candidate, each a cost
    of its own (docs/training.md, "Comparisons"): ``candidates`` the other learned candidate,
    ``selective_labels`` every method of ``selective_labels.compare``, ``mitigation`` every
    setting of ``mitigation.compare`` × ``strengths``, ``offpolicy`` the doubly robust
    off-policy estimates of every list (the logistic candidate fitted as their model term).
    ``outreach train --compare all`` (``make train COMPARE=all``) asks for all of them once.
    The off-policy estimates are made whenever the gates read them (no truth, ``gates.metric``
    auto), whatever this says.
    """

    candidate: Literal["lightgbm", "logistic"] = "lightgbm"  # the model that is registered
    model_name: str = Field("welfare-outreach", pattern=r"^[A-Za-z0-9_.-]+$")
    experiment: str = "welfare-outreach"
    tracking_uri: str | None = None  # default sqlite:///<output_root>/mlflow/mlflow.db
    seed: int = Field(20261202, ge=0)
    backtest: BacktestConfig = BacktestConfig()
    logistic: LogisticConfig = LogisticConfig()
    lightgbm: LightGBMConfig = LightGBMConfig()
    selective_labels: SelectiveLabelsConfig = SelectiveLabelsConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    fairness: FairnessConfig = FairnessConfig()
    mitigation: MitigationConfig = MitigationConfig()
    gates: GatesConfig = GatesConfig()
    service_match: ServiceMatchConfig = ServiceMatchConfig()
    compare: tuple[Comparison, ...] = ()
    # At most this many labelled visits in the training pool: above it, each past round keeps
    # the same share of its visits, drawn at random (seeded). It binds from about 4 M households
    # (a million households gives about 117,000 visits over 15 rounds; 23 M gives 2.7 M): at 23 M
    # a pool of a million visits took `train` to 10 GB while fitting the final model
    # (docs/scaling.md, "The national training case").
    pool_max_rows: int = Field(500_000, ge=10_000)

    @field_validator("compare")
    @classmethod
    def _once_each(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("compare: a comparison is named twice")
        return value


class CarryOverConfig(_Strict):
    """Open cases of a round go on to the next (``pipeline.cases``, docs/outcomes.md "Case
    state"): at most ``max_rounds`` times (0: never); a household not reached by phone
    ``escalate_phone_after`` rounds in a row is carried to the visit tier."""

    max_rounds: int = Field(2, ge=0, le=12)
    escalate_phone_after: int = Field(1, ge=1, le=12)


class ScoringConfig(_Strict):
    """``outreach score``: who is eligible, how lists are cut, how reasons are written.

    Per 읍면동 with capacity ``c``: the visit tier holds ``c`` households, of which
    ``round(c * exploration_share)`` are drawn at random among the eligible households the model
    did not already place in the visit tier and that are in the ``exploration_pool``: a crisis
    signal in the last ``exploration_signal_months`` (``signal``), or the margin (``margin``: the
    model's next ranks and the rule's list, :mod:`pipeline.score.tiers`); the phone tier holds
    the next ``ceil(c * phone_band)`` by model rank; everyone
    else eligible is monitored. Ties in score are broken by the administrative household key.
    """

    experiment: str = "welfare-outreach-scoring"
    ineligible_benefit_status: tuple[str, ...] = ("basic_livelihood",)
    phone_band: float = Field(1.0, ge=0.0, le=10.0)
    exploration_share: float = Field(0.05, ge=0.0, le=0.5)
    exploration_signal_months: int = Field(12, ge=1, le=36)
    # Where the exploration draws: among households with a signal in exploration_signal_months
    # (``signal``), or at the margin (``margin``): the next ceil(capacity × exploration_margin)
    # by the model's rank and the households the rule would list (docs/scoring.md).
    exploration_pool: Literal["signal", "margin"] = "margin"
    exploration_margin: float = Field(1.0, gt=0.0, le=10.0)
    # Whose slots the exploration takes: a share of what carried-over cases leave (``left``), or
    # a share of the capacity kept before them (``reserved``: the list is then longer than the
    # capacity by at most the explored slots when carried cases fill the rest; docs/scoring.md).
    exploration_slots: Literal["left", "reserved"] = "reserved"
    # Why this share: the evidence the model card cites (docs/simulation.md, the living loop).
    exploration_reason: str = Field(EXPLORATION_EVIDENCE, min_length=10)
    reasons: int = Field(3, ge=1, le=10)
    carry_over: CarryOverConfig = CarryOverConfig()
    language: Literal["ko", "en"] = "ko"
    seed: int = Field(20261203, ge=0)
    # `outreach audit` re-scores every listed household, the ``audit_near_cut`` unlisted ones
    # ranked just below each 읍면동's cut (by stored score), and ``audit_sample`` of the rest.
    audit_sample: int = Field(200, ge=1, le=1_000_000)
    audit_near_cut: int = Field(20, ge=0, le=100_000)
    audit_tolerance: float = Field(1e-9, gt=0.0, le=1e-3)


class ReportConfig(_Strict):
    """``outreach report``: the administrators' HTML review report of a round.

    Aggregates on the overview show household counts under ``small_count`` as "<5" (and leave
    out rates computed from them). Population stability (PSI) is computed for the model's
    ``leading_features`` most important inputs between this round and the previous one, in
    ``psi_bins`` bins cut at the previous round's quantiles; a PSI above ``psi_threshold`` is
    flagged. The follow-up page bins listed households by score into ``calibration_bins``
    equal-count bins.
    """

    small_count: int = Field(5, ge=1, le=100)
    leading_features: int = Field(10, ge=1, le=100)
    psi_bins: int = Field(10, ge=2, le=50)
    psi_threshold: float = Field(0.2, gt=0.0, le=10.0)
    score_bins: int = Field(20, ge=5, le=100)
    calibration_bins: int = Field(5, ge=2, le=20)


class MonitoringConfig(_Strict):
    """Monitoring between rounds (docs/monitoring.md): measured when a round is scored, checked
    against the outcomes when they return. An alarm is raised (printed by ``outreach score``,
    logged, recorded in the manifest, boxed on the report's overview) when a feature group's
    PSI against the previous round exceeds ``feature_group_psi``, the score's PSI exceeds
    ``score_psi``, the expected precision of the visit tier (the mean calibrated score of the
    households the model placed there) is below ``min_expected_precision``, or, once at least
    ``calibration_min_answered`` of those households have a label, the observed precision lies
    outside the ``interval`` level interval the scores promise (the calibration check).
    """

    feature_group_psi: float = Field(0.25, gt=0.0, le=10.0)
    score_psi: float = Field(0.25, gt=0.0, le=10.0)
    min_expected_precision: float = Field(0.2, ge=0.0, le=1.0)
    interval: float = Field(0.9, ge=0.5, lt=1.0)
    calibration_min_answered: int = Field(20, ge=1)
    psi_bins: int = Field(10, ge=2, le=50)
    # Recorded and shown, never alarmed: the 읍면동 context features hold one value per 읍면동,
    # so a rate that moves by a point carries a whole 읍면동 across the previous deciles (PSI
    # 0.71 on the sample between 2026-08 and 2026-10 while their mean moved by 0.004).
    quiet_groups: tuple[str, ...] = ("context",)


SimulatePolicy = Literal[
    "rule",
    "random",
    "oracle",
    "champion",
    "champion_plain",
    "champion_ipw",
    "champion_negatives",
    "champion_ipw_negatives",
    "champion_no_exploration",
    "champion_broken",
]
SIMULATE_MODEL_PREFIX = "champion"


class SimulateConfig(_Strict):
    """``outreach simulate`` (docs/simulation.md): the living loop on copies of one synthetic
    world. Each policy runs ``rounds`` rounds (validate, ingest, features, train every
    ``retrain_every`` rounds, score, field work, import, the world advances one round interval);
    a world with no contact at all is run beside them as the counterfactual. ``seed`` draws the
    field work (common random numbers across policies), the rule's ties, the random lists and
    the bootstrap of the policy table (``bootstrap_samples`` resamples of 읍면동, ``interval``
    level), whose differences are taken against ``reference``."""

    experiment: str = "welfare-outreach-simulation"
    rounds: int = Field(12, ge=1, le=60)
    # every policy; champion_plain is champion under the default method
    policies: tuple[SimulatePolicy, ...] = tuple(
        p for p in get_args(SimulatePolicy) if p != "champion_plain"
    )
    retrain_every: int = Field(3, ge=1, le=60)
    seed: int = Field(20261204, ge=0)
    bootstrap_samples: int = Field(1000, ge=50, le=100_000)
    interval: float = Field(0.9, ge=0.5, lt=1.0)
    reference: SimulatePolicy = "rule"
    # Each model policy's trainings compare nothing but the off-policy estimates (measured
    # against the truth): the other comparisons are the policies themselves. True: all of them.
    compare_in_training: bool = False

    @model_validator(mode="after")
    def _reference_simulated(self) -> SimulateConfig:
        if len(set(self.policies)) != len(self.policies):
            raise ValueError("policies: a policy is named twice")
        if self.reference not in self.policies:
            raise ValueError(f"reference: {self.reference} is not one of the policies")
        return self


class RetentionConfig(_Strict):
    """``outreach retention``: household-level data older than ``period_months`` is destroyed
    (docs/compliance.md). ``in_run``: ``outreach run`` runs it first."""

    period_months: int = Field(60, ge=1, le=600)
    in_run: bool = False
    # The reference month ("today") of the period; None: the synthetic world's present for
    # generated data, else the wall clock's month (datasets.raw.retention_reference). Pinned for
    # re-runs and tests; `outreach retention --today` overrides it.
    today: Month | None = None
    # validate refuses raw tables with months older than the period unless this is true.
    allow_older_raw: bool = False

    @property
    def today_index(self) -> int | None:
        return None if self.today is None else parse_month(self.today)

    def cut(self, today: int) -> int:
        """The first month kept when counting back from ``today``: months before it are older
        than the period (``pipeline.datasets.raw.retention_cut`` chooses ``today``)."""
        return today - self.period_months


class ObjectionsConfig(_Strict):
    """The objections registry (docs/objections.md): a UTF-8 CSV of households that refuse
    automated profiling (``refuse``) or ask for an explanation (``explain``), with the date.
    ``outreach ingest`` checks and stages it; the features stage leaves refused households out
    of every round it builds. ``None``: no registry."""

    registry: Path | None = None


class ExportConfig(_Strict):
    """``outreach export``: each 읍면동's list and page as a bundle encrypted with that office's
    key (docs/compliance.md)."""

    key_env: str = Field("OUTREACH_OFFICE_KEYS", pattern=r"^[A-Z_][A-Z0-9_]*$")
    key_file: Path | None = None


class Config(_Strict):
    """The whole configuration of a run."""

    paths: PathsConfig = PathsConfig()
    window: WindowConfig = WindowConfig()
    generator: GeneratorConfig = GeneratorConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    bench: BenchConfig = BenchConfig()
    validation: ValidationConfig = ValidationConfig()
    ingest: IngestConfig = IngestConfig()
    training: TrainingConfig = TrainingConfig()
    scoring: ScoringConfig = ScoringConfig()
    report: ReportConfig = ReportConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    simulate: SimulateConfig = SimulateConfig()
    retention: RetentionConfig = RetentionConfig()
    objections: ObjectionsConfig = ObjectionsConfig()
    export: ExportConfig = ExportConfig()
    source: str = "<embedded defaults>"

    @model_validator(mode="after")
    def _shock_inside_window(self) -> Config:
        shock = self.generator.economic_shock
        if parse_month(shock.end) < parse_month(shock.start):
            raise ValueError("generator.economic_shock: end is before start")
        return self

    def with_overrides(self, **sections: Any) -> Config:
        """A copy with some sections replaced (validated again)."""
        data = self.model_dump()
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = _deep_merge(data[key], value)
            else:
                data[key] = value
        return Config.model_validate(data)


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe_error(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "__root__")
    message = error.get("msg", "invalid value")
    message = message.removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        message = "unknown key (check its spelling and place)"
    given = error.get("input")
    shown = ""
    if error.get("type") not in ("extra_forbidden", "missing") and not isinstance(given, dict):
        shown = f", got {given!r}"
    return f"{location or '(top level)'}: {message}{shown}"


def config_from_mapping(data: dict[str, Any], source: str) -> Config:
    """Validate a mapping into a Config; raise ConfigError with one line naming key and problem."""
    try:
        return Config.model_validate({**data, "source": source})
    except ValidationError as exc:
        first = exc.errors()[0]
        extra = len(exc.errors()) - 1
        more = f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra else ""
        raise ConfigError(f"{source}: {_describe_error(first)}{more}") from None


def load_config(path: Path | None) -> Config:
    """Load and validate the configuration; ``None`` gives the embedded defaults."""
    if path is None:
        return Config()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    if "source" in data:
        raise ConfigError(f"{path}: source: unknown key (check its spelling and place)")
    return config_from_mapping(data, str(path))
