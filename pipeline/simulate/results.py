"""The results of a simulation: measures per round and cumulative, the policy table, the signals
of a degrading loop, plots; written to ``<output_root>/simulate/results/`` (swapped in whole, so
a failed simulation leaves the last good results), logged to MLflow, timed in
``<output_root>/bench/simulate.json``.

Everything in ``results/`` but ``timing.json`` is a function of the config and the seed: two
simulations with the same ones write the same tables.
"""

from __future__ import annotations

import platform
import resource
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.datasets.features import feature_folder
from pipeline.datasets.simulation import (
    CUMULATIVE,
    FAIRNESS,
    OFFPOLICY,
    PER_EMD,
    PER_ROUND,
    PLOT_FAIRNESS,
    PLOT_MEASURES,
    PLOTS,
    POLICIES,
    RECORD,
    SIGNALS,
    TIMING,
    results_dir,
)
from pipeline.datasets.truth import read_truth_since, read_untreated_since
from pipeline.io import sha256_of_json, staging_dir, write_bytes, write_json
from pipeline.months import format_month
from pipeline.simulate.loop import (
    LISTED_FILE,
    VISITS_FILE,
    PolicyLoop,
    read_records,
    round_config,
)
from pipeline.simulate.policies import NONE
from pipeline.visits import LINKED_CODES
from pipeline.vocabulary import EMD, KEY

HISTORY_MONTHS = 24  # truth read before the first round: onsets of spells of need


def _households(config: Config, runs: Sequence[PolicyLoop]) -> pd.DataFrame:
    """household_key, emd_code and the audit groups, from the first round's feature folder of
    the first policy that built one (static facts: the same in every policy's world)."""
    from models.fairness import AUDIT_SOURCES, audit_attributes

    first = runs[0].rounds[0]
    for run in runs:
        if run.policy == NONE:
            continue
        folder = feature_folder(round_config(config, run.policy, run.root, first - 1), first)
        layout = TableLayout(folder)
        codes = layout.partitions("features")
        if not codes:
            continue
        frame = pd.concat(
            [
                pd.read_parquet(
                    layout.partition_file("features", c), columns=[KEY, EMD, *AUDIT_SOURCES]
                )
                for c in codes
            ],
            ignore_index=True,
        )
        groups = audit_attributes(frame)
        groups.insert(0, EMD, frame[EMD].astype("string").to_numpy())
        groups.insert(0, KEY, frame[KEY].astype("string").to_numpy())
        return groups.sort_values(KEY, kind="stable").reset_index(drop=True)
    raise ValueError("no policy built a feature folder: nothing to measure the lists against")


def _contacts(visits: pd.DataFrame) -> pd.DataFrame:
    """The field work's visits as contacts: household_key, contact_month, reached, outcome_code,
    linked (support found)."""
    if not len(visits):
        return pd.DataFrame(
            {
                KEY: pd.Series(dtype="string"),
                "contact_month": pd.Series(dtype="int64"),
                "reached": pd.Series(dtype=bool),
            }
        )
    code = visits["outcome_code"].astype("string")
    return pd.DataFrame(
        {
            KEY: visits[KEY].astype("string").to_numpy(),
            "contact_month": visits["contact_month"].to_numpy(dtype="int64"),
            "reached": visits["reached"].to_numpy(dtype=bool),
            "outcome_code": code.to_numpy(),
            "linked": code.isin(LINKED_CODES).to_numpy(dtype=bool),
        }
    )


def measure_runs(config: Config, runs: Sequence[PolicyLoop]):
    """The loop's measures (:func:`models.loop.loop_measures`) of every policy but ``none``."""
    from models.loop import LoopWorld, PolicyRun, loop_measures

    rounds = tuple(runs[0].rounds)
    first_month = rounds[0] - HISTORY_MONTHS
    none = next(run for run in runs if run.policy == NONE)
    households = _households(config, runs)
    attributes = tuple(c for c in households.columns if c not in (KEY, EMD, "sido"))
    world = LoopWorld(
        rounds=rounds,
        households=households,
        counterfactual=read_truth_since(OutputLayout(none.root).truth, first_month),
        attributes=attributes,
        references=dict(config.training.fairness.reference_groups),
        min_group_size=config.training.fairness.min_group_size,
    )

    def policy_runs() -> Iterator[PolicyRun]:
        """One policy's frames at a time: measured, then let go before the next is read."""
        for run in runs:
            if run.policy == NONE:
                continue
            truth = OutputLayout(run.root).truth
            yield PolicyRun(
                policy=run.policy,
                listed=read_records(run.root, LISTED_FILE),
                contacts=_contacts(read_records(run.root, VISITS_FILE)),
                truth=read_truth_since(truth, first_month),
                untreated=read_untreated_since(truth, first_month),
            )

    return loop_measures(policy_runs(), world), len(households)


OFFPOLICY_MEASURES = (
    "offpolicy_dr_emd_precision",
    "offpolicy_dr_emd_precision_low",
    "offpolicy_dr_emd_precision_high",
    "truth_emd_precision",
    "offpolicy_truth_label_scale",
)


