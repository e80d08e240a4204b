"""The service match: the services that fit a listed household best, and how often they are right.

Two matchers, both offering only services the household is eligible for
(:func:`pipeline.visits.eligible_matrix`, from the features' income band, head's age band,
members with a disability and children):

- **The rule mapping** (the baseline): the household's recent crisis signals by group, read as
  kinds of need through ``signal_groups`` of configs/services.yaml (what a caseworker would read
  from them); each service scores the strongest of the needs it serves. Its reason is the group
  of signals that points to the service most.
- **The learned match**: a multiclass LightGBM that predicts which service a visit linked, from
  the model inputs, fitted on past visits that linked one. Its reason is the predicted share of
  similar visits that linked the service.

Selective labels: a service is known only for a visit that linked one. The learned match
estimates P(service | inputs, a service was linked); because it conditions on the inputs that
decided who was listed and visited, choosing visits by those inputs does not bias it (covariate
shift only). What it cannot learn is the need no catalogued service met (a visit that linked
none is no label): that is said in docs/services.md. Where the learned match has too few labels,
or a service was never linked, the rule mapping fills the remaining places.

Measured against the truth with :func:`top_hit_rate`: a household in need is matched when one of
its suggested services serves its hidden kind of need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier

from features.spec import group_count_column
from pipeline.catalogue import ServiceCatalogue
from pipeline.config import ServiceMatchConfig
from pipeline.visits import HouseholdFacts, eligible_matrix
from pipeline.vocabulary import (
    AGE_BAND_EDGES,
    AGE_BANDS,
    AUDIT_PREFIX,
    EMD,
    INCOME_BANDS,
    NEED_TYPES,
)

# The feature columns eligibility reads (features.spec names household attributes hh__<name>);
# the head's age band is an audit column: read for eligibility, never learned from.
INCOME_BAND = "hh__income_band"
DISABLED = "hh__disabled_members"
MINORS = "hh__minors"
HEAD_AGE_BAND = f"{AUDIT_PREFIX}head_age_band"
FACT_COLUMNS = (INCOME_BAND, DISABLED, MINORS, HEAD_AGE_BAND)
RULE = "rule"
MODEL = "model"


@dataclass(frozen=True)
class Suggestions:
    """The top services per household, best first (index into the catalogue's services, -1 when
    fewer services are eligible), the score each was ranked by, and which matcher placed it.

    ``reason_group``: for a place the rule mapping filled, the index of the signal group that
    points to the service most (into the groups given to :func:`rule_scores`; -1 when no signal
    does); ``probability``: for a place the learned match filled, its predicted probability."""

    services: np.ndarray
    scores: np.ndarray
    source: np.ndarray  # RULE or MODEL per place ("" where no service is eligible)
    reason_group: np.ndarray
    probability: np.ndarray


def household_facts(features: pd.DataFrame) -> HouseholdFacts:
    """What eligibility looks at, from a feature frame: the head's age is the lower edge of the
    head's age band (a service for 65 and over is offered from the 65-74 band on)."""
    income = pd.Categorical(features[INCOME_BAND].astype("string"), categories=INCOME_BANDS)
    lower = dict(zip(AGE_BANDS, (0, *AGE_BAND_EDGES), strict=True))
    if HEAD_AGE_BAND in features.columns:
        band = features[HEAD_AGE_BAND].astype("string")
        head_age = band.map(lower).fillna(0).to_numpy(dtype=np.int64)
    else:
        head_age = np.zeros(len(features), dtype=np.int64)
    return HouseholdFacts(
        income=np.asarray(income.codes, dtype=np.int64),
        head_age=head_age,
        disability=features[DISABLED].fillna(0).to_numpy() > 0,
        minors=features[MINORS].fillna(0).to_numpy(dtype=np.float64),
    )


