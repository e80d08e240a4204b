"""Plot flagged groups and precision cost against the reweighing strength, one line per world.

Reads the ``fairness/tradeoff.csv`` that ``outreach train --compare mitigation`` logs (one per
world: the file itself, or an output root whose newest training run holds one) and draws the
figure of docs/fairness.md ("The strength across worlds")::

    python tools/plot_strengths.py docs/img/fairness_strength_worlds.png \\
        "seed 20261209=/tmp/b209/out" "sample=outputs"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from models.mitigation import REWEIGH

UNMITIGATED = "unmitigated"  # the setting of the registered candidate's fit without mitigation
PREFIX = f"{REWEIGH}-"  # models.mitigation.setting_name: reweigh at 0.3 is "reweigh-30"


def tradeoff_file(source: Path) -> Path:
    """``source`` if it is a CSV, else the newest ``tradeoff.csv`` under its MLflow artifacts."""
    if source.suffix == ".csv":
        return source
    found = sorted(
        source.glob("mlflow/artifacts/*/artifacts/fairness/tradeoff.csv"),
        key=lambda p: p.stat().st_mtime,
    )
    if not found:
        raise SystemExit(f"plot_strengths: no fairness/tradeoff.csv under {source}/mlflow")
    return found[-1]


def strength_curve(table: pd.DataFrame) -> pd.DataFrame:
    """Strength (0: unmitigated), flags and precision cost against the unmitigated list."""
    rows = table[(table["setting"] == UNMITIGATED) | table["setting"].str.startswith(PREFIX)]
    rows = rows.drop_duplicates("setting")
    base = float(rows.loc[rows["setting"] == UNMITIGATED, "truth_precision"].iloc[0])
    strength = rows["setting"].str.removeprefix(PREFIX).replace(UNMITIGATED, "0").astype(float)
    curve = pd.DataFrame(
        {
            "strength": strength / 100.0,
            "flags": rows["flags"].to_numpy(),
            "cost": base - rows["truth_precision"].to_numpy(),
        }
    )
    return curve.sort_values("strength")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="the PNG to write")
    parser.add_argument("worlds", nargs="+", help="LABEL=PATH (a tradeoff.csv or an output root)")
    args = parser.parse_args(argv)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 6.5), sharex=True)
    lowest = 0.0
    for item in args.worlds:
        label, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"plot_strengths: expected LABEL=PATH, got {item!r}")
        curve = strength_curve(pd.read_csv(tradeoff_file(Path(path))))
        top.plot(curve["strength"], curve["flags"], marker="o", label=label)
        bottom.plot(curve["strength"], curve["cost"], marker="o", label=label)
        lowest = min(lowest, float(curve["cost"].min()))
    top.set_ylabel("flagged groups")
    top.set_title("Reweighing strength: flagged groups and precision cost, per world")
    top.axhline(0, color="grey", linewidth=0.8)
    top.legend(fontsize=8)
    bottom.axhspan(-1, 0.02, color="tab:green", alpha=0.08)
    bottom.set_ylim(lowest - 0.01, max(0.1, bottom.get_ylim()[1]))
    bottom.set_ylabel("precision cost (truth; shaded: ≤ 0.02)")
    bottom.set_xlabel("strength (0: unmitigated)")
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
