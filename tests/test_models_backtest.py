"""Backtest data: point in time, selective-label weights, the rule baseline's list, and the
partition-wise evaluation of test rounds against their whole-frame evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _features_fixtures import sample_inputs
from _models_fixtures import (
    comparable,
    old_fairness_table,
    old_precision_at_k,
    whole_round_evaluation,
    write_feature_folders,
)
from conftest import make_config

from features.build import build_features
from features.spec import load_feature_spec, model_input_names
from models import evaluation as partitioned  # by module: pytest collects Test* names
from models.backtest import (
    RoundPool,
    TrainTable,
    candidate_specs,
    fit_candidate,
    offpolicy_lists,
    training_table,
)
from models.candidates import CalibratedClassifier, RuleBaseline, make_lightgbm
from models.evaluation import LISTED, household_keys
from models.fairness import add_audit_counts, fairness_from_counts
from models.metrics import cut_list, paired_bootstrap
from pipeline.catalogue import load_indicators, load_outcomes
from pipeline.config import (
    COMPARISONS,
    Config,
    LightGBMConfig,
    RuntimeConfig,
    SelectiveLabelsConfig,
    TrainingConfig,
)
from pipeline.datasets import TableLayout
from pipeline.datasets.features import FeatureRounds
from pipeline.datasets.staged import load_capacity
from pipeline.datasets.truth import truth_files
from pipeline.describe.stage import read_partition, recent_indicator_counts, rule_list
from pipeline.months import parse_month
from pipeline.vocabulary import category_levels, coerce_feature_types, eligible_mask

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

INPUTS = ["x"]


def _pool() -> list[RoundPool]:
    pool = []
    for i, r in enumerate((100, 102, 104, 106)):
        labelled = pd.DataFrame(
            {
                "household_key": [f"h{r}a", f"h{r}b", f"h{r}c"],
                "x": [1.0 + i, 2.0, 3.0],
                "label": pd.array([1, 0, 1], dtype="Int8"),
                "resolved_month": pd.array([r, r + 1, r + 3], dtype="Int32"),
                "selection_probability": [1.0, 0.5, 0.02],
                "selection_reason": ["central_rule", "central_rule", "random_exploration"],
            }
        )
        negatives = pd.DataFrame({"household_key": [f"n{r}"], "x": [0.0]})
        pool.append(RoundPool(r, labelled, negatives, r + 4))
    return pool


def test_training_uses_only_labels_resolved_before_the_test_round():
    settings = SelectiveLabelsConfig()
    table = training_table(_pool(), 105, "plain", settings, INPUTS, holdout_rounds=1)
    # resolved months: round 100 -> 100, 101, 103; 102 -> 102, 103, 105; 104 -> 104, 105, 107
    assert sorted(table.round_month.tolist()) == [100, 100, 100, 102, 102, 104]
    assert table.n_negatives == 0
    assert np.all(table.weight == 1.0)
    assert table.calibration_mask.tolist() == [False] * 5 + [True]  # the latest round held out


def test_negatives_only_once_the_quiet_window_is_known():
    settings = SelectiveLabelsConfig()
    table = training_table(_pool(), 105, "negatives", settings, INPUTS, holdout_rounds=1)
    assert table.n_negatives == 1  # round 100 (known from 104); round 102 known only from 106
    assert table.y[-1] == 0 and not table.calibration_mask[-1]


def test_ipw_weights_follow_selection_probability_with_a_clip():
    settings = SelectiveLabelsConfig(weight_clip=10.0)
    table = training_table(_pool(), 104, "ipw", settings, INPUTS, holdout_rounds=1)
    w = table.weight[:3]  # round 100: p = 1, 0.5, 0.02 (clipped to 0.1)
    assert w[1] / w[0] == pytest.approx(2.0)
    assert w[2] / w[0] == pytest.approx(10.0)
    assert table.weight[: table.n_labelled].mean() == pytest.approx(1.0)


def test_the_training_table_copies_the_model_inputs_once():
    """At national scale a copy of the labelled rows is gigabytes: the table concatenates the
    inputs once and never copies the pool's frames whole (before: 3.3 times the inputs)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    inputs = [f"f{i}" for i in range(60)]
    pool = []
    for r in (100, 102, 104, 106):
        n = 20_000
        frame = pd.DataFrame(rng.random((n, 60), dtype=np.float32), columns=inputs)
        frame["label"] = pd.array(rng.integers(0, 2, n), dtype="Int8")
        frame["resolved_month"] = pd.array(np.full(n, r), dtype="Int32")
        frame["selection_probability"] = 0.5
        frame["extra_text"] = pd.array(["1111051000"] * n, dtype="str")
        pool.append(RoundPool(r, frame.copy(), frame.iloc[0:0].copy(), r + 4))
    tracemalloc.start()
    try:
        table = training_table(pool, 108, "plain", SelectiveLabelsConfig(), inputs, 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    inputs_bytes = table.X.memory_usage(index=False).sum()
    assert table.n_labelled == 80_000
    assert peak < 1.3 * inputs_bytes, (peak, inputs_bytes)


def test_no_labels_before_the_cutoff_is_an_error():
    with pytest.raises(ValueError, match="no labels"):
        training_table(_pool(), 100, "plain", SelectiveLabelsConfig(), INPUTS, 1)


def test_candidate_specs_compare_methods_for_the_registered_model():
    assert [s.name for s in candidate_specs(TrainingConfig())] == ["lightgbm"]  # nothing compared
    config = TrainingConfig(compare=COMPARISONS)
    specs = candidate_specs(config)
    names = [s.name for s in specs]
    assert names[:2] == ["lightgbm", "logistic"]
    chosen = config.selective_labels.method
    others = {f"lightgbm-{m}" for m in config.selective_labels.compare if m != chosen}
    # then the fits of the mitigation settings compared (tests/test_mitigation.py)
    mitigation = {s.name for s in specs if s.reweigh != config.mitigation.strength}
    assert others and set(names[2:]) == others | mitigation
    assert mitigation == {
        "lightgbm-unmitigated",
        *(f"lightgbm-reweigh-{round(s * 100)}" for s in config.mitigation.strengths if s != 0.75),
    }
    # each comparison alone: the off-policy estimates' model term is the registered candidate's
    only = {c: [s.name for s in candidate_specs(TrainingConfig(compare=[c]))] for c in COMPARISONS}
    assert only["candidates"] == ["lightgbm", "logistic"]
    assert only["offpolicy"] == ["lightgbm"]
    assert set(offpolicy_lists(TrainingConfig(compare=["offpolicy"])).values()) == {
        "model_term:lightgbm"
    }
    assert only["selective_labels"] == ["lightgbm", *sorted(others, key=names.index)]
    assert set(only["mitigation"]) == {"lightgbm", *mitigation}


def test_calibrated_classifier_follows_sklearn_conventions():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    y = (X["a"] + rng.normal(scale=0.5, size=400) > 0).astype(int).to_numpy()
    held = np.arange(400) >= 300
    config = LightGBMConfig(n_estimators=20, n_jobs=1)
    model = CalibratedClassifier(make_lightgbm(config, 1))
    assert model.fit(X, y, calibration_mask=held) is model
    p = model.predict_proba(X)[:, 1]
    assert ((p >= 0) & (p <= 1)).all() and p[X["a"] > 1].mean() > p[X["a"] < -1].mean()
    again = CalibratedClassifier(make_lightgbm(config, 1)).fit(X, y, calibration_mask=held)
    np.testing.assert_array_equal(p, again.predict_proba(X)[:, 1])  # deterministic
    with pytest.raises(ValueError, match="calibration_mask"):
        CalibratedClassifier(make_lightgbm(config, 1)).fit(X, y)


@pytest.mark.parametrize("partition", [0, 3])
def test_rule_baseline_lists_what_the_documented_rule_lists(
    sample_raw, sample_truth, repo_root, catalogue, outcome_catalogue, partition
):
    """Same list as describe's rule (distinct crisis types in 3 months, per 읍면동, key ties)."""
    round_month = parse_month("2026-04")
    spec = load_feature_spec(repo_root / "configs" / "features.yaml")
    inputs = sample_inputs(sample_raw, 10**9, partition)
    features = coerce_feature_types(
        build_features(inputs, round_month, spec, catalogue, outcome_catalogue), outcome_catalogue
    )
    features = features[eligible_mask(features, ("basic_livelihood",))].reset_index(drop=True)
    capacity = pd.read_parquet(sample_raw / "district_capacity.parquet").set_index("emd_code")[
        "capacity_per_round"
    ]
    rule = RuleBaseline().fit(features)
    cut = cut_list(
        features["household_key"],
        features["emd_code"],
        rule.score_households(features),
        capacity,
        min_score=rule.min_score,
    )
    ours = set(features.loc[cut["listed"].to_numpy(), "household_key"])
    raw = TableLayout(sample_raw)
    code = raw.partitions("households")[partition]
    part = read_partition(raw, None, code)
    keys = pd.Index(part.households["household_key"])
    distinct = (recent_indicator_counts(part.events, keys, round_month, 3) > 0).sum(axis=1)
    ineligible = Config().scoring.ineligible_benefit_status
    theirs = set(rule_list(part.households, distinct, capacity, ineligible))
    assert ours == theirs and len(ours) > 20


# --- a test round evaluated partition by partition equals its whole-frame evaluation ----------


@dataclass(frozen=True)
class Evaluation:
    config: Config
    source: FeatureRounds
    rounds: list[int]
    as_of: int
    inputs: list[str]
    levels: dict[str, list[str]]
    models: dict[str, CalibratedClassifier]
    capacity: pd.Series
    truth: tuple[Path, ...]


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory) -> Evaluation:
    """Feature folders of two test rounds and the labels' month; three small fitted models.

    The models are fitted on the first round's visits (and some unvisited households): they
    only need to rank like real ones. ``lightgbm-isotonic`` gives probabilities with many ties.
    """
    config = make_config(tmp_path_factory.mktemp("evaluation") / "outputs")
    rounds = [parse_month("2026-06"), parse_month("2026-08")]
    as_of = parse_month("2026-10")
    write_feature_folders(config, [*rounds, as_of])
    outcomes = load_outcomes(config.paths.outcomes)
    source = FeatureRounds(config, outcomes)
    spec = load_feature_spec(config.paths.features)
    inputs = model_input_names(spec, load_indicators(config.paths.indicators))
    levels = category_levels(outcomes)
    labels = source.labels(as_of)
    visits = labels[(labels["round_month"] == rounds[0]) & labels["label"].notna()]
    features = source.features(rounds[0])
    features = features[source.eligible(features)].reset_index(drop=True)
    others = features.loc[~features["household_key"].isin(visits["household_key"]), "household_key"]
    quiet = others.sample(3000, random_state=1)
    rows = features.set_index("household_key").loc[
        pd.concat([visits["household_key"], quiet], ignore_index=True)
    ]
    y = np.r_[visits["label"].astype(int).to_numpy(), np.zeros(len(quiet), dtype=int)]
    table = TrainTable(
        X=rows[inputs].reset_index(drop=True),
        y=y,
        weight=np.ones(len(y)),
        calibration_mask=np.arange(len(y)) % 3 == 0,
        round_month=np.full(len(y), rounds[0]),
        n_labelled=len(visits),
        n_negatives=len(quiet),
    )
    numeric = [c for c in inputs if c not in levels]
    categorical = [c for c in inputs if c in levels]
    small = TrainingConfig(lightgbm={"n_estimators": 30, "n_jobs": 1}, logistic={"max_iter": 300})
    isotonic = small.model_copy(
        update={"calibration": small.calibration.model_copy(update={"method": "isotonic"})}
    )
    models = {
        "lightgbm": fit_candidate("lightgbm", table, small, numeric, categorical),
        "logistic": fit_candidate("logistic", table, small, numeric, categorical),
        "lightgbm-isotonic": fit_candidate("lightgbm", table, isotonic, numeric, categorical),
    }
    return Evaluation(
        config,
        source,
        rounds,
        as_of,
        inputs,
        levels,
        models,
        load_capacity(config),
        tuple(truth_files(config)),
    )


