"""The policies a simulation compares, and the lists of those that use no model.

A model policy (``champion`` and its variants) lists households through the real ``outreach
train`` and ``outreach score``; its settings are config overrides (:func:`policy_overrides`):
``champion`` as configured, ``champion_<method>`` with another selective-label method,
``champion_no_exploration`` with no random share of the visit tier, and ``champion_broken``
the loop deliberately broken: plain labels, no exploration, and every model it trains promoted
(each gate waived), so that it learns only from its own lists and nothing stops what it learns.
Since plain labels are the default, the gates are what set it apart from
``champion_no_exploration``.
The other policies list from the round's feature folder, pure functions here:

- ``rule``: the central rule alone at full capacity: per 읍면동, the eligible households with
  the most distinct crisis types reported in the last ``generator.selection.rule_window_months``
  months (at least one), ties broken at random (seeded);
- ``random``: eligible households drawn at random, up to capacity;
- ``oracle``: the eligible households in need at the last month of the data window (the hidden
  truth), most hardship first, up to capacity: what a list could find at best.

Every list is the visit tier only (capacity households per 읍면동), as the rule's lists were.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import COMPARISONS, GATE_NAMES, SIMULATE_MODEL_PREFIX, Config
from pipeline.vocabulary import EMD, KEY

NONE = "none"  # the counterfactual world: nobody is contacted
BROKEN_WAIVER = "simulation: the deliberately broken loop promotes every model it trains"
NON_MODEL = ("rule", "random", "oracle")
LISTED_COLUMNS = (
    KEY,
    "sigungu_code",
    EMD,
    "tier",
    "score",
    "expected_probability",
    "selection_reason",
)


def is_model_policy(policy: str) -> bool:
    return policy.startswith(SIMULATE_MODEL_PREFIX)


def policy_overrides(config: Config, policy: str) -> dict[str, Any]:
    """Config sections a model policy changes: its selective-label method, or no exploration;
    and the backtests' comparisons: the off-policy estimates only, unless
    ``simulate.compare_in_training`` (then all of ``training.compare``'s)."""
    method = config.training.selective_labels.method
    scoring: dict[str, Any] = {}
    if policy in ("champion_no_exploration", "champion_broken"):
        scoring["exploration_share"] = 0.0
    if policy == "champion_broken":  # the loop that learns only what its own lists show
        method = "plain"
    elif policy not in ("champion", "champion_no_exploration"):
        method = policy.removeprefix(f"{SIMULATE_MODEL_PREFIX}_")
    # The off-policy estimates of the simulated rounds are measured against the truth
    # (docs/offpolicy.md, "In simulated rounds"); the other comparisons are the policies.
    compare = list(COMPARISONS) if config.simulate.compare_in_training else ["offpolicy"]
    training: dict[str, Any] = {"selective_labels": {"method": method}, "compare": compare}
    if policy == "champion_broken":
        training["gates"] = {"waivers": [{"gate": g, "reason": BROKEN_WAIVER} for g in GATE_NAMES]}
    return {"training": training, "scoring": scoring}


def _ranked_list(
    frame: pd.DataFrame, order: list[str], ascending: list[bool], capacity: pd.Series
) -> pd.DataFrame:
    ranked = frame.sort_values([EMD, *order], ascending=[True, *ascending], kind="stable")
    rank = ranked.groupby(EMD, observed=True).cumcount().to_numpy()
    room = ranked[EMD].map(capacity).fillna(0).to_numpy()
    return ranked.loc[rank < room]


def non_model_list(
    policy: str,
    features: pd.DataFrame,
    eligible: np.ndarray,
    capacity: pd.DataFrame,
    *,
    rule_column: str,
    round_month: int,
    seed: int,
    hidden: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The visit list of ``rule``, ``random`` or ``oracle`` for one round (LISTED_COLUMNS).

    ``features``: household_key, emd_code and ``rule_column`` of the round's feature folder;
    ``eligible``: the eligibility rule per row; ``capacity``: emd_code, sigungu_code,
    capacity_per_round; ``hidden`` (oracle only): household_key, in_need, hardship.
    """
    frame = features.loc[eligible, [KEY, EMD, rule_column]].copy()
    frame[KEY] = frame[KEY].astype("string")
    frame[EMD] = frame[EMD].astype("string")
    rng = np.random.default_rng([seed, round_month, NON_MODEL.index(policy)])
    frame["tiebreak"] = rng.random(len(frame))
    per_emd = capacity.set_index(capacity[EMD].astype("string"))
    room = per_emd["capacity_per_round"].astype("int64")
    if policy == "rule":
        frame = frame.loc[frame[rule_column] >= 1]
        listed = _ranked_list(frame, [rule_column, "tiebreak"], [False, True], room)
        score = listed[rule_column].astype("float64")
    elif policy == "random":
        listed = _ranked_list(frame, ["tiebreak"], [True], room)
        score = pd.Series(np.nan, index=listed.index)
    elif policy == "oracle":
        if hidden is None:
            raise ValueError("the oracle needs the hidden state")
        state = hidden.set_index(hidden[KEY].astype("string"))
        frame["in_need"] = frame[KEY].map(state["in_need"]).fillna(False).astype(bool)
        frame["hardship"] = frame[KEY].map(state["hardship"]).astype("float64").fillna(-np.inf)
        listed = _ranked_list(
            frame, ["in_need", "hardship", "tiebreak"], [False, False, True], room
        )
        score = listed["hardship"]
    else:
        raise ValueError(f"{policy} is not a policy without a model")
    return pd.DataFrame(
        {
            KEY: listed[KEY].to_numpy(),
            "sigungu_code": listed[EMD].map(per_emd["sigungu_code"].astype("string")).to_numpy(),
            EMD: listed[EMD].to_numpy(),
            "tier": "visit",
            "score": score.to_numpy(dtype="float64"),
            "expected_probability": np.nan,
            "selection_reason": policy,
        }
    ).reset_index(drop=True)


def model_list(scores: pd.DataFrame) -> pd.DataFrame:
    """The listed households (visit and phone tiers) of a round ``outreach score`` wrote, in
    LISTED_COLUMNS; ``expected_probability`` is the calibrated score (the model's probability
    of need)."""
    listed = scores.loc[scores["tier"].isin(["visit", "phone"])]
    return pd.DataFrame(
        {
            KEY: listed[KEY].astype("string").to_numpy(),
            "sigungu_code": listed["sigungu_code"].astype("string").to_numpy(),
            EMD: listed[EMD].astype("string").to_numpy(),
            "tier": listed["tier"].astype("string").to_numpy(),
            "score": listed["score"].to_numpy(dtype="float64"),
            "expected_probability": listed["score"].to_numpy(dtype="float64"),
            "selection_reason": listed["selection_reason"].astype("string").to_numpy(),
        }
    ).reset_index(drop=True)
