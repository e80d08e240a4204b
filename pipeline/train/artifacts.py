"""The files a training run keeps as MLflow artifacts: backtest tables and plots, fairness
tables, feature importance, the resolved config, lineage records, the validation record's copy,
the data dictionary, the gate verdicts and the model card. Written into a folder, then logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from models import plots
from models.backtest import ORACLE
from models.candidates import feature_importance
from models.gates import GateResult
from models.offpolicy import validation as offpolicy_validation
from pipeline.config import Config
from pipeline.datasets.features import DATA_DICTIONARY_CSV
from pipeline.datasets.staged import capacity_file
from pipeline.datasets.validation import SUMMARY_HTML, VALIDATION_JSON, VOLUME_JSON
from pipeline.io import sha256_file, write_json
from pipeline.months import format_month
from pipeline.tracking import names
from pipeline.tracking.names import TRAINING_IMPORTANCE
from pipeline.train.fit import Trained


def write_lineage_artifacts(
    out: Path,
    config: Config,
    raw_digests: dict[str, str],
    feature_folders: dict[int, dict[str, Any]],
    validation_dir: Path | None,
    dictionary: Path,
) -> None:
    """The resolved config, raw and feature digests, capacity, the validation record's copy and
    the data dictionary."""
    write_json(config.model_dump(mode="json"), out / names.RESOLVED_CONFIG)
    write_json(raw_digests, out / names.RAW_FILES)
    write_json(
        {format_month(m): v for m, v in feature_folders.items()},
        out / names.FEATURE_FOLDERS,
    )
    write_json(
        {"path": str(capacity_file(config)), "sha256": sha256_file(capacity_file(config))},
        out / names.CAPACITY,
    )
    if validation_dir is not None:
        for name in (VALIDATION_JSON, VOLUME_JSON, SUMMARY_HTML):
            if (validation_dir / name).is_file():
                (out / names.VALIDATION_DIR).mkdir(exist_ok=True)
                (out / names.VALIDATION_DIR / name).write_bytes(
                    (validation_dir / name).read_bytes()
                )
    if dictionary.is_file():
        (out / DATA_DICTIONARY_CSV).write_bytes(dictionary.read_bytes())


def write_gates(out: Path, gates: list[GateResult]) -> None:
    write_json([g.as_dict() for g in gates], out / names.GATES)


def write_model_artifacts(trained: Trained, config: Config, out: Path) -> dict[str, Path]:
    """Backtest tables and plots, feature importance and fairness tables of the run."""
    bt = trained.backtest
    files = {}
    (out / "backtest").mkdir(parents=True)
    bt.metrics.to_csv(out / "backtest" / "metrics_per_round.csv", index=False)
    bt.summary.to_csv(out / "backtest" / "summary.csv", index=False)
    if bt.bootstrap is not None:
        bt.bootstrap.to_csv(out / "backtest" / "truth_bootstrap.csv", index=False)
    if bt.offpolicy is not None:  # docs/offpolicy.md
        bt.offpolicy.to_csv(out / "backtest" / "offpolicy.csv", index=False)
        pd.concat(
            [offpolicy_validation(bt.offpolicy, t) for t in ("truth", "truth_label_scale")]
        ).to_csv(out / "backtest" / "offpolicy_validation.csv", index=False)
    for name, table in bt.reliability.items():
        table.to_csv(out / "backtest" / f"reliability_{name}.csv", index=False)
    k = int(bt.metrics["k"].iloc[0])
    plot_dir = out / "plots"
    # the mitigation variants have their own plot (fairness/tradeoff.png)
    curves = {m: c for m, c in bt.curves.items() if m not in bt.variants}
    plots.precision_at_k(curves, k, plot_dir / "precision_at_k.png")
    learned = {m: c for m, c in bt.labelled.items() if m not in (ORACLE, *bt.variants)}
    plots.pr_curves(learned, plot_dir / "pr_curve.png")
    plots.reliability(bt.reliability, plot_dir / "calibration.png")
    importance = feature_importance(trained.model)
    importance.rename("importance").to_csv(out / TRAINING_IMPORTANCE, index_label="feature")
    plots.importance(importance, plot_dir / "feature_importance.png")
    fair = out / "fairness"
    fair.mkdir()
    if trained.fairness is not None:
        trained.fairness.to_csv(out / names.FAIRNESS, index=False)
        trained.fairness_rule.to_csv(fair / "fairness_rule_baseline.csv", index=False)
        plots.fairness_chart(
            trained.fairness, config.training.fairness.ratio_bounds, fair / "fairness.png"
        )
    if trained.proxy is not None:
        trained.proxy.to_csv(out / names.PROXY_CHECK, index=False)
    if trained.tradeoff is not None:
        trained.tradeoff.to_csv(fair / "tradeoff.csv", index=False)
        (fair / "settings").mkdir()
        for name, table in trained.variant_fairness.items():
            table.to_csv(fair / "settings" / f"fairness_{name}.csv", index=False)
        plots.tradeoff(
            trained.tradeoff, config.training.fairness.ratio_bounds, fair / "tradeoff.png"
        )
    files["importance"] = out / TRAINING_IMPORTANCE
    return files
