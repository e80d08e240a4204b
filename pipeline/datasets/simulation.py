"""The results of ``outreach simulate``: ``<output_root>/simulate/results/`` (docs/simulation.md).

Written whole by the simulate stage (a failed simulation leaves the last good results); read by
the report (its simulation page) and by people. Files:

- ``rounds.csv`` and ``cumulative.csv``: tidy measures (policy, round, measure, value), per round
  and cumulative to each round (:mod:`models.loop`);
- ``policies.csv``: one row per policy, the cumulative measures at the last round and the
  differences against the reference policy with their bootstrap intervals;
- ``fairness.csv``: recall and precision ratios per policy, round, attribute and group;
- ``per_emd.csv``: per policy and 읍면동, the totals the intervals resample;
- ``signals.csv``: per policy, the trends and flags of a degrading loop;
- ``offpolicy.csv``: the doubly robust off-policy estimates of precision at capacity that the
  model policies' trainings made of simulated rounds, beside the truth (error, coverage);
- ``simulation.json``: the settings (config digest, seed, rounds, policies, trained rounds,
  champions); ``timing.json``: seconds per policy and step, peak memory (not deterministic);
- ``plots/measures.png`` and ``plots/fairness.png``.

No household key is in any of them: aggregates only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.io import read_json_file

RESULTS = "results"
PER_ROUND = "rounds.csv"
CUMULATIVE = "cumulative.csv"
POLICIES = "policies.csv"
FAIRNESS = "fairness.csv"
PER_EMD = "per_emd.csv"
SIGNALS = "signals.csv"
OFFPOLICY = "offpolicy.csv"
RECORD = "simulation.json"
TIMING = "timing.json"
PLOTS = "plots"
PLOT_MEASURES = "measures.png"
PLOT_FAIRNESS = "fairness.png"


def results_dir(config: Config) -> Path:
    """``<output_root>/simulate/results/``."""
    return OutputLayout(config.paths.output_root).simulate / RESULTS


def has_results(config: Config) -> bool:
    """Whether a simulation has written its results under the output root."""
    return (results_dir(config) / RECORD).is_file()


def read_results(config: Config) -> dict[str, Any]:
    """The results' tables (frames by file name without ``.csv``), the record and the timing."""
    folder = results_dir(config)
    tables = {
        name.removesuffix(".csv"): pd.read_csv(folder / name)
        for name in (PER_ROUND, CUMULATIVE, POLICIES, FAIRNESS, PER_EMD, SIGNALS, OFFPOLICY)
        if (folder / name).is_file()
    }
    return {
        **tables,
        "record": read_json_file(folder / RECORD),
        "timing": read_json_file(folder / TIMING) if (folder / TIMING).is_file() else {},
        "plots": {
            name: folder / PLOTS / name
            for name in (PLOT_MEASURES, PLOT_FAIRNESS)
            if (folder / PLOTS / name).is_file()
        },
    }
