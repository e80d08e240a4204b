"""Shadow mode (docs/scoring.md "Shadow mode"): ``outreach score --shadow VERSION`` scores a
challenger beside the round's champion without touching the round; the promotion gate
``training.gates.min_shadow_rounds`` counts the rounds a version was shadowed on."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ScoredSample, copy_outputs, write_config_file

from pipeline.cli import main
from pipeline.datasets.rounds import SHADOW, SHADOW_SCORES, SHADOW_SUMMARY, shadow_dir
from pipeline.lineage import ledger
from pipeline.tracking import connect

LIGHTGBM_SMALL = {"n_estimators": 8, "num_leaves": 7, "n_jobs": 1, "random_state": 0, "verbose": -1}


def run_cli(config_file: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--no-progress", "--config", str(config_file), *args])
    return code, out.getvalue(), err.getvalue()


def round_files(folder: Path) -> dict[str, str]:
    """sha256 of every file of the round except the shadow records."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.relative_to(folder).as_posix().startswith(f"{SHADOW}/")
    }


def register_same_file(config) -> str:
    """The champion's own model file registered again as a new version (with its ledger
    entry, as ``train`` would write it)."""
    from pipeline.lineage import events

    client = connect(config)
    name = config.training.model_name
    champion = client.get_model_version_by_alias(name, "champion")
    new = client.create_model_version(name, source=champion.source, run_id=champion.run_id)
    events.model_registered(
        config.paths.output_root,
        model=name,
        version=str(new.version),
        run_id=champion.run_id,
        as_of=champion.tags.get("as_of", ""),
        seal_sha256=champion.tags.get("seal_sha256", ""),
    )
    return str(new.version)


def register_other_model(sample: ScoredSample) -> str:
    """A different small model (8 trees fitted on the round's features against a noisy copy of
    the champion's top scores), logged, registered and entered in the ledger."""
    from lightgbm import LGBMClassifier

    from models.candidates import CalibratedClassifier
    from pipeline.catalogue import load_outcomes
    from pipeline.lineage import events
    from pipeline.tracking import ensure_experiment, pip_requirements, runlog
    from pipeline.tracking.models import fetch_model, unpickle_model
    from pipeline.tracking.registry import resolve_model
    from pipeline.vocabulary import coerce_feature_types

    config = sample.config
    client = connect(config)
    name = config.training.model_name
    champion = unpickle_model(fetch_model(resolve_model(client, name, None)))
    folder = config.paths.output_root / "features" / f"as_of={sample.as_of}"
    frame = pd.concat(
        [pd.read_parquet(p) for p in sorted(folder.rglob("*.parquet"))], ignore_index=True
    )
    frame = coerce_feature_types(frame, load_outcomes(config.paths.outcomes))
    x = frame[list(champion.feature_names_in_)]
    rng = np.random.default_rng(7)
    score = champion.predict_proba(x)[:, 1]
    y = ((score > np.quantile(score, 0.8)) ^ (rng.random(len(x)) < 0.25)).astype(int)
    model = CalibratedClassifier(LGBMClassifier(**LIGHTGBM_SMALL), method="sigmoid")
    model.fit(x, y, calibration_mask=rng.random(len(x)) < 0.3)
    experiment = ensure_experiment(client, config)
    with runlog.start_run(experiment, "test: another model") as run_id:
        version = runlog.log_registered_model(
            model, x.head(5), list(model.categories_), name, pip_requirements()
        )
    events.model_registered(
        config.paths.output_root,
        model=name,
        version=version,
        run_id=run_id,
        as_of=sample.as_of,
        seal_sha256="",  # not sealed: its artifacts live in the original store
    )
    return version


@dataclass(frozen=True)
class Shadowed:
    sample: ScoredSample
    same: str  # the champion's own file as a new version
    other: str  # a different model
    before: dict[str, str]  # the round's files before
    runs: dict[str, tuple[int, str, str]]


@pytest.fixture(scope="module")
def shadowed(scored_sample, tmp_path_factory) -> Shadowed:
    sample = copy_outputs(scored_sample, tmp_path_factory.mktemp("shadow"))
    same = register_same_file(sample.config)
    other = register_other_model(sample)
    before = round_files(sample.round_dir)
    runs = {
        v: run_cli(sample.config_file, "score", "--shadow", v, "--as-of", sample.as_of)
        for v in (same, other)
    }
    return Shadowed(sample, same, other, before, runs)


def summary_of(shadowed: Shadowed, version: str) -> dict:
    path = shadow_dir(shadowed.sample.round_dir, version) / SHADOW_SUMMARY
    return json.loads(path.read_text(encoding="utf-8"))