def rule_scores(
    features: pd.DataFrame,
    catalogue: ServiceCatalogue,
    groups: list[str],
    config: ServiceMatchConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Households × services: the rule mapping's score, and the group behind it (-1: none).

    A kind of need scores the household's weighted signal counts (``rule_windows`` with
    ``rule_weights``) over the groups that point to it; a service scores the best of its kinds
    of need; its reason is the group that adds most to that kind."""
    n = len(features)
    counts = np.zeros((n, len(groups)))
    for window, weight in zip(config.rule_windows, config.rule_weights, strict=True):
        for g, group in enumerate(groups):
            column = group_count_column(group, window)
            if column not in features.columns:
                raise ValueError(f"the rule mapping reads {column}: not among the features")
            counts[:, g] += weight * features[column].fillna(0).to_numpy(dtype=np.float64)
    points = catalogue.group_needs(groups)  # groups × needs
    need = counts @ points  # households × needs
    serves = catalogue.serves()  # needs × services
    per_service = np.where(serves[None, :, :], need[:, :, None], -np.inf)  # h × needs × services
    best_need = per_service.argmax(axis=1)  # h × services
    score = per_service.max(axis=1)
    # The group that adds most to the service's best kind of need.
    contribution = counts[:, :, None] * points[None, :, :]  # h × groups × needs
    top_group = contribution.argmax(axis=1)  # h × needs
    reason = np.take_along_axis(top_group, best_need, axis=1)
    reason = np.where(score > 0, reason, -1)
    return score, reason


def _rank(score: np.ndarray, eligible: np.ndarray, top: int) -> np.ndarray:
    """The ``top`` eligible services by score (catalogue order breaks ties); -1 fills."""
    masked = np.where(eligible, score, -np.inf)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :top]
    ok = np.take_along_axis(eligible, order, axis=1)
    return np.where(ok, order, -1)


def suggest_by_rule(
    features: pd.DataFrame,
    catalogue: ServiceCatalogue,
    groups: list[str],
    config: ServiceMatchConfig,
) -> Suggestions:
    """The rule mapping's ``config.top`` services per household."""
    score, reason = rule_scores(features, catalogue, groups, config)
    eligible = eligible_matrix(catalogue.services, household_facts(features))
    chosen = _rank(score, eligible, config.top)
    safe = np.maximum(chosen, 0)
    placed = chosen >= 0
    return Suggestions(
        services=chosen,
        scores=np.where(placed, np.take_along_axis(score, safe, axis=1), np.nan),
        source=np.where(placed, RULE, ""),
        reason_group=np.where(placed, np.take_along_axis(reason, safe, axis=1), -1),
        probability=np.full(chosen.shape, np.nan),
    )


class ServiceMatch:
    """The learned match: fit on past visits that linked a service, suggest for any household.

    ``fit`` takes the model inputs of the linked visits and the code of the service each linked;
    ``suggest`` ranks the eligible services by predicted probability and lets the rule mapping
    fill the places the model cannot (services never linked, or too few labels to fit at all)."""

    def __init__(
        self, catalogue: ServiceCatalogue, groups: list[str], config: ServiceMatchConfig, seed: int
    ) -> None:
        self.catalogue = catalogue
        self.groups = groups
        self.config = config
        self.seed = seed

    def fit(self, X: pd.DataFrame, service_code: pd.Series) -> ServiceMatch:
        codes = self.catalogue.codes
        known = service_code.notna().to_numpy() & service_code.isin(codes).to_numpy()
        y = np.array([codes.index(c) for c in service_code[known]], dtype=np.int64)
        self.n_labels_ = len(y)
        self.classes_ = np.unique(y)
        self.inputs_ = list(X.columns)
        self.model_: LGBMClassifier | None = None
        if self.n_labels_ >= self.config.min_labels and len(self.classes_) >= 2:
            c = self.config
            self.model_ = LGBMClassifier(
                objective="multiclass",
                n_estimators=c.n_estimators,
                num_leaves=c.num_leaves,
                learning_rate=c.learning_rate,
                min_child_samples=c.min_child_samples,
                colsample_bytree=c.colsample_bytree,
                n_jobs=c.n_jobs,
                random_state=self.seed,
                force_row_wise=True,
                deterministic=True,
                verbose=-1,
            )
            self.model_.fit(X[known], y)
        return self

    def columns(self) -> list[str]:
        """The feature columns :meth:`suggest` reads: the model's inputs, the rule mapping's
        group counts and the facts eligibility looks at."""
        rule = [
            group_count_column(g, w) for g in self.groups for w in self.config.rule_windows
        ]
        return list(dict.fromkeys([*self.inputs_, *rule, *FACT_COLUMNS]))

    def probabilities(self, X: pd.DataFrame) -> np.ndarray:
        """Households × services: the predicted probability of each (0 for a service the model
        never saw linked, and everywhere when it has too few labels)."""
        out = np.zeros((len(X), len(self.catalogue.services)))
        if self.model_ is not None and len(X):
            proba = self.model_.predict_proba(X[self.inputs_])
            out[:, self.model_.classes_] = proba
        return out

    def suggest(self, features: pd.DataFrame) -> Suggestions:
        """The ``config.top`` services per household: the model's first, the rule's after."""
        top = self.config.top
        rule = suggest_by_rule(features, self.catalogue, self.groups, self.config)
        eligible = eligible_matrix(self.catalogue.services, household_facts(features))
        proba = self.probabilities(features)
        learned = eligible & (proba > 0)
        chosen = _rank(proba, learned, top)
        services = chosen.copy()
        source = np.where(chosen >= 0, MODEL, "").astype(object)
        probability = np.where(
            chosen >= 0, np.take_along_axis(proba, np.maximum(chosen, 0), axis=1), np.nan
        )
        reason_group = np.full(chosen.shape, -1)
        scores = probability.copy()
        for i in np.flatnonzero((chosen < 0).any(axis=1)):
            have = [s for s in chosen[i] if s >= 0]
            fill = [(p, s) for p, s in enumerate(rule.services[i]) if s >= 0 and s not in have][
                : top - len(have)
            ]
            for slot, (p, s) in enumerate(fill, start=len(have)):
                services[i, slot] = s
                source[i, slot] = RULE
                scores[i, slot] = rule.scores[i, p]
                reason_group[i, slot] = rule.reason_group[i, p]
        return Suggestions(services, scores, source.astype(str), reason_group, probability)


