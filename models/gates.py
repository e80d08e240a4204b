"""Promotion gates: pure decisions on measured figures; the stage wrapper moves the alias."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from pipeline.config import GatesConfig
from pipeline.months import format_month

SAME_ROUNDS = "scored on the same test rounds"  # the champion gate's figure, when it could be
# the backtests' list of the model that is champion before this training, scored on the same
# test rounds (models.backtest.run_backtests), so that the champion gate compares both on them
CHAMPION_LIST = "champion"


@dataclass(frozen=True)
class GateResult:
    """One gate: passed on its own, or waived with a written reason."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str
    waived: bool = False
    waiver_reason: str = ""

    @property
    def ok(self) -> bool:
        return self.passed or self.waived

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


# The backtest summary column each gate metric reads, and what it is, for the gate's detail.
GATE_COLUMNS = {
    "truth_precision_emd": "truth_emd_precision_mean",
    "observed_precision_emd": "observed_emd_precision_mean",
    "offpolicy_dr_precision_emd": "offpolicy_dr_emd_precision_mean",
}
GATE_METRIC_MEANING = {
    "truth_precision_emd": "precision at capacity against the hidden truth (synthetic data)",
    "observed_precision_emd": "precision among the listed households that have a label",
    "offpolicy_dr_precision_emd": (
        "doubly robust off-policy estimate of precision at capacity from the logged visits "
        "(docs/offpolicy.md)"
    ),
}


def gate_metric(setting: str, has_truth: bool, has_offpolicy: bool = True) -> str:
    """The metric the lift and champion gates read: the setting, or for ``auto`` the truth when
    it exists (synthetic data), else the doubly robust off-policy estimate (real data), else
    (no logged visits to estimate from) the observed labels."""
    if setting != "auto":
        return setting
    if has_truth:
        return "truth_precision_emd"
    return "offpolicy_dr_precision_emd" if has_offpolicy else "observed_precision_emd"


def _num(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def calibration_gate(max_ece: float, ece: float | None, noise: float | None) -> GateResult:
    """ECE over the test rounds' visits at most ``max_ece``, or within what a perfectly calibrated
    model shows on as few visits (``noise``: the 95th percentile by consistency resampling), in
    which case the detail says that the data cannot measure calibration more finely."""
    detail = "expected calibration error over the test rounds' visits (pooled)"
    if _num(ece) and _num(noise):
        detail += f"; a calibrated model shows up to {noise:.4f} on as many visits"
    if _num(ece) and ece <= max_ece:
        return GateResult("calibration", True, ece, max_ece, detail)
    if _num(ece) and _num(noise) and ece <= noise:
        return GateResult(
            "calibration",
            True,
            ece,
            max_ece,
            detail + ": above the limit, but not distinguishable from noise at this sample size",
        )
    return GateResult("calibration", False, ece, max_ece, detail)


def champion_not_comparable(
    champion_as_of: int | None,
    test_rounds: Sequence[int],
    champion_inputs: Sequence[str] | None,
    inputs: Sequence[str],
) -> str:
    """Why the current champion cannot be scored on this training's test rounds ("" when it can).

    A model trained as of month A learned from the rounds before A only; scored on a test round
    before A it would be judged partly on its own training labels. So the champion is scored
    on the test rounds only when the first of them is not before its as-of month, and only when
    every input it reads is among today's features. Otherwise the gate falls back to the figure
    the champion's own run logged (on its test rounds).
    """
    if champion_as_of is None:
        return "its version records no as-of month"
    if test_rounds and min(test_rounds) < champion_as_of:
        return (
            f"it was trained as of {format_month(champion_as_of)}, after the first test round "
            f"{format_month(min(test_rounds))}, and learned from it"
        )
    if champion_inputs is None:
        return "its model records no input columns"
    missing = sorted(set(champion_inputs) - set(inputs))
    if missing:
        return f"{len(missing)} of its inputs are not among today's features ({missing[0]}, ...)"
    return ""


def evaluate_gates(
    gates: GatesConfig,
    *,
    validation_passed: bool | None,
    validation_detail: str = "",
    candidate_metric: float | None,
    rule_metric: float | None,
    ece: float | None,
    fairness_flags: int,
    ece_noise: float | None = None,
    champion_metric: float | None,
    champion_version: str | None,
    metric_name: str | None = None,
    champion_basis: str = "",
) -> list[GateResult]:
    """Every gate of ``gates`` on the measured figures, with the configured waivers applied.

    ``champion_basis`` says where ``champion_metric`` comes from: :data:`SAME_ROUNDS`, or why it
    is the figure the champion's own run logged (:func:`champion_not_comparable`)."""
    results: list[GateResult] = []
    detail = (
        validation_detail
        or {
            None: "no validation result",
            True: "validation passed",
            False: "validation failed",
        }[validation_passed]
    )
    results.append(GateResult("data_validation", bool(validation_passed), None, None, detail))
    lift = (
        candidate_metric / rule_metric
        if _num(candidate_metric) and _num(rule_metric) and rule_metric
        else None
    )
    results.append(
        GateResult(
            "lift_over_rule",
            lift is not None and lift >= gates.min_lift_over_rule,
            lift,
            gates.min_lift_over_rule,
            f"{metric_name or gates.metric} lift over the rule baseline (mean of backtest rounds)"
            + (
                f": {GATE_METRIC_MEANING[metric_name or gates.metric]}"
                if (metric_name or gates.metric) in GATE_METRIC_MEANING
                else ""
            ),
        )
    )
    results.append(calibration_gate(gates.max_ece, ece, ece_noise))
    results.append(
        GateResult(
            "fairness",
            fairness_flags <= gates.max_fairness_flags,
            float(fairness_flags),
            float(gates.max_fairness_flags),
            "groups with precision or recall ratio outside the configured bounds",
        )
    )
    if champion_version is None:
        results.append(GateResult("champion", True, None, None, "no current champion"))
    elif not _num(champion_metric):
        results.append(
            GateResult(
                "champion",
                True,
                None,
                None,
                f"champion version {champion_version} logged no {metric_name or gates.metric} "
                "(trained before it existed): not compared",
            )
        )
    else:
        floor = champion_metric - gates.champion_tolerance
        basis = (
            SAME_ROUNDS
            if champion_basis == SAME_ROUNDS
            else "as its own run logged on its test rounds"
            + (f": not scored on these, {champion_basis}" if champion_basis else "")
        )
        results.append(
            GateResult(
                "champion",
                _num(candidate_metric) and candidate_metric >= floor,
                candidate_metric,
                floor,
                f"not worse than champion version {champion_version} "
                f"({champion_metric:.4f}, {basis}) less tolerance {gates.champion_tolerance}",
            )
        )
    waivers = {w.gate: w.reason for w in gates.waivers}
    return [
        GateResult(**{**asdict(r), "waived": True, "waiver_reason": waivers[r.name]})
        if not r.passed and r.name in waivers
        else r
        for r in results
    ]


def decision(results: list[GateResult]) -> tuple[bool, str]:
    """Promote when every gate passed or was waived; otherwise the failing gates as the reason."""
    failed = [r for r in results if not r.ok]
    if not failed:
        waived = [r.name for r in results if r.waived]
        note = f" (waived: {', '.join(waived)})" if waived else ""
        return True, f"all promotion gates passed{note}"
    parts = []
    for r in failed:
        shown = (
            f" {r.value:.4f} vs {r.threshold:.4f}" if _num(r.value) and _num(r.threshold) else ""
        )
        parts.append(f"{r.name}{shown}: {r.detail}")
    return False, "gates failed: " + "; ".join(parts)