def test_shadow_leaves_the_round_untouched(shadowed):
    for version, (code, out, err) in shadowed.runs.items():
        assert code == 0, err
        assert f"v{version} beside v1" in out and "no list written" in out
    after = round_files(shadowed.sample.round_dir)
    assert after == shadowed.before  # lists, scores.parquet, manifest: byte-identical
    assert any(name.startswith("lists/") for name in after)


def test_champion_file_agrees_with_the_round(shadowed):
    summary = summary_of(shadowed, shadowed.same)
    assert summary["champion"]["version"] == "1"
    assert summary["model"]["file_sha256"] == summary["champion"]["file_sha256"]
    for tier in ("visit", "listed"):
        assert summary["overlap"][tier]["min"] == 1.0
        assert summary["overlap"][tier]["pooled"] == 1.0
        assert summary["fairness"][tier]["max_abs_share_difference"] == 0.0
    assert summary["rank_correlation"]["spearman"] == pytest.approx(1.0)
    assert summary["rank_correlation"]["kendall"] == pytest.approx(1.0)
    shadow = pd.read_parquet(shadow_dir(shadowed.sample.round_dir, shadowed.same) / SHADOW_SCORES)
    scores = pd.read_parquet(shadowed.sample.round_dir / "scores.parquet")
    merged = scores.merge(shadow, on="household_key", suffixes=("", "_shadow"))
    assert len(merged) == len(scores) == len(shadow) == summary["counts"]["scored"]
    assert (merged["tier"] == merged["tier_shadow"]).all()
    assert (merged["score"] == merged["score_shadow"]).all()
    assert (merged["tier"] == merged["champion_tier"]).all()


def test_other_model_differs_with_the_same_capacity(shadowed):
    summary = summary_of(shadowed, shadowed.other)
    for tier in ("visit", "listed"):
        figures = summary["overlap"][tier]
        assert 0.0 <= figures["min"] <= figures["mean"] < 1.0
        assert figures["shadow"] == figures["champion"]  # same capacity, same rules
    assert summary["rank_correlation"]["spearman"] < 0.999
    assert -1.0 <= summary["rank_correlation"]["kendall"] < 0.999
    folder = shadow_dir(shadowed.sample.round_dir, shadowed.other)
    overlap = pd.read_csv(folder / "overlap_per_emd.csv", dtype={"emd_code": str})
    assert (overlap["shadow_visit"] == overlap["champion_visit"]).all()
    assert overlap["jaccard_visit"].between(0, 1).all()
    fairness = pd.read_csv(folder / "fairness.csv")
    assert set(fairness["attribute"]) >= {"head_sex", "head_age_band", "tenure", "sigungu"}
    shares = fairness.groupby("attribute")[["champion_listed_share", "shadow_listed_share"]].sum()
    assert np.allclose(shares.to_numpy(), 1.0)
    assert summary["fairness"]["listed"]["max_abs_share_difference"] == pytest.approx(
        fairness["listed_share_difference"].abs().max(),
        abs=1e-6,  # the summary keeps 6 decimals
    )
    # no outcomes of the round came back yet: no off-policy figure, and the summary says why
    assert summary["offpolicy"]["available"] is False and summary["offpolicy"]["why"]


def test_shadow_runs_are_tagged_sealed_and_in_the_ledger(shadowed):
    config = shadowed.sample.config
    client = connect(config)
    experiment = client.get_experiment_by_name(config.scoring.experiment)
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`outreach.shadow` = 'true'"
    )
    assert {r.data.tags["outreach.model_version"] for r in runs} == {
        shadowed.same,
        shadowed.other,
    }
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["outreach.stage"] == "shadow"
        assert run.data.tags["outreach.as_of"] == shadowed.sample.as_of
        assert run.data.tags["outreach.champion_version"] == "1"
        assert run.data.tags.get("outreach.seal_sha256")
        assert {"shadow.jaccard_visit_mean", "shadow.spearman", "shadow.kendall"} <= set(
            run.data.metrics
        )
    entries, problems = ledger.verify(
        ledger.split_lines(ledger.ledger_file(config.paths.output_root).read_text("utf-8"))
    )
    assert problems == []
    shadows = [e for e in entries if e["event"] == ledger.SHADOW_SCORED]
    assert [e["facts"]["version"] for e in shadows] == [shadowed.same, shadowed.other]
    for entry in shadows:
        summary = summary_of(shadowed, entry["facts"]["version"])
        assert entry["facts"]["shadow_run_id"] == summary["shadow_run"]["run_id"]
        assert (
            entry["facts"]["summary_sha256"]
            == hashlib.sha256(
                (
                    shadow_dir(shadowed.sample.round_dir, entry["facts"]["version"])
                    / SHADOW_SUMMARY
                ).read_bytes()
            ).hexdigest()
        )


