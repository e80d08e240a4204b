"""``outreach describe`` from per-partition counts: the exact AUC, the tallies, and the figures on
the committed sample against the old whole-frame computation (kept here as the reference)."""

from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from conftest import make_config
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_auc_score

from pipeline.datasets import TableLayout
from pipeline.describe.stage import (
    BENEFIT_ORDER,
    INCOME_ORDER,
    TENURE_RISK_ORDER,
    Tally,
    add_counts,
    auc_from_counts,
    audit_value_counts,
    describe,
    read_partition,
    recent_indicator_counts,
    single_signal_aucs,
)
from pipeline.months import parse_month_series

# --- the exact AUC ----------------------------------------------------------------------------


def counts_of(score: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct values of ``score`` with the number of positives and negatives at each."""
    values, where = np.unique(score, return_inverse=True)
    positives = np.bincount(where, weights=label, minlength=len(values)).astype(int)
    negatives = np.bincount(where, minlength=len(values)) - positives
    return values, positives, negatives


@pytest.mark.parametrize("seed", range(20))
def test_auc_from_counts_equals_roc_auc_score_on_discrete_data_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 3000))
    levels = int(rng.integers(2, 8))
    label = rng.random(n) < rng.uniform(0.02, 0.5)
    label[:2] = [True, False]  # both classes present
    # Discrete and informative: many ties; ordinal bands may be negated (-0.0 included).
    score = rng.integers(0, levels, n) + label * rng.integers(0, 2, n)
    score = -score.astype(float) if seed % 2 else score
    values, positives, negatives = counts_of(score, label.astype(int))
    assert auc_from_counts(values, positives, negatives) == pytest.approx(
        roc_auc_score(label, score), abs=1e-12
    )
    # Rows one by one (repeated values) give the same number as the aggregated counts.
    rows = auc_from_counts(score, label.astype(int), (~label).astype(int))
    assert rows == auc_from_counts(values, positives, negatives)


def test_auc_from_counts_known_values():
    # One positive above both negatives, one tied with one of them: (2 + 1 + 0.5) / 4.
    assert auc_from_counts([0, 1, 2], [0, 1, 1], [1, 1, 0]) == 0.875
    assert auc_from_counts([0.0, -0.0], [1, 0], [0, 1]) == 0.5  # -0.0 ties with 0.0
    assert auc_from_counts([1, 2], [0, 3], [5, 0]) == 1.0
    assert auc_from_counts([1, 2], [3, 0], [0, 5]) == 0.0


def test_constant_score_has_auc_one_half_as_in_sklearn():
    label = np.array([True, False, False, True, False])
    score = np.full(5, 3.0)
    assert auc_from_counts([3.0], [2], [3]) == 0.5 == roc_auc_score(label, score)


def test_one_class_missing_gives_nan_as_sklearn_does():
    # sklearn warns (UndefinedMetricWarning) and returns NaN; older versions raised ValueError.
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(roc_auc_score(np.zeros(4, dtype=bool), np.arange(4.0)))
    assert np.isnan(auc_from_counts([0, 1, 2], [0, 0, 0], [1, 2, 1]))
    assert np.isnan(auc_from_counts([0, 1, 2], [1, 2, 1], [0, 0, 0]))
    assert np.isnan(auc_from_counts([], [], []))


def test_nan_values_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        auc_from_counts([0.0, np.nan], [1, 1], [1, 1])


# --- per-round AUCs from tallies versus the whole-frame computation -----------------------------


def whole_frame_aucs(frames: list[pd.DataFrame]) -> dict[str, float]:
    """The old computation: concatenate every (partition, round) frame, fill gaps with 0."""
    auc_frame = pd.concat(frames, ignore_index=True).fillna(0)
    rounds = [g for _, g in auc_frame.groupby("round") if g["in_need"].nunique() == 2]
    aucs = {}
    for column in auc_frame.columns.drop(["in_need", "round"]):
        if auc_frame[column].nunique() > 1:
            per_round = [
                roc_auc_score(g["in_need"].to_numpy(dtype=bool), g[column].to_numpy())
                for g in rounds
            ]
            aucs[column] = round(float(np.mean(per_round)), 4) if per_round else np.nan
    return aucs


def tallied_aucs(frames: list[pd.DataFrame]) -> dict[str, float]:
    """The new computation: counts per frame, added up, then the exact AUC."""
    values, classes = pd.Series(dtype="int64"), pd.Series(dtype="int64")
    for frame in frames:
        r = int(frame["round"].iloc[0])
        in_need = frame["in_need"].to_numpy(dtype=bool)
        part = audit_value_counts(frame.drop(columns=["in_need", "round"]), in_need)
        values = add_counts(values, pd.concat({r: part}, names=["round"]))
        part_classes = pd.Series(in_need).value_counts()
        classes = add_counts(classes, pd.concat({r: part_classes}, names=["round", "in_need"]))
    return single_signal_aucs(values, classes)


def random_frame(rng, r: int, n: int, columns: list[str], need_share: float) -> pd.DataFrame:
    frame = pd.DataFrame({c: rng.integers(0, 4, n).astype(float) for c in columns})
    frame.loc[rng.random(n) < 0.05, columns[0]] = np.nan  # NaN counts as 0
    frame["in_need"] = rng.random(n) < need_share
    frame["round"] = r
    return frame


def test_tallied_aucs_equal_the_whole_frame_computation():
    rng = np.random.default_rng(7)
    frames = [
        # Partitions and rounds lack some columns (absent counts as 0), in varying order.
        random_frame(rng, 10, 300, ["a", "b"], 0.2).assign(const=1.0, zero=0.0),
        random_frame(rng, 10, 200, ["a", "c"], 0.3).assign(const=1.0),
        random_frame(rng, 12, 250, ["c", "a"], 0.1).assign(const=1.0, zero=0.0),
        random_frame(rng, 12, 150, ["b"], 0.4),  # no const here: 0, so const has two values
    ]
    expected = whole_frame_aucs(frames)
    got = tallied_aucs(frames)
    assert got == expected
    # Same column order as the concatenated frame, so ties for the best column resolve alike.
    assert list(got) == list(expected) == ["a", "b", "const", "c"]  # "zero" has one value


def test_rounds_with_one_class_are_skipped_like_the_old_code():
    rng = np.random.default_rng(3)
    frames = [
        random_frame(rng, 10, 300, ["a", "b"], 0.2),
        random_frame(rng, 12, 300, ["a", "b"], 0.0),  # nobody in need: skipped
        random_frame(rng, 14, 300, ["a", "b"], 1.0),  # everybody in need: skipped
    ]
    frames[2] = frames[2].assign(in_need=True)
    expected = whole_frame_aucs(frames)
    assert tallied_aucs(frames) == expected
    assert expected == whole_frame_aucs(frames[:1])


def test_all_rounds_with_one_class_give_nan():
    rng = np.random.default_rng(4)
    frames = [random_frame(rng, 10, 50, ["a"], 0.0)]
    assert np.isnan(tallied_aucs(frames)["a"])


def test_add_counts_adds_key_by_key_keeping_nan_keys():
    a = pd.Series([1, 2], index=pd.Index(["x", np.nan], dtype=object))
    b = pd.Series([5, 7], index=pd.Index(["y", np.nan], dtype=object))
    total = add_counts(a, b)
    assert total["x"] == 1 and total["y"] == 5 and total[total.index.isna()].sum() == 9
    assert add_counts(pd.Series(dtype="int64"), b) is b
    assert add_counts(a, pd.Series(dtype="int64")) is a


# --- the figures on the committed sample --------------------------------------------------------


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return make_config(tmp_path_factory.mktemp("describe") / "outputs")


@dataclass
class Traced:
    """describe on the committed sample, with what it kept between partitions."""

    figures: dict
    tally: Tally  # what the figures were computed from
    partitions_read: int
    earlier_partition_held: list[bool]  # at each read, was an earlier partition still alive?


@pytest.fixture(scope="module")
def traced(config, catalogue, sample_raw, sample_truth):
    import pipeline.describe.stage as module

    alive: list[weakref.ref] = []
    held: list[bool] = []
    tallies: list[Tally] = []
    read, summarise = module.read_partition, module.summarise

    def tracking_read(raw, truth, code):
        gc.collect()
        held.append(any(ref() is not None for ref in alive))
        part = read(raw, truth, code)
        alive.extend(weakref.ref(frame) for frame in (part.households, part.events, part.truth))
        return part

    def capturing_summarise(tally, *args):
        tallies.append(tally)
        return summarise(tally, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "read_partition", tracking_read)
        mp.setattr(module, "summarise", capturing_summarise)
        figures = describe(config, catalogue, sample_raw, sample_truth)
    return Traced(figures, tallies[0], len(held), held)


@pytest.fixture(scope="module")
def figures(traced):
    return traced.figures


@pytest.fixture(scope="module")
def reference(config, sample_raw, sample_truth):
    """Key figures computed the old way: per-household rows of all partitions concatenated."""
    raw, truth = TableLayout(sample_raw), TableLayout(sample_truth)
    rounds = config.window.round_months()
    audit_rounds = rounds[2::3] if len(rounds) > 3 else rounds
    window = config.generator.selection.rule_window_months
    attributes, auc_parts, outcome_need = [], [], []
    for code in raw.partitions("households"):
        part = read_partition(raw, truth, code)
        hh, ev, tr = part.households, part.events, part.truth
        attributes.append(hh[["size", "tenure", "income_band", "benefit_status"]])
        need_wide = tr.pivot(index="household_key", columns="m", values="in_need")
        keys = pd.Index(hh["household_key"])
        for r in audit_rounds:
            following = need_wide[r + 1] if (r + 1) in need_wide.columns else False
            need = (need_wide[r] | following).reindex(keys)
            counts = recent_indicator_counts(ev, keys, r, window)
            frame = counts.add_suffix("__count_3m")
            frame["distinct_types_3m"] = (counts > 0).sum(axis=1)
            h = hh.set_index("household_key").reindex(keys)
            frame["size"] = -h["size"].astype(float)
            frame["income_band"] = -h["income_band"].map(INCOME_ORDER).astype(float)
            frame["tenure"] = h["tenure"].map(TENURE_RISK_ORDER).astype(float)
            frame["benefit_status"] = h["benefit_status"].map(BENEFIT_ORDER).astype(float)
            frame["in_need"] = need.to_numpy()
            frame["round"] = r
            auc_parts.append(frame.reset_index(drop=True))
        oc = part.outcomes.copy()
        oc["m"] = parse_month_series(oc["round_month"])
        now = tr[["household_key", "m", "in_need"]]
        following = now.assign(m=now["m"] - 1)
        merged = oc.merge(now, on=["household_key", "m"], how="left").merge(
            following, on=["household_key", "m"], how="left", suffixes=("", "_next")
        )
        merged["truly_in_need"] = merged["in_need"].fillna(False) | merged["in_need_next"].fillna(
            False
        )
        outcome_need.append(merged[["outcome_code", "selection_reason", "truly_in_need"]])
    attrs = pd.concat(attributes)
    outcomes = pd.concat(outcome_need)
    resolved = outcomes[
        outcomes["outcome_code"].isin(["public_support", "private_support", "closed_no_need"])
    ]
    supported = resolved["outcome_code"].isin(["public_support", "private_support"])
    return {
        "households": {
            "mean_size": float(attrs["size"].mean()),
            "tenure_share": attrs["tenure"].value_counts(normalize=True).round(4).to_dict(),
            "income_band_share": attrs["income_band"]
            .value_counts(normalize=True)
            .round(4)
            .to_dict(),
            "benefit_status_share": attrs["benefit_status"]
            .value_counts(normalize=True)
            .round(4)
            .to_dict(),
        },
        "aucs": whole_frame_aucs(auc_parts),
        "audit_columns_per_partition_round": [set(f.columns) for f in auc_parts],
        "past_lists": {
            "truly_in_need_share": round(float(outcomes["truly_in_need"].mean()), 4),
            "truly_in_need_by_reason": outcomes.groupby("selection_reason")["truly_in_need"]
            .mean()
            .round(4)
            .to_dict(),
            "support_given_when_in_need": round(
                float(supported[resolved["truly_in_need"]].mean()), 4
            ),
            "support_given_when_not_in_need": round(
                float(supported[~resolved["truly_in_need"]].mean()), 4
            ),
        },
    }


def test_sample_household_figures_equal_the_whole_frame_ones(figures, reference):
    assert figures["households"] == reference["households"]


def test_sample_aucs_equal_the_whole_frame_ones(figures, reference):
    auc = figures["truth"]["auc_against_truth"]
    expected = reference["aucs"]
    assert auc["per_column"] == expected
    single = {k: v for k, v in expected.items() if k != "distinct_types_3m"}
    assert auc["distinct_types_3m"] == expected["distinct_types_3m"]
    assert auc["best_single_column"] == max(single, key=single.get)
    assert auc["best_single_column_auc"] == max(single.values())


def test_sample_exercises_columns_absent_from_some_partitions(reference):
    """The fill-with-0 path matters on the sample: some partition-rounds lack an indicator."""
    columns = reference["audit_columns_per_partition_round"]
    assert set.union(*columns) != set.intersection(*columns)


def test_sample_past_list_figures_equal_the_whole_frame_ones(figures, reference):
    assert figures["truth"]["past_lists"] == reference["past_lists"]


def test_sample_figures_stay_as_committed(figures):
    """A few headline figures of the committed sample (issue 20's calibrated world, 2026-12-05;
    docs/synthetic_data.md)."""
    assert figures["rows"] == {
        "households": 20000,
        "members": 43472,
        "crisis_events": 54478,
        "outreach_outcomes": 2730,
    }
    truth = figures["truth"]
    assert truth["in_need_share"] == 0.05864861111111111
    assert truth["rule_precision_at_capacity"]["overall"] == 0.4161
    assert truth["auc_against_truth"]["distinct_types_3m"] == 0.7757
    assert truth["auc_against_truth"]["best_single_column"] == "income_band"
    assert truth["auc_against_truth"]["best_single_column_auc"] == 0.731
    assert truth["past_lists"]["truly_in_need_share"] == 0.4333


def test_describe_holds_one_partition_at_a_time(traced, sample_raw):
    assert traced.partitions_read == len(TableLayout(sample_raw).partitions("households")) > 1
    assert not any(traced.earlier_partition_held), "an earlier partition is still held"


def test_the_tally_is_counts_whose_size_does_not_grow_with_households(traced, figures):
    """Everything kept across partitions is a count per key (indicator, month, round, value...)."""

    def entries(tally) -> int:
        return sum(
            len(value) for value in vars(tally).values() if isinstance(value, pd.Series | dict)
        )

    kept = entries(traced.tally) + entries(traced.tally.truth)
    households = figures["rows"]["households"]
    assert kept < households / 4
    # The biggest tally: (round, column, value, in_need) -> households, a few values per column.
    audit = traced.tally.truth.audit_values
    per_column = audit.groupby(level=["round", "column"]).size()
    assert per_column.max() <= 2 * 11


def test_without_truth_there_are_no_truth_figures(config, catalogue, sample_raw, figures):
    raw_only = describe(config, catalogue, sample_raw, None)
    assert "truth" not in raw_only
    assert {k: v for k, v in figures.items() if k != "truth"} == raw_only