def offpolicy_in_simulated_rounds(config: Config, runs: Sequence[PolicyLoop]) -> pd.DataFrame:
    """The doubly robust off-policy estimates of precision at capacity that each model policy's
    trainings made of simulated rounds (their backtests' test rounds the loop itself listed and
    visited), beside the truth: policy, window_end, round, list, estimate, low, high, truth,
    covered (the interval holds the truth), error (estimate minus truth), and the same against
    the truth on the labels' scale (``truth_label_scale``: the share of the list a visit would
    record as in need, what the estimators estimate; docs/offpolicy.md): ``error_label_scale``,
    ``covered_label_scale`` (empty for a training that did not log it)."""
    from pipeline.tracking import connect
    from pipeline.tracking.runs import training_backtests

    first = format_month(runs[0].rounds[0])
    rows = []
    for run in runs:
        if not run.trained_rounds:
            continue
        policy_config = round_config(config, run.policy, run.root, run.rounds[-1])
        client = connect(policy_config)
        for row in training_backtests(
            client, policy_config.training.experiment, OFFPOLICY_MEASURES
        ):
            if row["round"] < first:
                continue
            rows.append({"policy": run.policy, **row})
    return offpolicy_frame(rows)


def offpolicy_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The table of :func:`offpolicy_in_simulated_rounds` from its rows (policy, run_id,
    window_end, round, list and the :data:`OFFPOLICY_MEASURES`): estimates without a truth
    dropped, errors and coverage added."""
    frame = pd.DataFrame(
        rows,
        columns=["policy", "run_id", "window_end", "round", "list", *OFFPOLICY_MEASURES],
    )
    frame = frame.drop(columns="run_id").rename(
        columns={
            "offpolicy_dr_emd_precision": "estimate",
            "offpolicy_dr_emd_precision_low": "low",
            "offpolicy_dr_emd_precision_high": "high",
            "truth_emd_precision": "truth",
            "offpolicy_truth_label_scale": "truth_label_scale",
        }
    )
    frame = frame.dropna(subset=["estimate", "truth"])
    for suffix, target in (("", "truth"), ("_label_scale", "truth_label_scale")):
        frame[f"error{suffix}"] = frame["estimate"] - frame[target]
        inside = (frame["low"] <= frame[target]) & (frame[target] <= frame["high"])
        frame[f"covered{suffix}"] = inside.astype("boolean").mask(frame[target].isna())
    return frame.sort_values(["policy", "window_end", "round", "list"]).reset_index(drop=True)


def offpolicy_summary(frame: pd.DataFrame) -> dict[str, Any]:
    """Mean absolute error and interval coverage of the estimates in simulated rounds, against
    the truth and the truth on the labels' scale: over every estimate and per policy."""
    summary: dict[str, Any] = _offpolicy_figures(frame)
    if len(frame):
        summary["by_policy"] = {
            str(policy): _offpolicy_figures(part)
            for policy, part in frame.groupby("policy", sort=True)
        }
    return summary


def _offpolicy_figures(frame: pd.DataFrame) -> dict[str, float | int]:
    if frame.empty:
        return {"estimates": 0}
    figures: dict[str, float | int] = {
        "estimates": len(frame),
        "mean_absolute_error": round(float(frame["error"].abs().mean()), 4),
        "coverage": round(float(frame["covered"].astype(float).mean()), 4),
    }
    scale = frame.dropna(subset=["truth_label_scale"]) if "truth_label_scale" in frame else None
    if scale is not None and len(scale):
        figures["estimates_label_scale"] = len(scale)
        figures["mean_absolute_error_label_scale"] = round(
            float(scale["error_label_scale"].abs().mean()), 4
        )
        figures["coverage_label_scale"] = round(
            float(scale["covered_label_scale"].astype(float).mean()), 4
        )
    return figures