def test_refusals(shadowed):
    sample = shadowed.sample
    code, _, err = run_cli(
        sample.config_file, "score", "--shadow", shadowed.other, "--as-of", "2026-08"
    )
    assert code == 2
    assert "round 2026-08 is not scored" in err
    code, _, err = run_cli(sample.config_file, "score", "--shadow", shadowed.other)
    assert code == 2 and "exists" in err  # a second shadow of the round needs --force
    code, _, err = run_cli(sample.config_file, "score", "--shadow", "1")
    assert code == 2 and "scored round" in err


def test_offpolicy_difference_once_outcomes_are_back(shadowed):
    """With the round's answers imported, --force shadows again (the old record kept) and the
    summary holds the off-policy estimates of both visit tiers: equal for the champion's file."""
    pytest.importorskip("models.offpolicy")
    from pipeline.datasets.outcomes import round_outcomes_file

    sample = shadowed.sample
    scores = pd.read_parquet(sample.round_dir / "scores.parquet")
    visit = scores.loc[scores["tier"] == "visit"]
    rng = np.random.default_rng(3)
    codes = rng.choice(["public_support", "closed_no_need", "unreachable"], len(visit))
    path = round_outcomes_file(sample.config, sample.as_of)
    path.parent.mkdir(parents=True, exist_ok=True)
    answers = pd.DataFrame(
        {
            "household_key": visit["household_key"].astype(str).to_numpy(),
            "outcome_code": codes,
            "added_by_caseworker": False,
            "override_code": pd.array([None] * len(visit), dtype="string"),
        }
    )
    answers.to_parquet(path)
    try:
        for version in (shadowed.same, shadowed.other):
            code, out, err = run_cli(sample.config_file, "score", "--shadow", version, "--force")
            assert code == 0, err
            assert "off-policy precision difference (DR)" in out
    finally:
        path.unlink()
    same = summary_of(shadowed, shadowed.same)["offpolicy"]
    assert same["available"] and same["labelled_visits"] == int((codes != "unreachable").sum())
    assert same["difference"] == {"ips": 0.0, "snips": 0.0, "dr": 0.0}
    other = summary_of(shadowed, shadowed.other)["offpolicy"]
    assert other["available"] and 0.0 <= other["shadow"]["snips"] <= 1.0
    assert other["difference"]["snips"] == pytest.approx(
        other["shadow"]["snips"] - other["champion"]["snips"]
    )
    kept = sample.round_dir / SHADOW / "_replaced"
    assert sorted(p.name for p in kept.iterdir()) == [f"v{shadowed.same}-1", f"v{shadowed.other}-1"]
    assert round_files(sample.round_dir) == shadowed.before


def test_promotion_waits_for_shadow_rounds(shadowed, tmp_path):
    """Runs last in the module: it moves the champion of the shared copy."""
    sample = shadowed.sample

    def config_with(rounds: int) -> Path:
        config = sample.config.with_overrides(training={"gates": {"min_shadow_rounds": rounds}})
        return write_config_file(config, tmp_path / f"config_{rounds}.yaml")

    code, _, err = run_cli(config_with(2), "promote", shadowed.other, "--reason", "shadow test")
    assert code == 1
    assert f"v{shadowed.other} has 1 shadow round(s) ({sample.as_of})" in err
    assert "min_shadow_rounds is 2" in err and "--shadow" in err
    client = connect(sample.config)
    name = sample.config.training.model_name
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    code, _, err = run_cli(config_with(1), "promote", shadowed.other, "--reason", "shadow test")
    assert code == 0, err
    assert str(client.get_model_version_by_alias(name, "champion").version) == shadowed.other


def test_train_keeps_a_new_version_challenger_until_shadowed(config_factory, tmp_path):
    from models.gates import decision
    from pipeline.tracking.registry import new_version_gates

    class Champion:
        version = "4"

    config = config_factory(tmp_path / "outputs")
    assert new_version_gates(config, Champion()) == []  # default 0: today's flows unchanged
    gated = config.with_overrides(training={"gates": {"min_shadow_rounds": 2}})
    assert new_version_gates(gated, None) == []  # no champion: nothing to be shadowed beside
    (gate,) = new_version_gates(gated, Champion())
    assert gate.name == "shadow_rounds" and not gate.ok
    promoted, reason = decision([gate])
    assert not promoted
    assert "shadow_rounds" in reason and "outreach score --shadow" in reason