@dataclass
class SplitFiles:
    """A source whose test rounds are in files with overlapping key ranges (읍면동 kept whole)."""

    source: FeatureRounds
    files: dict[int, list[Path]]

    def feature_files(self, as_of):
        return self.files.get(as_of) or self.source.feature_files(as_of)

    def __getattr__(self, name):
        return getattr(self.source, name)


def _split_by_emd(source: FeatureRounds, rounds: list[int], folder: Path) -> SplitFiles:
    files = {}
    for r in rounds:
        files[r] = []
        for i, path in enumerate(source.feature_files(r)):
            frame = pd.read_parquet(path)
            emds = sorted(frame["emd_code"].unique())
            for half in (0, 1):
                part = frame[frame["emd_code"].isin(emds[half::2])]
                out = folder / f"{r}-{i}-{half}.parquet"
                part.to_parquet(out, index=False)
                files[r].append(out)
        files[r] = files[r][::-1]  # and not in key order
    return SplitFiles(source, files)


def _assert_close(new: pd.DataFrame, old: pd.DataFrame) -> float:
    """Same frame to float rounding (1e-12 relative, nothing absolute); the largest difference."""
    pd.testing.assert_frame_equal(new, old, check_exact=False, rtol=1e-12, atol=0)
    numbers = old.select_dtypes("number").columns
    difference = (new[numbers] - old[numbers]).abs().to_numpy(dtype=float)
    return float(np.nanmax(difference, initial=0.0))