def _peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its largest child (Linux: KiB)."""
    scale = 1024 if platform.system() != "Darwin" else 1
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale / 2**20
    return {"peak_rss_mb": round(own, 1), "peak_rss_mb_children": round(child, 1)}


def _csv(frame: pd.DataFrame, path: Path) -> None:
    write_bytes(frame.to_csv(index=False, float_format="%.6g").encode("utf-8"), path)


def summary_lines(table: pd.DataFrame, reference: str, level: float) -> list[str]:
    """The policy table for the terminal: one line per policy."""
    lines = [
        f"{'policy':<26}{'need found':>11}{'precision':>10}{'averted/1000':>13}"
        f"{'months to contact':>18}{'never 3 rds':>12}   need found vs {reference} "
        f"({level:.0%} interval)"
    ]
    for row in table.itertuples(index=False):
        d = row.need_found_minus_reference
        lo, hi = row.need_found_minus_reference_low, row.need_found_minus_reference_high
        lines.append(
            f"{row.policy:<26}{row.need_found:>11,.0f}{row.precision:>10.3f}"
            f"{row.hardship_averted_per_1000_contacts:>13.1f}{row.median_months_to_contact:>18.1f}"
            f"{row.never_contacted_3_rounds:>12,.0f}   {d:+,.0f} [{lo:+,.0f}, {hi:+,.0f}]"
        )
    return lines


def write_results(
    config: Config,
    runs: Sequence[PolicyLoop],
    seconds: float,
    announce: Callable[[str], None],
    policies_at_once: int = 1,
) -> dict:
    """Measure the runs and write the results folder, the bench record and the MLflow run
    (``policies_at_once``: how many loops ran at a time, for the timing record)."""
    from models.loop import broken_loop_signals, policy_table

    sim = config.simulate
    announce("measuring the policies against the hidden truth")
    measures, households = measure_runs(config, runs)
    table = policy_table(measures, sim.reference, sim.bootstrap_samples, sim.seed, sim.interval)
    signals = broken_loop_signals(measures.per_round)
    offpolicy = offpolicy_in_simulated_rounds(config, runs)
    record = {
        # the settings, not where they ran: the same config in another folder gives one digest
        "config_sha256": sha256_of_json(
            config.model_dump(mode="json", exclude={"source", "paths", "runtime"})
        ),
        "seed": sim.seed,
        "households": households,
        "rounds": [format_month(m) for m in runs[0].rounds],
        "policies": [run.policy for run in runs],
        "reference": sim.reference,
        "retrain_every": sim.retrain_every,
        "trained_rounds": {
            run.policy: [format_month(m) for m in run.trained_rounds] for run in runs
        },
        "champions": {run.policy: run.champions for run in runs if run.champions},
        "offpolicy_in_simulated_rounds": offpolicy_summary(offpolicy),
    }
    timing = {
        "seconds": round(seconds, 1),
        "policies_at_once": policies_at_once,
        "seconds_per_policy": {
            run.policy: {k: round(v, 1) for k, v in sorted(run.seconds.items())} for run in runs
        },
        **_peak_memory_mb(),
    }
    layout = OutputLayout(config.paths.output_root)
    with staging_dir(results_dir(config)) as folder:
        _csv(measures.per_round, folder / PER_ROUND)
        _csv(measures.cumulative, folder / CUMULATIVE)
        _csv(table, folder / POLICIES)
        _csv(measures.fairness, folder / FAIRNESS)
        _csv(measures.per_emd.reset_index(), folder / PER_EMD)
        _csv(signals, folder / SIGNALS)
        _csv(offpolicy, folder / OFFPOLICY)
        write_json(record, folder / RECORD)
        write_json(timing, folder / TIMING)
        _plots(measures, folder / PLOTS)
    write_json(
        {
            "stage": "simulate",
            "households": households,
            "rows_in": households * len(runs[0].rounds) * (len(runs) - 1),
            "seconds": round(seconds, 1),
            "rows_per_s": round(households * len(runs[0].rounds) * (len(runs) - 1) / seconds, 1)
            if seconds
            else 0.0,
            "peak_rss_mb": timing["peak_rss_mb"],
            "peak_rss_mb_children": timing["peak_rss_mb_children"],
            "rounds": len(runs[0].rounds),
            "policies": [run.policy for run in runs],
        },
        layout.bench_record("simulate"),
    )
    _log_to_mlflow(config, record, measures, results_dir(config))
    return {
        **record,
        "summary_lines": summary_lines(table, sim.reference, sim.interval),
        "signals": signals,
    }


def _plots(measures, folder: Path) -> None:
    from models import loop_plots

    folder.mkdir(parents=True, exist_ok=True)
    loop_plots.loop_panels(measures.per_round, measures.cumulative, folder / PLOT_MEASURES)
    loop_plots.fairness_lines(measures.per_round, folder / PLOT_FAIRNESS)


def _log_to_mlflow(config: Config, record: dict, measures, folder: Path) -> None:
    """One run in the main store's simulation experiment: the settings, every policy's per-round
    measures as metrics (step = round number) and the results folder as artifacts."""
    from pipeline.tracking import connect, ensure_experiment
    from pipeline.tracking.runlog import log_artifacts, log_metrics, log_params, start_run

    client = connect(config)
    experiment = ensure_experiment(client, config, config.simulate.experiment)
    rounds = {m: i for i, m in enumerate(sorted(measures.per_round["round"].unique()))}
    with start_run(experiment, f"simulate {len(rounds)} rounds"):
        log_params(
            {
                "rounds": str(len(rounds)),
                "policies": ",".join(record["policies"]),
                "seed": str(record["seed"]),
                "retrain_every": str(record["retrain_every"]),
                "households": str(record["households"]),
                "config_sha256": record["config_sha256"],
            }
        )
        per_round = measures.per_round.dropna(subset=["value"])
        for (round_month, _), part in per_round.groupby(["round", "policy"], sort=True):
            values = {
                f"{p}.{m}": float(v)
                for p, m, v in zip(part["policy"], part["measure"], part["value"], strict=True)
                if np.isfinite(v)
            }
            log_metrics(values, step=rounds[round_month])
        log_artifacts(folder, "simulation")
