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
DIFFERENCE = "difference"  # the learned match's hit rate minus the rule mapping's


@dataclass(frozen=True)
class Suggestions:
    """The top services per household, best first (index into the catalogue's services, -1 when
    fewer services are eligible), what each adds to the chance that one of them serves the
    household's need (``scores``), and why each was placed.

    ``reason_need``: the kind of need (index into :data:`NEED_TYPES`) the service was placed
    for (-1: none); ``reason_group``: for the rule mapping, the signal group that points to that
    need most (index into the groups given; -1: no signal does); ``probability``: for the learned
    match, the estimated chance of that need."""

    services: np.ndarray
    scores: np.ndarray
    source: np.ndarray  # RULE or MODEL per place ("" where no service is eligible)
    reason_group: np.ndarray
    probability: np.ndarray
    reason_need: np.ndarray


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


def rule_needs(
    features: pd.DataFrame,
    catalogue: ServiceCatalogue,
    groups: list[str],
    config: ServiceMatchConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Households × kinds of need: the rule mapping's shares, and the group behind each.

    A kind of need scores the household's weighted signal counts (``rule_windows`` with
    ``rule_weights``) over the groups that point to it (``signal_groups``); the scores are
    shares of their sum (all 0 without a signal). The group behind a need is the one that adds
    most to it (-1: none)."""
    n = len(features)
    counts = np.zeros((n, len(groups)))
    for window, weight in zip(config.rule_windows, config.rule_weights, strict=True):
        for g, group in enumerate(groups):
            column = group_count_column(group, window)
            if column not in features.columns:
                raise ValueError(f"the rule mapping reads {column}: not among the features")
            counts[:, g] += weight * features[column].fillna(0).to_numpy(dtype=np.float64)
    points = catalogue.group_needs(groups).astype(np.float64)  # groups × needs
    need = counts @ points  # households × needs
    total = need.sum(axis=1, keepdims=True)
    shares = np.divide(need, total, out=np.zeros_like(need), where=total > 0)
    contribution = counts[:, :, None] * points[None, :, :]  # h × groups × needs
    group = contribution.argmax(axis=1)
    return shares, np.where(need > 0, group, -1)


def cover(
    need: np.ndarray, eligible: np.ndarray, serves: np.ndarray, top: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``top`` eligible services that cover most of each household's estimated need, chosen
    one at a time (greedy): each adds the most chance of need not yet served by those before it
    (catalogue order breaks ties). ``need``: households × kinds of need (chances or shares);
    ``serves``: kinds of need × services. Returns the services (-1: none eligible left), what
    each added, and the kind of need each was placed for (its largest part; -1 when it added
    nothing)."""
    n, k = len(need), serves.shape[1]
    chosen = np.full((n, top), -1, dtype=np.int64)
    gained = np.zeros((n, top))
    reason = np.full((n, top), -1, dtype=np.int64)
    open_need = need.astype(np.float64).copy()
    available = eligible.copy()
    rows = np.arange(n)
    for place in range(top):
        gain = open_need @ serves.astype(np.float64)  # households × services
        gain = np.where(available, gain, -np.inf)
        best = gain.argmax(axis=1) if k else np.zeros(n, dtype=np.int64)
        ok = available[rows, best] if k else np.zeros(n, dtype=bool)
        chosen[:, place] = np.where(ok, best, -1)
        gained[:, place] = np.where(ok, gain[rows, best], 0.0)
        part = open_need * serves[:, best].T  # households × needs it serves, still open
        reason[:, place] = np.where(ok & (part.max(axis=1) > 0), part.argmax(axis=1), -1)
        open_need = np.where(ok[:, None] & serves[:, best].T, 0.0, open_need)
        available[rows[ok], best[ok]] = False
    return chosen, gained, reason


def _suggestions(
    need: np.ndarray,
    features: pd.DataFrame,
    catalogue: ServiceCatalogue,
    top: int,
    source: str,
    groups_of_need: np.ndarray | None,
) -> Suggestions:
    eligible = eligible_matrix(catalogue.services, household_facts(features))
    chosen, gained, reason = cover(need, eligible, catalogue.serves(), top)
    placed = chosen >= 0
    at = np.maximum(reason, 0)
    rows = np.arange(len(need))[:, None]
    group = np.full(chosen.shape, -1, dtype=np.int64)
    probability = np.full(chosen.shape, np.nan)
    if groups_of_need is not None:
        group = np.where(reason >= 0, groups_of_need[rows, at], -1)
    else:
        probability = np.where(reason >= 0, need[rows, at], np.nan)
    return Suggestions(
        services=chosen,
        scores=np.where(placed, gained, np.nan),
        source=np.where(placed, source, ""),
        reason_group=group,
        probability=probability,
        reason_need=np.where(placed, reason, -1),
    )


