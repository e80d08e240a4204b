"""The crisis-information catalogue and the outcome codes."""

import re
from pathlib import Path

import pytest

from pipeline.catalogue import load_indicators, load_outcomes
from pipeline.config import Config, ConfigError


def test_catalogue_has_at_least_25_complete_indicators(catalogue):
    assert len(catalogue.indicators) >= 25
    for ind in catalogue.indicators:
        assert ind.name_ko and ind.name_en and ind.agency_ko and ind.agency_en
        assert ind.group in catalogue.groups
        assert ind.unit in catalogue.units


def test_catalogue_covers_every_group(catalogue):
    used = {ind.group for ind in catalogue.indicators}
    assert (
        used
        == set(catalogue.groups)
        == {
            "utilities",
            "arrears",
            "finance",
            "employment",
            "health",
            "housing",
            "benefits",
            "family_safety",
            "care",
            "isolation",
        }
    )


def test_at_least_three_sources_start_inside_the_window(catalogue):
    window = Config().window
    late = [
        ind
        for ind in catalogue.indicators
        if ind.available_from_index is not None
        and window.start_index < ind.available_from_index <= window.end_index
    ]
    assert len(late) >= 3


def test_outcome_codes_match_the_design(outcome_catalogue):
    labels = outcome_catalogue.label_of()
    assert labels == {
        "public_support": 1,
        "private_support": 1,
        "closed_no_need": 0,
        "unreachable": None,
        "in_progress": None,
        "declined": None,  # need not assessed: the household refused
        "already_supported": None,
    }
    assert outcome_catalogue.reason_codes == [
        "central_rule",
        "local_discretion",
        "random_exploration",
        "model_score",  # lists written by `outreach score`
        "carried_over",
    ]
    carried = [o.code for o in outcome_catalogue.outcomes if o.carry]
    assert carried == ["unreachable", "in_progress"]
    assert {o.ministry for o in outcome_catalogue.outcomes} <= {
        c.code for c in outcome_catalogue.ministry_categories
    }
    assert {r.action for r in outcome_catalogue.override_reasons} == {"skip", "add"}
    assert [c.next_tier for c in outcome_catalogue.call_results] == [
        "none",
        "visit",
        "none",
        "phone",
    ]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("    status: linked\n", "    status: finished\n", "is not a case status"),
        ("    ministry: not_eligible\n", "    ministry: gone\n", "ministry 'gone' is not a"),
        ("    no_support_reason: declined\n", "", "no_support_reason is set exactly when"),
        ("  - code: skipped\n", "  - code: skipped_now\n", "'skipped' is missing"),
        ("  - code: already_supported\n", "  - code: declined\n", "code 'declined' appears twice"),
    ],
)
def test_inconsistent_outcome_catalogue_is_refused(tmp_path, repo_root, old, new, message):
    text = (repo_root / "configs" / "outcomes.yaml").read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "outcomes.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_outcomes(path)


def test_duplicate_indicator_code_is_refused(tmp_path, repo_root):
    text = (repo_root / "configs" / "indicators.yaml").read_text(encoding="utf-8")
    broken = text.replace("code: water_cut", "code: power_cut")
    path = tmp_path / "indicators.yaml"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(ConfigError, match="duplicate indicator codes: power_cut"):
        load_indicators(path)


def test_a_group_without_indicators_is_refused(tmp_path, repo_root):
    """A catalogue cut down to the kinds of an earlier year can leave a group empty: refused
    with its name, not a failure deep in the feature build (found measuring issue 20)."""
    import yaml

    doc = yaml.safe_load((repo_root / "configs" / "indicators.yaml").read_text(encoding="utf-8"))
    doc["indicators"] = [i for i in doc["indicators"] if i["group"] != "isolation"]
    path = tmp_path / "indicators.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match="group 'isolation' has no indicator"):
        load_indicators(path)


def test_bad_lag_distribution_is_refused(tmp_path, repo_root):
    text = (repo_root / "configs" / "indicators.yaml").read_text(encoding="utf-8")
    broken = text.replace("lag: [0.6, 0.3, 0.1]", "lag: [0.6, 0.3, 0.3]", 1)
    path = tmp_path / "indicators.yaml"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(ConfigError, match="lag"):
        load_indicators(path)


def test_missing_catalogue_file():
    with pytest.raises(ConfigError, match="catalogue file not found"):
        load_outcomes(Path("/nonexistent/outcomes.yaml"))
