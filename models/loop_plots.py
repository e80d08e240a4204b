"""Charts of the living loop (``outreach simulate``): measures per round, one line per policy.

Inputs are the tidy tables of :func:`models.loop.loop_measures` (policy, round, measure, value).
Files only (no keys, only aggregates); fixed size and dpi and no software tag, as in
:mod:`models.plots`, so the same tables give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from models.loop import (
    CALIBRATION_GAP,
    HARDSHIP_AVERTED,
    MEASURE,
    NEED_FOUND,
    NEVER_CONTACTED,
    OVERLAP,
    POLICY,
    PRECISION,
    ROUND,
    VALUE,
    WORST_PRECISION_RATIO,
    WORST_RECALL_RATIO,
)
from pipeline.months import format_month

# (measure, which table, panel title) of the small multiples of :func:`loop_panels`
PANELS = (
    (PRECISION, "round", "Precision at capacity (truth)"),
    (NEED_FOUND, "round", "Need found (visit list in need)"),
    (HARDSHIP_AVERTED, "cumulative", "Hardship-months averted (cumulative)"),
    (NEVER_CONTACTED, "round", "In need 3 rounds, never reached"),
    (OVERLAP, "round", "List overlap with previous round (mean per EMD)"),
    (CALIBRATION_GAP, "round", "Calibration gap (expected - truth precision)"),
)
DPI = 110


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


def _lines(ax, table: pd.DataFrame, measure: str, policies: list[str]) -> bool:
    """One line per policy of ``measure`` over rounds; whether anything was drawn."""
    part = table[table[MEASURE] == measure]
    drawn = False
    for policy in policies:
        series = part[part[POLICY] == policy].sort_values(ROUND)
        values = series[VALUE].to_numpy(dtype=np.float64)
        if len(values) == 0 or np.isnan(values).all():
            continue
        rounds = series[ROUND].to_numpy()
        ax.plot(np.arange(len(rounds)), values, marker="o", markersize=3, label=policy)
        drawn = True
    return drawn


def _round_axis(ax, rounds: np.ndarray) -> None:
    step = max(1, len(rounds) // 6)
    ticks = np.arange(0, len(rounds), step)
    ax.set_xticks(ticks, [format_month(int(rounds[i])) for i in ticks], fontsize=7)
    ax.set_xlabel("round", fontsize=8)


def loop_panels(per_round: pd.DataFrame, cumulative: pd.DataFrame, path: Path) -> Path:
    """Small multiples, one panel per measure of :data:`PANELS`, one line per policy."""
    tables = {"round": per_round, "cumulative": cumulative}
    policies = list(dict.fromkeys(per_round[POLICY]))
    rounds = np.sort(per_round[ROUND].unique())
    fig = Figure(figsize=(12, 7))
    axes = fig.subplots(2, 3).ravel()
    for ax, (measure, which, title) in zip(axes, PANELS, strict=True):
        if not _lines(ax, tables[which], measure, policies):
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        _round_axis(ax, rounds)
        if measure == CALIBRATION_GAP:
            ax.axhline(0.0, color="grey", linewidth=1, linestyle="--")
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 8), fontsize=8)
        fig.subplots_adjust(bottom=0.12)
    fig.suptitle("The living loop: measures per round and policy", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


def measure_lines(table: pd.DataFrame, measure: str, title: str, path: Path) -> Path:
    """One measure over rounds, one line per policy (e.g. the cumulative need found)."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    policies = list(dict.fromkeys(table[POLICY]))
    if not _lines(ax, table, measure, policies):
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    _round_axis(ax, np.sort(table[ROUND].unique()))
    ax.set_ylabel(measure, fontsize=8)
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _save(fig, path)


def fairness_lines(per_round: pd.DataFrame, path: Path) -> Path:
    """The worst recall and precision ratio over attributes per round, one line per policy
    (1 is parity; the band 0.8-1 is shaded as a guide)."""
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    policies = list(dict.fromkeys(per_round[POLICY]))
    rounds = np.sort(per_round[ROUND].unique())
    for ax, measure, title in (
        (axes[0], WORST_RECALL_RATIO, "Worst recall ratio (min of min, 1/max)"),
        (axes[1], WORST_PRECISION_RATIO, "Worst precision ratio (min of min, 1/max)"),
    ):
        ax.axhspan(0.8, 1.0, color="#e6f2e6")
        if not _lines(ax, per_round, measure, policies):
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylim(0, 1.05)
        ax.set_title(title, fontsize=9)
        _round_axis(ax, rounds)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return _save(fig, path)