def suggest_by_rule(
    features: pd.DataFrame,
    catalogue: ServiceCatalogue,
    groups: list[str],
    config: ServiceMatchConfig,
) -> Suggestions:
    """The rule mapping's ``config.top`` services per household: :func:`cover` of its need
    shares (without a signal: the catalogue's first eligible services)."""
    shares, group = rule_needs(features, catalogue, groups, config)
    return _suggestions(shares, features, catalogue, config.top, RULE, group)


class ServiceMatch:
    """The learned match: from the services past visits linked, the chance of each kind of need;
    suggestions that cover the most of it.

    ``fit`` takes the model inputs of the linked visits and the code of the service each linked.
    A service serving k kinds of need stands for each of them with weight 1/k: the label is the
    kind of need the visit met, as far as its service tells. ``suggest`` covers the estimated
    chances (:func:`cover`); with too few labels (``min_labels``) or one kind of need only, it is
    the rule mapping."""

    def __init__(
        self, catalogue: ServiceCatalogue, groups: list[str], config: ServiceMatchConfig, seed: int
    ) -> None:
        self.catalogue = catalogue
        self.groups = groups
        self.config = config
        self.seed = seed

    def fit(self, X: pd.DataFrame, service_code: pd.Series) -> ServiceMatch:
        by_code = {s.code: s for s in self.catalogue.services}
        known = service_code.notna().to_numpy() & service_code.isin(list(by_code)).to_numpy()
        rows, needs, weights = [], [], []
        for i, code in zip(np.flatnonzero(known), service_code[known], strict=True):
            served = by_code[str(code)].need_types
            for need in served:
                rows.append(i)
                needs.append(NEED_TYPES.index(need))
                weights.append(1.0 / len(served))
        self.n_labels_ = int(known.sum())
        self.inputs_ = list(X.columns)
        self.model_: LGBMClassifier | None = None
        if self.n_labels_ >= self.config.min_labels and len(set(needs)) >= 2:
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
            self.model_.fit(
                X.iloc[rows], np.asarray(needs), sample_weight=np.asarray(weights, dtype=float)
            )
        return self

    def columns(self) -> list[str]:
        """The feature columns :meth:`suggest` reads: the model's inputs, the rule mapping's
        group counts and the facts eligibility looks at."""
        rule = [group_count_column(g, w) for g in self.groups for w in self.config.rule_windows]
        return list(dict.fromkeys([*self.inputs_, *rule, *FACT_COLUMNS]))

    def need_probabilities(self, X: pd.DataFrame) -> np.ndarray:
        """Households × kinds of need: the estimated chance of each (0 for a kind no linked
        service stood for)."""
        out = np.zeros((len(X), len(NEED_TYPES)))
        if self.model_ is not None and len(X):
            out[:, self.model_.classes_] = self.model_.predict_proba(X[self.inputs_])
        return out

    def suggest(self, features: pd.DataFrame) -> Suggestions:
        """The ``config.top`` services per household that cover most of its estimated need."""
        if self.model_ is None:
            return suggest_by_rule(features, self.catalogue, self.groups, self.config)
        need = self.need_probabilities(features)
        return _suggestions(need, features, self.catalogue, self.config.top, MODEL, None)


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


def round_hit_rates(
    hits: pd.DataFrame, round_label: str, samples: int, seed: int, interval: float = 0.9
) -> pd.DataFrame:
    """One row per matcher (round, matcher, rate, low, high, households), and a row
    ``difference``: the learned match's rate minus the rule mapping's, with a paired bootstrap
    interval (the same 읍면동 draws for both)."""
    rows = []
    for matcher in (MODEL, RULE):
        figures = hit_rate(hits[matcher].to_numpy(), hits[EMD].to_numpy(), samples, seed, interval)
        rows.append({"round": round_label, "matcher": matcher, **figures})
    labels, inverse = np.unique(hits[EMD].astype(str).to_numpy(), return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(labels)).astype(np.float64)
    by_matcher = {
        m: np.bincount(inverse, weights=hits[m].to_numpy(np.float64), minlength=len(labels))
        for m in (MODEL, RULE)
    }
    difference = {"rate": np.nan, "low": np.nan, "high": np.nan, "households": float(len(hits))}
    if len(hits):
        draws = np.random.default_rng(seed).integers(0, len(labels), size=(samples, len(labels)))
        total = np.maximum(sizes[draws].sum(axis=1), 1.0)
        delta = (by_matcher[MODEL][draws].sum(axis=1) - by_matcher[RULE][draws].sum(axis=1)) / total
        tail = (1.0 - interval) / 2.0
        difference.update(
            rate=float(hits[MODEL].mean() - hits[RULE].mean()),
            low=float(np.quantile(delta, tail)),
            high=float(np.quantile(delta, 1.0 - tail)),
        )
    rows.append({"round": round_label, "matcher": DIFFERENCE, **difference})
    return pd.DataFrame(rows)
