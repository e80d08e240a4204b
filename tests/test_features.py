"""Point-in-time features: equal to the reference, blind to the future, missing when unknown."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _features_fixtures import sample_inputs
from _features_reference import reference_features
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import FeatureInputs, build_features
from features.labels import build_labels
from features.spec import feature_columns, load_feature_spec, model_input_names
from pipeline.months import parse_month


@pytest.fixture(scope="module")
def spec(repo_root):
    return load_feature_spec(repo_root / "configs" / "features.yaml")


@pytest.fixture(scope="module")
def small(sample_raw):
    return sample_inputs(sample_raw, households=250)


def _assert_same(fast: pd.DataFrame, slow: pd.DataFrame) -> None:
    assert list(fast["household_key"]) == list(slow["household_key"])
    for column in fast.columns:
        a, b = fast[column], slow[column]
        if isinstance(a.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(a.dtype):
            assert list(a.astype("string")) == list(b.astype("string")), column
        else:
            np.testing.assert_allclose(
                a.to_numpy(dtype=float),
                b.to_numpy(dtype=float),
                rtol=1e-5,
                equal_nan=True,
                err_msg=column,
            )


@pytest.mark.parametrize("as_of", ["2024-06", "2025-04", "2026-08"])
def test_vectorised_builder_equals_the_slow_reference(
    small, spec, catalogue, outcome_catalogue, as_of
):
    month = parse_month(as_of)
    fast = build_features(small, month, spec, catalogue, outcome_catalogue)
    slow = reference_features(small, month, spec, catalogue, outcome_catalogue)
    assert set(fast.columns) == set(slow.columns)
    _assert_same(fast, slow[fast.columns])


def test_a_source_that_did_not_exist_yet_is_missing_not_zero(
    small, spec, catalogue, outcome_catalogue
):
    before = build_features(small, parse_month("2024-12"), spec, catalogue, outcome_catalogue)
    after = build_features(small, parse_month("2025-03"), spec, catalogue, outcome_catalogue)
    assert before["wage_arrears__count_12m"].isna().all()  # source starts 2025-01
    assert before["wage_arrears__months_since_last"].isna().all()
    assert after["wage_arrears__count_12m"].notna().all()
    assert before["industrial_accident__count_1m"].isna().all()  # starts 2025-07
    assert before["power_cut__count_12m"].notna().all()
    assert before["group_employment__count_12m"].notna().all()  # the group has older sources


def test_audit_attributes_never_become_model_inputs(spec, catalogue):
    inputs = model_input_names(spec, catalogue)
    assert not [c for c in inputs if c.startswith("audit__")]
    assert "audit__head_sex" in [c.name for c in feature_columns(spec, catalogue)]
    assert not [c for c in inputs if "sex" in c or "age_band" in c]


def test_every_column_is_described_in_korean_and_english(spec, catalogue):
    columns = feature_columns(spec, catalogue)
    assert len({c.name for c in columns}) == len(columns)
    for column in columns:
        assert column.description_ko and column.description_en and column.unit
    names = [c.name for c in columns]
    assert "health_ins_arrears__count_6m" in names
    assert all(f"distinct_types__{w}m" in names for w in (1, 3, 6, 12))


# --- point in time: facts reported at or after as_of change nothing -------------------------

AS_OF = parse_month("2025-06")


@pytest.fixture(scope="module")
def tiny(sample_raw):
    return sample_inputs(sample_raw, households=40, partition=1)


@pytest.fixture(scope="module")
def visited(sample_raw):
    """Enough households of one partition to hold past visits, some still open at AS_OF."""
    return sample_inputs(sample_raw, households=4000, partition=1)


future_event = st.fixed_dictionaries(
    {
        "row": st.integers(0, 39),
        "indicator": st.integers(0, 32),
        "ahead": st.integers(0, 20),
        "value": st.floats(0, 1e7, allow_nan=False),
    }
)
future_outcome = st.fixed_dictionaries(
    {
        "row": st.integers(0, 39),
        "ahead": st.integers(0, 6),
        "code": st.sampled_from(
            ["public_support", "private_support", "closed_no_need", "unreachable", "in_progress"]
        ),
        "resolved_in_past_round": st.booleans(),
    }
)


def _resolved(code: str, month: int) -> int | None:
    """The resolved month of an outcome code: none for a visit still in progress."""
    return None if code == "in_progress" else month


def _with_future_facts(
    base: FeatureInputs, events: list[dict], outcomes: list[dict], codes
) -> FeatureInputs:
    keys = base.households["household_key"].tolist()
    new_events = pd.DataFrame(
        {
            "household_key": [keys[e["row"]] for e in events],
            "indicator_code": [codes[e["indicator"]] for e in events],
            "reported_month": [AS_OF + e["ahead"] for e in events],
            "value": [e["value"] for e in events],
        }
    )
    changed = base.events.copy()
    late = changed["reported_month"] >= AS_OF
    changed.loc[late, "value"] = changed.loc[late, "value"] * 3 + 1  # edit facts reported later
    # Outcomes not yet resolved at as_of may resolve later, with any code; new rounds may happen.
    past = base.outcomes.copy()
    resolved = pd.to_numeric(past["resolved_month"], errors="coerce")
    known = (resolved < AS_OF).fillna(False).astype(bool)  # an unresolved visit is open
    open_rows = past.index[(past["round_month"] < AS_OF) & ~known]
    new_rows = []
    for i, o in enumerate(outcomes):
        if o["resolved_in_past_round"] and len(open_rows):
            row = open_rows[i % len(open_rows)]
            past.loc[row, "outcome_code"] = o["code"]
            past.loc[row, "resolved_month"] = _resolved(o["code"], AS_OF + o["ahead"])
        else:
            key = keys[o["row"]]
            month = AS_OF + o["ahead"]
            new_rows.append((key, month, o["code"], _resolved(o["code"], month + 1)))
    emd_of = base.households.set_index("household_key")["emd_code"]
    new_outcomes = pd.DataFrame(
        {
            "household_key": [r[0] for r in new_rows],
            "emd_code": [emd_of[r[0]] for r in new_rows],
            "round_month": [r[1] for r in new_rows],
            "selection_reason": "central_rule",
            "selection_probability": 1.0,
            "outcome_code": [r[2] for r in new_rows],
            "resolved_month": pd.array([r[3] for r in new_rows], dtype="Int32"),
        }
    )
    return FeatureInputs(
        households=base.households,
        members=base.members,
        events=pd.concat([changed, new_events], ignore_index=True),
        outcomes=pd.concat([past, new_outcomes], ignore_index=True),
        urban_emds=base.urban_emds,
    )


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(future_event, max_size=25), outcomes=st.lists(future_outcome, max_size=6))
def test_facts_reported_at_or_after_as_of_change_no_feature(
    tiny, spec, catalogue, outcome_catalogue, events, outcomes
):
    base = build_features(tiny, AS_OF, spec, catalogue, outcome_catalogue)
    future = _with_future_facts(tiny, events, outcomes, catalogue.codes)
    after = build_features(future, AS_OF, spec, catalogue, outcome_catalogue)
    pd.testing.assert_frame_equal(base, after)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(outcomes=st.lists(future_outcome, min_size=1, max_size=6))
def test_facts_known_only_after_as_of_change_no_label_nor_its_metadata(
    visited, catalogue, outcome_catalogue, outcomes
):
    """The label table as of T (label, outcome shown, missing reason, resolved month) is built
    only from what was known at T: how an open visit ends later changes none of it."""
    resolved = pd.to_numeric(visited.outcomes["resolved_month"], errors="coerce")
    still_open = (visited.outcomes["round_month"] < AS_OF) & resolved.isna()
    assert still_open.sum() >= 5, "the property needs visits still open at as_of"
    base = build_labels(visited.outcomes, AS_OF, outcome_catalogue)
    future = _with_future_facts(visited, [], outcomes, catalogue.codes)
    after = build_labels(future.outcomes, AS_OF, outcome_catalogue)
    pd.testing.assert_frame_equal(base, after)


def test_a_fact_reported_the_month_before_as_of_does_change_features(
    tiny, spec, catalogue, outcome_catalogue
):
    """The property above is not vacuous: the same kind of change one month earlier is seen."""
    base = build_features(tiny, AS_OF, spec, catalogue, outcome_catalogue)
    key = tiny.households["household_key"].iloc[0]
    extra = pd.DataFrame(
        {
            "household_key": [key],
            "indicator_code": ["power_cut"],
            "reported_month": [AS_OF - 1],
            "value": [1.0],
        }
    )
    seen = FeatureInputs(
        tiny.households,
        tiny.members,
        pd.concat([tiny.events, extra], ignore_index=True),
        tiny.outcomes,
        tiny.urban_emds,
    )
    after = build_features(seen, AS_OF, spec, catalogue, outcome_catalogue)
    assert after.loc[0, "power_cut__count_1m"] == base.loc[0, "power_cut__count_1m"] + 1


# --- labels ------------------------------------------------------------------------------------


def test_labels_are_known_only_from_their_resolved_month(outcome_catalogue):
    outcomes = pd.DataFrame(
        {
            "household_key": ["A", "B", "C", "D", "E", "F"],
            "emd_code": ["1111051000"] * 6,
            "round_month": [100, 100, 100, 100, 100, 104],
            "selection_reason": ["central_rule"] * 5 + ["random_exploration"],
            "selection_probability": [1.0, 1.0, 0.5, 1.0, 1.0, 0.01],
            "outcome_code": [
                "public_support",
                "closed_no_need",
                "private_support",
                "unreachable",
                "in_progress",
                "public_support",
            ],
            "resolved_month": pd.array([100, 101, 103, 101, None, 104], dtype="Int32"),
        }
    )
    labels = build_labels(outcomes, 103, outcome_catalogue).set_index("household_key")
    assert "F" not in labels.index  # its round is not before as_of
    assert labels.loc["A", "label"] == 1 and labels.loc["B", "label"] == 0
    assert pd.isna(labels.loc["C", "label"])  # resolved 103: not known at as_of 103
    assert labels.loc["C", "missing_reason"] == "not_resolved_by_as_of"
    assert labels.loc["C", "outcome_code"] == "in_progress"
    assert pd.isna(labels.loc["D", "label"]) and labels.loc["D", "missing_reason"] == "unreachable"
    # in progress at the end of the record: at as_of it is known only that it was not resolved
    assert pd.isna(labels.loc["E", "label"])
    assert labels.loc["E", "missing_reason"] == "not_resolved_by_as_of"
    later = build_labels(outcomes, 104, outcome_catalogue).set_index("household_key")
    assert later.loc["C", "label"] == 1
    assert labels.loc["C", "selection_probability"] == 0.5
