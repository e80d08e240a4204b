"""The model card: intended use, data, metrics, fairness, selective labels, limitations."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from models.gates import CHAMPION_LIST, GateResult
from models.service_match import DIFFERENCE, MODEL, RULE

# A skip rate at or above this is called high on the card: screening-tool reviews found
# caseworkers disagreeing with the score about a third of the time.
HIGH_SKIP_RATE = 0.3


@dataclass(frozen=True)
class OverrideFigures:
    """Caseworkers' overrides in the training rounds' imported answers (aggregates only).

    listed: listed households whose answer came back (rows not added by the caseworker);
    skipped: those skipped with an override; added: households added with an answer (by an
    add reason or by the selection column); reasons: (code, action, English name, households)
    of every override reason, in catalogue order."""

    rounds: tuple[str, ...]
    listed: int
    skipped: int
    added: int
    reasons: tuple[tuple[str, str, str, int], ...] = ()

    @property
    def skip_rate(self) -> float:
        return self.skipped / self.listed if self.listed else float("nan")

    @property
    def add_rate(self) -> float:
        return self.added / self.listed if self.listed else float("nan")

    def reason_rate(self, households: int) -> float:
        return households / self.listed if self.listed else float("nan")


@dataclass(frozen=True)
class CardFacts:
    """What the card states; all aggregates, never a household."""

    model_name: str
    candidate: str
    method: str
    as_of: str
    test_rounds: list[str]
    train_rounds: list[str]
    train_rows: int
    train_labelled: int
    train_negatives: int
    n_inputs: int
    lightgbm_size: str
    calibration: str
    summary: pd.DataFrame
    bootstrap: pd.DataFrame | None
    fairness: pd.DataFrame | None
    proxy: pd.DataFrame | None
    gates: list[GateResult]
    promoted: bool
    decision: str
    gate_metric: str
    features_digest: str
    code_version: dict[str, str]
    engine: str = "local"  # where LightGBM was fitted: local, or dask (lightgbm.dask)
    tradeoff: pd.DataFrame | None = None  # the mitigation settings compared in the backtests
    mitigation: str = "none"  # the registered setting, described
    mitigation_reason: str = ""
    loop_settings: str = ""  # selective labels and exploration, and why (the living loop)
    compared: tuple[str, ...] = ()  # what the backtests measured beside it (training.compare)
    overrides: OverrideFigures | None = None  # caseworkers' overrides in the training rounds
    # the service match's top-k hit rates per matcher and round ("all": every test round),
    # against the hidden kind of need (models.backtest); None without the truth or the labels
    service_match: pd.DataFrame | None = None
    service_labels: int = 0  # linked visits the registered model's match learned from


def _fmt(value: object, digits: int = 3) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.{digits}f}"
    return str(value)


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    shown = [c for c in columns if c in frame.columns]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]) for c in shown) + " |")
    return "\n".join(lines)


def _percent(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f}%"


def override_section(o: OverrideFigures | None) -> list[str]:
    """The card's section on caseworkers' overrides (skips and additions); pure."""
    out = ["## Caseworker overrides", ""]
    meaning = (
        "Skipped households are **missing labels, not negatives**: a caseworker who did not "
        "contact a household learned nothing about its need, so the labels leave it out (missing "
        "reason `skipped`), as they leave out unreachable households. Counting skips as 'no need' "
        "would teach the next model the caseworkers' choices instead of need."
    )
    if o is None or o.listed == 0:
        rounds = ", ".join(o.rounds) if o is not None and o.rounds else "none"
        return [
            *out,
            "No returned list was imported for the training rounds (imported rounds among them: "
            f"{rounds}), so the override rate is not known. {meaning}",
            "",
        ]
    out += [
        f"In the training rounds' returned lists ({', '.join(o.rounds)}), caseworkers skipped "
        f"{o.skipped} of the {o.listed} listed households whose answers came back "
        f"(skip rate {_percent(o.skip_rate)}) and added {o.added} households the lists missed "
        f"(add rate {_percent(o.add_rate)} of the listed). MLflow metrics "
        "`overrides.skip_rate`, `overrides.add_rate`; per reason: artifact "
        "`overrides/override_rates.json`.",
        "",
        "| reason | action | households | share of listed |",
        "|---|---|---|---|",
        *(
            f"| {name} (`{code}`) | {action} | {n} | {_percent(o.reason_rate(n))} |"
            for code, action, name, n in o.reasons
        ),
        "",
        meaning,
        "",
        "For the model owner, a high skip rate is the most useful signal the list gets back: the "
        "people who know the households disagree with the ranking. Read it by reason: *already "
        "in our case load* means the list repeats households the office already serves (a "
        "missing input); *moved away* means the register the list is built from is stale; *no "
        "concern on local knowledge* means the reasons did not convince, or the model ranks on "
        "something the office knows to be harmless; *visit unsafe* calls for another channel, "
        "not another model. Skips also shrink and bend the labelled set: the labels come from "
        "the households caseworkers chose to visit, so if they skip the ones they expect to "
        "have no need, observed precision overstates the list's. Added households are labelled "
        "with selection probability 1 (a deliberate choice) and show what the list misses.",
        "",
    ]
    if o.skip_rate >= HIGH_SKIP_RATE:
        out += [
            f"**The skip rate is high** ({_percent(o.skip_rate)}, at or above "
            f"{_percent(HIGH_SKIP_RATE)}): before trusting this model's backtest figures, review "
            "the skipped households by reason and 읍면동 (the report's follow-up page) with the "
            "offices.",
            "",
        ]
    return out


def service_section(rates: pd.DataFrame | None, labels: int) -> list[str]:
    """The service match: what it learned from and, with the truth, its top-k hit rates."""
    out = [
        "## Service match (추천 서비스)",
        "",
        f"Each listed household gets the services that cover the most of its estimated kinds of "
        f"need (docs/services.md), learned from {labels} linked visits; with too few, the rule "
        "mapping from crisis-signal groups. A suggestion for the visit to check, not a decision.",
        "",
    ]
    if rates is None or rates.empty:
        return [*out, "Not measured: no hidden truth of the kind of need in these data.", ""]
    pooled = rates[rates["round"] == "all"].set_index("matcher")
    names = {MODEL: "learned match", RULE: "rule mapping", DIFFERENCE: "difference"}
    rows = [
        f"| {names.get(str(name), name)} | {_fmt(float(r['rate']))} [{_fmt(float(r['low']))}, "
        f"{_fmt(float(r['high']))}] | {int(r['households'])} |"
        for name, r in pooled.iterrows()
    ]
    return [
        *out,
        "Hit rate over the test rounds (a listed household in need counts as matched when one of "
        "its suggested services serves its hidden kind of need; 90% 읍면동 bootstrap intervals; "
        "difference: the learned match minus the rule mapping on the same draws):",
        "",
        "| matcher | hit rate | households |",
        "|---|---|---|",
        *rows,
        "",
    ]


CHAMPION_ROW_NOTE = (
    f"`{CHAMPION_LIST}`: the model that was champion when this version was trained, scored on the "
    "same test rounds, none of which it learned from; the champion gate compares the two "
    '(docs/training.md, "Promotion gates").'
)


def render_card(f: CardFacts) -> str:
    """Markdown text of the model card."""
    s = f.summary
    metric_cols = [
        "model",
        "truth_emd_precision_mean",
        "truth_emd_precision_sd",
        "truth_emd_need_found_mean",
        "observed_emd_precision_mean",
        "observed_emd_unlabelled_mean",
        "roc_auc_mean",
        "auc_pr_mean",
        "ece_mean",
        "ece_pooled",
        "ece_noise95",
        "brier_mean",
    ]
    out = [
        f"# Model card: {f.model_name} ({f.candidate}, trained as of {f.as_of})",
        "",
        "## Intended use",
        "",
        "Ranks households that do not receive basic livelihood support by the probability that "
        "a caseworker's visit would find need, so that each 읍면동 can fill its visiting capacity "
        "(찾아가는 복지). It supports a caseworker's decision; it decides nothing on its own. "
        "It is not for eligibility, sanctions, fraud detection, or any use outside outreach.",
        "",
        "## Data",
        "",
        f"- Point-in-time features (`{f.n_inputs}` model inputs) as of each round; feature "
        f"folders digest `{f.features_digest}`.",
        f"- Final model: trained on rounds {', '.join(f.train_rounds)} ({f.train_rows} rows: "
        f"{f.train_labelled} visits with a resolved label, {f.train_negatives} added negatives).",
        f"- Backtests: test rounds {', '.join(f.test_rounds)}; each trained only on labels "
        "resolved before its test round, with features as of each training round.",
        f"- Code: commit `{f.code_version.get('git_commit')}` "
        f"(dirty: {f.code_version.get('git_dirty')}).",
        "- Audit-only attributes (head's sex and age band) are never model inputs.",
        "",
        "## Model",
        "",
        f"- Candidate `{f.candidate}`, selective-label method `{f.method}`; "
        f"size {f.lightgbm_size}.",
        *([f"- The living loop: {f.loop_settings}"] if f.loop_settings else []),
        "- Compared beside it in the backtests: "
        + (
            ", ".join(f"`{c}`" for c in f.compared)
            if f.compared
            else "nothing (`outreach train --compare all` also fits the other candidate, the "
            "selective-label methods and the mitigation settings, and makes the off-policy "
            "estimates)"
        )
        + ".",
        f"- Calibration: {f.calibration}, fitted on the latest training round(s) held out, never "
        "on a test round.",
        "- Trained "
        + (
            "on a Dask cluster (`lightgbm.dask`, data parallel; backtests and final model alike)."
            if f.engine == "dask"
            else "in one process."
        ),
        "",
        "## Backtest metrics (mean over test rounds, cut per 읍면동 at capacity)",
        "",
        _table(s, metric_cols),
        "",
    ]
    if (s["model"] == CHAMPION_LIST).any():
        out += [CHAMPION_ROW_NOTE, ""]
    if f.bootstrap is not None:
        out += [
            "Against the hidden truth (synthetic data only), with bootstrap 95% intervals:",
            "",
            _table(
                f.bootstrap,
                [
                    "model",
                    "truth_precision",
                    "truth_precision_low",
                    "truth_precision_high",
                    "need_found",
                    "lift_over_rule",
                    "lift_low",
                    "lift_high",
                    "gap_closed",
                    "gap_closed_low",
                    "gap_closed_high",
                    "minus_candidate",
                    "minus_candidate_low",
                    "minus_candidate_high",
                ],
            ),
            "",
            f"minus_candidate: a model's truth precision minus {f.candidate}'s on the same "
            "bootstrap draws; an interval that excludes 0 is a difference the data can tell.",
            "",
        ]
    out += [
        "## Selective labels",
        "",
        "Labels exist only for households that earlier lists chose: mostly the central rule's "
        "(distinct crisis types), plus local discretion and a small random exploration share. A "
        "model trained on them learns *who among the listed* had need, not who in the population "
        "has need, and it inherits the rule's blind spots. Its probabilities are calibrated to "
        "visited households, not to everyone. The corrections: inverse-probability weighting "
        "with the recorded selection probabilities (`ipw`), unvisited households with no crisis "
        "signal in the months after a round counted as negatives (`negatives`), both "
        "(`ipw_negatives`) and none (`plain`); "
        + (
            f"compared in the backtests, see the rows `{f.candidate}-<method>` above. "
            if "selective_labels" in f.compared
            else "not compared in this training (`outreach train --compare selective_labels`). "
        )
        + "Observed-label precision of a new list rests on the "
        "few listed households that earlier lists also chose (column observed_emd_unlabelled "
        "counts the rest): on real data it is a weak guide, and outreach should keep a random "
        "exploration share so that future labels can correct the model.",
        "",
        *override_section(f.overrides),
        *service_section(f.service_match, f.service_labels),
        "## Fairness (at the capacity cut, against the truth)",
        "",
    ]
    if f.fairness is not None:
        flagged = f.fairness[f.fairness["flagged"]]
        small = f.fairness[f.fairness["too_small"]]
        compared = f.fairness[~f.fairness["too_small"]]
        out += [
            f"{len(flagged)} group(s) flagged: a precision or recall ratio to the reference group "
            "whose whole bootstrap 95% interval lies outside the bounds. "
            f"{len(small)} group(s) too small to compare. Recall of 시도, 시군구 and urban/rural "
            "is judged as the share of the need any list could find at their capacity. "
            "p: Fisher exact test against the reference. Full table: `fairness/fairness.csv`.",
            "",
            _table(
                compared,
                [
                    "attribute",
                    "group",
                    "reference",
                    "precision_ratio",
                    "precision_ratio_low",
                    "precision_ratio_high",
                    "precision_p_value",
                    "judged_recall_ratio",
                    "judged_recall_ratio_low",
                    "judged_recall_ratio_high",
                    "recall_p_value",
                    "flagged",
                ],
            ),
        ]
    else:
        out.append("No truth available: the audit against the truth was not run.")
    if f.tradeoff is not None and len(f.tradeoff):
        out += [
            "",
            f"Mitigation: {f.mitigation}. Reason: {f.mitigation_reason}",
            "",
            "Each mitigation setting of the registered candidate in the backtests (precision and "
            "need found at capacity against the truth; disparity: the recall or precision ratio "
            "furthest from 1, as a factor; plot `fairness/tradeoff.png`):",
            "",
            _table(
                f.tradeoff,
                [
                    "setting",
                    "registered",
                    "truth_precision",
                    "need_found",
                    "flags",
                    "worst_recall_disparity",
                    "worst_precision_disparity",
                    "mitigated_flags",
                    "mitigated_recall_disparity",
                ],
            ),
        ]
    if f.proxy is not None and len(f.proxy):
        out += [
            "",
            "Proxy check (how well the model inputs predict each audit-only attribute):",
            "",
            _table(f.proxy, ["attribute", "auc", "accuracy", "majority_accuracy"]),
        ]
    out += [
        "",
        "## Promotion",
        "",
        f"Gate metric: `{f.gate_metric}`. Decision: "
        f"{'champion' if f.promoted else 'challenger'} - {f.decision}",
        "",
        "| gate | passed | value | threshold | waived | reason |",
        "|---|---|---|---|---|---|",
    ]
    for g in f.gates:
        out.append(
            f"| {g.name} | {g.passed} | {_fmt(g.value, 4)} | {_fmt(g.threshold, 4)} | "
            f"{g.waived} | {g.waiver_reason or g.detail} |"
        )
    out += [
        "",
        "## Limitations",
        "",
        "- Trained and evaluated on synthetic data; figures against the truth cannot be measured "
        "on real data.",
        "- Few test rounds and a small capacity make the intervals wide; per-group figures "
        "more so.",
        "- Need is measured as the caseworker's finding, which depends on the visit itself.",
        "- Features that describe the household (age, household type, region) can act as proxies "
        "for protected attributes: see the proxy check.",
        "",
    ]
    return "\n".join(out)
