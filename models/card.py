"""The model card: intended use, data, metrics, fairness, selective labels, limitations."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from models.gates import GateResult


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
        "visited households, not to everyone. Corrections compared in the backtests: inverse-"
        "probability weighting with the recorded selection probabilities (`ipw`), unvisited "
        "households with no crisis signal in the months after a round counted as negatives "
        "(`negatives`), both (`ipw_negatives`) and none (`plain`); see the rows "
        f"`{f.candidate}-<method>` above. Observed-label precision of a new list rests on the "
        "few listed households that earlier lists also chose (column observed_emd_unlabelled "
        "counts the rest): on real data it is a weak guide, and outreach should keep a random "
        "exploration share so that future labels can correct the model.",
        "",
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