@pytest.fixture(scope="module")
def whole_frame(evaluation) -> list:
    """The reference: each test round evaluated on its whole frame, as training did before."""
    e = evaluation
    return [
        whole_round_evaluation(
            e.source, r, e.as_of, e.inputs, e.truth, e.models, e.capacity, "lightgbm"
        )
        for r in e.rounds
    ]


@pytest.mark.parametrize("layout", ["partitions", "overlapping_files"])
def test_partition_wise_evaluation_equals_the_whole_frame_evaluation(
    evaluation, whole_frame, layout, tmp_path
):
    """Every metric, table and curve of the test rounds is the one the whole frame gave.

    ``overlapping_files``: the rounds' files split by 읍면동 so that their key ranges overlap
    (the round is then put in key order when combined).
    """
    e = evaluation
    source = e.source if layout == "partitions" else _split_by_emd(e.source, e.rounds, tmp_path)
    runtime = RuntimeConfig(progress=False)
    ks, audits, boots, largest = None, [], [], 0.0
    for r, old in zip(e.rounds, whole_frame, strict=True):
        reader = partitioned.TestRoundReader(
            source, r, e.as_of, e.inputs, e.levels, truth_files=e.truth, runtime=runtime
        )
        new = reader.evaluate(e.models, e.capacity, "lightgbm", 10, ks)
        ks = new.ks if ks is None else ks
        assert new.households.ordered == (layout == "partitions")
        metrics = pd.DataFrame(new.metrics)
        assert list(metrics["model"]) == ["rule", *e.models, "oracle"]
        largest = max(largest, _assert_close(metrics, pd.DataFrame(old.metrics)))
        for name, table in old.reliability.items():
            pd.testing.assert_frame_equal(new.reliability[name], table)
        for name, curve in old.curves.items():
            np.testing.assert_allclose(
                new.curves[name]["precision"], old_precision_at_k(curve, ks), rtol=1e-12, atol=0
            )
            visited = curve[curve["observed"].notna()].reset_index(drop=True)
            pd.testing.assert_frame_equal(
                new.labelled[name],
                visited[["score", "observed", "round"]].astype({"observed": "Int8"}),
            )
        pd.testing.assert_frame_equal(new.bootstrap, old.bootstrap)
        assert new.bootstrap.attrs == old.bootstrap.attrs
        boots.append(new.bootstrap)
        audits.append(new.audit)
        # the households' keys, read again by position, are the round's in key order
        at = np.r_[0:50, len(old.keys) - 50 : len(old.keys), 7000:7100]
        assert new.households.total == len(old.keys)
        assert list(household_keys(new.households, at)) == list(old.keys.iloc[at])
    pooled = add_audit_counts(audits)
    rows = pd.concat([old.audit for old in whole_frame], ignore_index=True)
    for listed in LISTED:
        settings = e.config.training.fairness
        largest = max(
            largest,
            _assert_close(
                *comparable(
                    fairness_from_counts(pooled, settings, listed),
                    old_fairness_table(rows, settings, listed),
                )
            ),
        )
    names = ["rule", *e.models, "oracle"]
    args = dict(reference="rule", oracle="oracle", samples=200, seed=3)
    old_boots = [old.bootstrap for old in whole_frame]
    pd.testing.assert_frame_equal(
        paired_bootstrap(boots, names, **args), paired_bootstrap(old_boots, names, **args)
    )
    assert largest < 1e-12
    print(f"\n{layout}: largest difference to the whole-frame evaluation {largest:.2e}")