def top_hit(
    suggested: np.ndarray, need_type: np.ndarray, catalogue: ServiceCatalogue
) -> np.ndarray:
    """Per household: one of its suggested services serves its kind of need (``need_type``:
    codes of :data:`pipeline.vocabulary.NEED_TYPES`; a household not in need is never a hit)."""
    serves = catalogue.serves()  # needs × services
    index = {n: i for i, n in enumerate(NEED_TYPES)}
    need = np.array([index.get(str(n), -1) for n in need_type], dtype=np.int64)
    in_need = need >= 0
    hit = np.zeros(len(need), dtype=bool)
    rows = serves[np.maximum(need, 0)]  # households × services
    for place in range(suggested.shape[1]):
        s = suggested[:, place]
        ok = s >= 0
        hit |= ok & rows[np.arange(len(need)), np.maximum(s, 0)]
    return hit & in_need


def hit_rate(
    hit: np.ndarray, clusters: np.ndarray, samples: int, seed: int, interval: float = 0.9
) -> dict[str, float]:
    """The share of hits, with a bootstrap interval over ``clusters`` (읍면동: the unit lists
    are cut in), and how many households it rests on."""
    hit = np.asarray(hit, dtype=np.float64)
    if not len(hit):
        return {"rate": np.nan, "low": np.nan, "high": np.nan, "households": 0.0}
    labels, inverse = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
    hits = np.bincount(inverse, weights=hit, minlength=len(labels))
    sizes = np.bincount(inverse, minlength=len(labels)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(labels), size=(samples, len(labels)))
    rates = hits[draws].sum(axis=1) / np.maximum(sizes[draws].sum(axis=1), 1.0)
    tail = (1.0 - interval) / 2.0
    return {
        "rate": float(hit.mean()),
        "low": float(np.quantile(rates, tail)),
        "high": float(np.quantile(rates, 1.0 - tail)),
        "households": float(len(hit)),
    }


def top_hit_rate(
    suggested: np.ndarray,
    need_type: np.ndarray,
    catalogue: ServiceCatalogue,
    clusters: np.ndarray,
    samples: int,
    seed: int,
    interval: float = 0.9,
) -> dict[str, float]:
    """The top-k hit rate among households in need (:func:`hit_rate` of :func:`top_hit`)."""
    in_need = np.array([str(n) in NEED_TYPES for n in need_type], dtype=bool)
    hit = top_hit(suggested, need_type, catalogue)[in_need]
    return hit_rate(hit, np.asarray(clusters)[in_need], samples, seed, interval)


def match_hits(match: ServiceMatch, features: pd.DataFrame, need_type: pd.Series) -> pd.DataFrame:
    """For listed households in need: 읍면동 and whether the learned match's and the rule
    mapping's suggestions hit their hidden kind of need (an evaluation part: no keys)."""
    need = np.asarray(need_type, dtype=object)
    in_need = np.array([str(n) in NEED_TYPES for n in need], dtype=bool)
    rows = features[in_need]
    learned = match.suggest(rows)
    rule = suggest_by_rule(rows, match.catalogue, match.groups, match.config)
    return pd.DataFrame(
        {
            EMD: rows[EMD].astype(str).to_numpy(),
            MODEL: top_hit(learned.services, need[in_need], match.catalogue),
            RULE: top_hit(rule.services, need[in_need], match.catalogue),
        }
    )


def round_hit_rates(hits: pd.DataFrame, round_label: str, samples: int, seed: int) -> pd.DataFrame:
    """One row per matcher: round, matcher, rate, low, high, households (90% interval)."""
    rows = []
    for matcher in (MODEL, RULE):
        figures = hit_rate(hits[matcher].to_numpy(), hits[EMD].to_numpy(), samples, seed)
        rows.append({"round": round_label, "matcher": matcher, **figures})
    return pd.DataFrame(rows)
