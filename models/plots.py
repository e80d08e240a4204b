"""Charts for the training run (written to files; no keys, only aggregates)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve


def _figure(width: float, height: float):
    # The object-oriented API needs no global backend (no import-time side effect).
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    return path


def precision_at_k(curves: dict[str, pd.DataFrame], k: int, path: Path) -> Path:
    """Truth precision (or observed, without truth) among the top k, averaged over rounds.

    ``curves``: per model, the precision at each list size (columns round, listed, precision,
    target), as the backtests measured it (:func:`models.metrics.ranked_cut`).
    """
    fig, ax = _figure(7, 4.5)
    for name, frame in curves.items():
        values = [g["precision"].to_numpy() for _, g in frame.groupby("round", sort=True)]
        ks = frame.loc[frame["round"] == frame["round"].iloc[0], "listed"].to_numpy()
        ax.plot(ks, np.mean(values, axis=0), label=name)
    ax.axvline(k, color="grey", linestyle="--", linewidth=1, label="capacity k")
    ax.set_xlabel("households listed (national ranking)")
    truth = next(iter(curves.values()))["target"].eq("in_need").all()
    ax.set_ylabel("precision (truth)" if truth else "precision")
    ax.set_title("Precision at k, mean over backtest rounds")
    ax.legend(fontsize=8)
    return _save(fig, path)


def pr_curves(curves: dict[str, pd.DataFrame], path: Path) -> Path:
    """Precision-recall curves against the observed labels of the test rounds (pooled)."""
    fig, ax = _figure(6, 4.5)
    for name, frame in curves.items():
        y = pd.to_numeric(frame["observed"], errors="coerce")
        known = y.notna().to_numpy()
        if known.sum() == 0 or y[known].nunique() < 2:
            continue
        precision, recall, _ = precision_recall_curve(
            y[known].astype(int), frame["score"].to_numpy()[known]
        )
        ax.plot(recall, precision, label=name)
    ax.set_xlabel("recall (observed labels)")
    ax.set_ylabel("precision (observed labels)")
    ax.set_title("PR curve on the test rounds' visits")
    ax.legend(fontsize=8)
    return _save(fig, path)


def reliability(tables: dict[str, pd.DataFrame], path: Path) -> Path:
    """Reliability diagram: mean predicted probability against the observed rate, per bin."""
    fig, ax = _figure(5.5, 5)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    for name, table in tables.items():
        pooled = table.assign(hits=table["observed_rate"] * table["count"])
        pooled = pooled.assign(psum=table["mean_predicted"] * table["count"])
        g = pooled.groupby("bin")[["count", "hits", "psum"]].sum()
        ax.plot(g["psum"] / g["count"], g["hits"] / g["count"], marker="o", label=name)
    ax.set_xlabel("mean calibrated probability")
    ax.set_ylabel("observed rate of need found")
    ax.set_title("Calibration on the test rounds")
    ax.legend(fontsize=8)
    return _save(fig, path)


def importance(series: pd.Series, path: Path, top: int = 25) -> Path:
    """Top features by importance."""
    head = series.head(top)[::-1]
    fig, ax = _figure(7, 0.28 * len(head) + 1.2)
    ax.barh(head.index, head.to_numpy())
    ax.set_title(f"Feature importance (top {len(head)})")
    ax.tick_params(axis="y", labelsize=7)
    return _save(fig, path)


def fairness_chart(table: pd.DataFrame, bounds: tuple[float, float], path: Path) -> Path:
    """Precision and (judged) recall ratio of every group against its reference, with their
    bootstrap 95% intervals and the band of the bounds."""
    shown = table[table["precision_ratio"].notna() | table["judged_recall_ratio"].notna()]
    labels = (shown["attribute"] + "=" + shown["group"]).tolist()
    y = np.arange(len(labels))
    fig, ax = _figure(7, 0.3 * len(labels) + 1.5)
    ax.axvspan(bounds[0], bounds[1], color="#e6f2e6")
    for column, label, marker, shift in (
        ("precision_ratio", "precision ratio", "o", -0.15),
        ("judged_recall_ratio", "recall ratio (geography: share of attainable)", "s", 0.15),
    ):
        value = shown[column].to_numpy(dtype=float)
        error = np.vstack(
            [
                value - shown[f"{column}_low"].to_numpy(dtype=float),
                shown[f"{column}_high"].to_numpy(dtype=float) - value,
            ]
        )
        ax.errorbar(value, y + shift, xerr=np.clip(error, 0, None), fmt=marker, label=label)
    ax.axvline(1.0, color="grey", linewidth=1)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("ratio to the reference group (shaded: within bounds)")
    ax.set_title("Fairness at the capacity cut (truth)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def tradeoff(table: pd.DataFrame, bounds: tuple[float, float], path: Path) -> Path:
    """Truth precision at capacity against the largest recall disparity, one point per mitigation
    setting of the registered candidate (the registered setting circled)."""
    fig, ax = _figure(7, 4.5)
    ax.axvspan(1.0, max(bounds[1], 1 / bounds[0]), color="#e6f2e6")
    unmitigated = table["setting"].isin(["none", "unmitigated"])
    for method, marker in (("unmitigated", "o"), ("equal_recall", "s"), ("reweigh", "^")):
        part = table[
            unmitigated if method == "unmitigated" else table["setting"].str.startswith(method)
        ]
        if len(part):
            ax.scatter(
                part["worst_recall_disparity"], part["truth_precision"], marker=marker, label=method
            )
    for _, row in table.iterrows():
        ax.annotate(
            str(row["setting"]),
            (row["worst_recall_disparity"], row["truth_precision"]),
            fontsize=7,
            xytext=(4, 3),
            textcoords="offset points",
        )
    chosen = table[table["registered"].astype(bool)]
    ax.scatter(
        chosen["worst_recall_disparity"],
        chosen["truth_precision"],
        s=160,
        facecolors="none",
        edgecolors="black",
        label="registered",
    )
    ax.set_xlabel("largest recall disparity between groups (factor; shaded: within the bounds)")
    ax.set_ylabel("precision at capacity (truth)")
    ax.set_title("Precision-disparity trade-off of the mitigation settings (backtests)")
    ax.legend(fontsize=8)
    return _save(fig, path)
