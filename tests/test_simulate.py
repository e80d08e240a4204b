"""`outreach simulate`: policies run round after round on copies of one small world, through the
real stages; the results are measured, written whole, logged to MLflow, and deterministic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import SMALL_TRAINING, make_config, write_config_file

from pipeline.cli import main
from pipeline.datasets import OutputLayout, TableLayout
from pipeline.datasets.outcomes import imported_rounds
from pipeline.datasets.simulation import (
    PER_ROUND,
    POLICIES,
    RECORD,
    SIGNALS,
    TIMING,
    read_results,
    results_dir,
)
from pipeline.errors import EXIT_DATA, EXIT_USAGE
from pipeline.generate.stage import generate
from pipeline.io import sha256_tree
from pipeline.months import format_month
from pipeline.simulate.loop import round_config

SMALL_WORLD = {"households": 3000, "sigungu": 2, "emd_per_sigungu": [2, 3]}
# The small world's model is judged on few visits: every gate is waived (tests only).
WAIVE_ALL = {
    "waivers": [
        {"gate": gate, "reason": "tests only: a 3,000-household world of a few rounds"}
        for gate in ("lift_over_rule", "calibration", "fairness", "champion")
    ]
}


@pytest.fixture(scope="module")
def small_world(tmp_path_factory, catalogue) -> Path:
    """A generated world of 3,000 households (never changed: simulations copy it)."""
    root = tmp_path_factory.mktemp("sim_world")
    config = make_config(root, generator=SMALL_WORLD)
    generate(config, catalogue, root / "world")
    return root / "world"


# A few hundred signals per source and month: the volume bounds of the national scale would
# stop the small world on noise.
LOOSE_VOLUME = {"volume": {"high_factor": 5.0, "low_factor": 0.1, "poisson_slack": 6.0}}


def _config(root: Path, world: Path, **simulate):
    return make_config(
        root,
        paths={"raw_input": str(world / "raw"), "truth_input": str(world / "truth")},
        generator=SMALL_WORLD,
        validation=LOOSE_VOLUME,
        training={
            **SMALL_TRAINING,
            "backtest": {"test_rounds": 1, "bootstrap_samples": 50},
            "gates": WAIVE_ALL,
        },
        simulate={"bootstrap_samples": 100, **simulate},
    )


def _simulate(config, tmp_path: Path, *argv: str) -> int:
    config_file = write_config_file(config, tmp_path / f"{config.paths.output_root.name}.yaml")
    return main(["--config", str(config_file), "--no-progress", "simulate", *argv])


@pytest.fixture(scope="module")
def simulated(small_world, tmp_path_factory):
    """Two rounds of the rule and the champion on the small world, the champion trained at each."""
    root = tmp_path_factory.mktemp("sim_run")
    config = _config(
        root / "out", small_world, policies=["rule", "champion"], rounds=2, retrain_every=1
    )
    code = _simulate(config, root, "--rounds", "2")
    return config, code


def test_policies_run_round_after_round_through_the_real_stages(simulated, small_world):
    config, code = simulated
    assert code == 0
    layout = OutputLayout(config.paths.output_root)
    work = layout.simulate_work
    start = config.window.end_index
    rounds = [start + 1, start + 3]
    for policy in ("none", "rule", "champion"):
        # each world moved on two round intervals from the shared start
        world = json.loads((work / policy / "truth" / "_world.json").read_text())
        assert world["through"] == format_month(start + 4)
        assert len(world["advances"]) == 2
    # the champion's lists were scored by the real score stage and came back through the import
    champion = round_config(config, "champion", work / "champion", start + 2)
    assert imported_rounds(champion) == [format_month(r) for r in rounds]
    for r in rounds:
        assert (
            layout.simulate_work / "champion" / "rounds" / format_month(r) / "scores.parquet"
        ).is_file()
    # the rule and the counterfactual never train or score
    assert not (work / "rule" / "rounds").exists()
    assert not (work / "none" / "validation").exists()
    # contacts changed the rule's world and not the one nobody contacted
    none_contacts = json.loads((work / "none" / "truth" / "_world.json").read_text())["advances"]
    rule_contacts = json.loads((work / "rule" / "truth" / "_world.json").read_text())["advances"]
    assert [a["contacts"] for a in none_contacts] == [0, 0]
    assert all(a["contacts"] > 0 for a in rule_contacts)
    # the source world was never touched
    assert (small_world / "truth" / "_world.json").is_file()
    assert json.loads((small_world / "truth" / "_world.json").read_text())["advances"] == []


def test_results_are_measured_against_the_hidden_truth(simulated):
    config, _ = simulated
    results = read_results(config)
    table = results["policies"].set_index("policy")
    assert list(table.index) == ["rule", "champion"]
    assert (table["visit_listed"] > 0).all() if "visit_listed" in table else True
    assert table.loc["rule", "need_found_minus_reference"] == 0
    for policy in ("rule", "champion"):
        assert 0 <= table.loc[policy, "precision"] <= 1
        low = table.loc[policy, "need_found_minus_reference_low"]
        high = table.loc[policy, "need_found_minus_reference_high"]
        assert low <= table.loc[policy, "need_found_minus_reference"] <= high
    per_round = results["rounds"]
    assert set(per_round["policy"]) == {"rule", "champion"}
    assert per_round["round"].nunique() == 2
    assert set(results["signals"]["policy"]) == {"rule", "champion"}
    record = results["record"]
    assert record["policies"] == ["none", "rule", "champion"]
    start = config.window.end_index + 1
    assert record["trained_rounds"]["champion"] == [format_month(r) for r in (start, start + 2)]
    assert set(results["plots"]) == {"measures.png", "fairness.png"}
    # no household key leaves the simulation's results
    text = "".join(p.read_text() for p in results_dir(config).glob("*.csv"))
    assert "household_key" not in text
    timing = results["timing"]
    assert timing["seconds"] > 0 and timing["peak_rss_mb"] > 0
    bench = json.loads(OutputLayout(config.paths.output_root).bench_record("simulate").read_text())
    assert bench["stage"] == "simulate" and bench["rounds"] == 2


def test_results_are_logged_to_mlflow(simulated):
    from pipeline.tracking import connect

    config, _ = simulated
    client = connect(config)
    experiment = client.get_experiment_by_name(config.simulate.experiment)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.data.params["policies"] == "none,rule,champion"
    history = client.get_metric_history(run.info.run_id, "champion.precision")
    assert [m.step for m in history] == [0, 1]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "simulation")}
    assert f"simulation/{POLICIES}" in artifacts and f"simulation/{PER_ROUND}" in artifacts


def test_same_seed_and_config_give_identical_results(small_world, tmp_path):
    """Two simulations with the same seed and config write the same results (timing aside),
    the second with its policies' loops in two processes at a time (runtime.workers: 2)."""
    digests, at_once = [], []
    for name, workers in (("first", 1), ("second", 2)):
        config = _config(
            tmp_path / name, small_world, policies=["random"], reference="random", rounds=1
        ).with_overrides(runtime={"workers": workers})
        assert _simulate(config, tmp_path) == 0
        files = sha256_tree(results_dir(config))
        at_once.append(json.loads((results_dir(config) / TIMING).read_text())["policies_at_once"])
        files.pop(TIMING)
        digests.append(files)
    assert at_once == [1, 2]
    assert digests[0] == digests[1]
    assert PER_ROUND in digests[0] and RECORD in digests[0]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_simulation_keeps_the_last_good_results(simulated, tmp_path, capsys, workers):
    config, _ = simulated
    copy = tmp_path / "out"
    shutil.copytree(results_dir(config), OutputLayout(copy).simulate / "results")
    before = sha256_tree(OutputLayout(copy).simulate / "results")
    broken = make_config(
        copy,
        paths={"raw_input": str(tmp_path / "missing" / "raw"), "truth_input": str(tmp_path)},
        simulate={"policies": ["rule"], "rounds": 1, "reference": "rule"},
        runtime={"workers": workers},  # 2: the error comes from a loop in another process
    )
    assert _simulate(broken, tmp_path) == EXIT_DATA
    assert "missing/raw: not found" in capsys.readouterr().err
    assert sha256_tree(OutputLayout(copy).simulate / "results") == before


def test_unknown_policy_is_a_usage_error(small_world, tmp_path, capsys):
    config = _config(tmp_path / "out", small_world)
    assert _simulate(config, tmp_path, "--policies", "rule,clairvoyant") == EXIT_USAGE
    assert "clairvoyant" in capsys.readouterr().err


def test_stage_failure_names_the_command_and_the_log(small_world, tmp_path, capsys):
    """A stage that fails inside the loop stops the simulation with one line naming it."""
    world = tmp_path / "world"
    shutil.copytree(small_world, world)
    layout = TableLayout(world / "raw")
    code = layout.partitions("households")[0]
    households = pd.read_parquet(layout.partition_file("households", code))
    households.drop(columns=["tenure"]).to_parquet(layout.partition_file("households", code))
    config = _config(tmp_path / "out", world, policies=["rule"], rounds=1)
    assert _simulate(config, tmp_path) == EXIT_DATA
    err = capsys.readouterr().err
    assert "outreach validate" in err and "stages.log" in err
    assert not (results_dir(config) / RECORD).exists()
    assert SIGNALS  # the results' names are the dataset's


def test_measure_only_rewrites_the_same_results(simulated, tmp_path):
    """`--measure-only` measures the saved loops again, without running a round."""
    config, _ = simulated
    before = sha256_tree(results_dir(config))
    work = OutputLayout(config.paths.output_root).simulate_work
    rounds_before = sorted(p.name for p in (work / "champion" / "rounds").iterdir())
    assert _simulate(config, tmp_path, "--measure-only") == 0
    after = sha256_tree(results_dir(config))
    before.pop(TIMING), after.pop(TIMING)
    assert after == before
    assert sorted(p.name for p in (work / "champion" / "rounds").iterdir()) == rounds_before


def test_resume_keeps_the_policies_finished_with_the_same_settings(simulated, tmp_path):
    """`--resume` runs no round of a policy whose saved loop has the same settings and rounds;
    another seed runs it again."""
    config, _ = simulated
    work = OutputLayout(config.paths.output_root).simulate_work
    logs = {p: (work / p / "stages.log").read_bytes() for p in ("rule", "champion")}
    assert _simulate(config, tmp_path, "--resume") == 0
    assert {p: (work / p / "stages.log").read_bytes() for p in logs} == logs
    reseeded = config.with_overrides(simulate={"seed": config.simulate.seed + 1})
    assert _simulate(reseeded, tmp_path, "--resume", "--policies", "rule") == 0
    assert (work / "rule" / "stages.log").read_bytes() != logs["rule"]


def test_a_model_policy_without_a_champion_lists_by_the_rule_and_trains_again(
    small_world, tmp_path
):
    """A model the gates reject leaves no champion: the policy's round is listed by the rule,
    as an office would (the same list as the rule's on the same world), its answers reach the
    world, and the next round trains again instead of stopping the simulation."""
    strict = {"min_lift_over_rule": 1000.0, "waivers": WAIVE_ALL["waivers"][1:]}  # lift not waived
    config = _config(tmp_path / "out", small_world, policies=["rule", "champion"], rounds=2)
    config = config.with_overrides(training={"gates": strict})
    assert _simulate(config, tmp_path) == 0
    record = read_results(config)["record"]
    start = config.window.end_index + 1
    rounds = [format_month(start), format_month(start + config.window.round_interval_months)]
    assert record["champions"]["champion"] == dict.fromkeys(rounds, "rule")
    assert record["trained_rounds"]["champion"] == rounds  # trained again at the second round
    work = OutputLayout(config.paths.output_root).simulate_work
    for label in rounds:
        lists = [
            pd.read_parquet(work / p / "simulate" / f"round={label}" / "listed.parquet")
            for p in ("rule", "champion")
        ]
        pd.testing.assert_frame_equal(lists[0], lists[1])
    table = read_results(config)["policies"].set_index("policy")
    assert table.loc["champion", "need_found"] == table.loc["rule", "need_found"]


def test_bench_measures_the_living_loop_on_a_world_it_generates(tmp_path, capsys):
    """`make bench-simulate` (`outreach bench --stages generate,simulate`) generates a world in
    the bench's work folder, runs the loop on it and records its time (it once refused
    `simulate` as an unknown stage); a bench without --stages measures one round only."""
    config = _config(
        tmp_path / "out", tmp_path / "unused", policies=["random"], reference="random", rounds=1
    ).with_overrides(bench={"emd_per_sigungu": [2, 3]}, runtime={"workers": 1})
    config_file = write_config_file(config, tmp_path / "bench.yaml")
    argv = ["--config", str(config_file), "--no-progress", "bench", "--households", "3000"]
    assert main([*argv, "--stages", "generate,simulate"]) == 0
    record = json.loads((tmp_path / "out" / "bench" / "simulate.json").read_text("utf-8"))
    assert record["stage"] == "simulate" and record["households"] == 3000
    assert record["rows_in"] == 3000  # households × rounds × policies
    work = OutputLayout(tmp_path / "out").bench_work
    results = read_results(config.with_overrides(paths={"output_root": str(work)}))
    assert results["record"]["policies"] == ["none", "random"]
    capsys.readouterr()
    assert main([*argv, "--stages", "nope"]) == EXIT_USAGE
    assert "simulate" in capsys.readouterr().err  # named among the stages bench can measure


def test_a_retrained_model_meets_the_champion_on_the_same_test_rounds(simulated, tmp_path):
    """In the loop the champion gate compared a new version's figure with the one the
    champion's run logged on earlier rounds, whose need the loop had not yet relieved (at
    200,000 households one retraining in 18 was promoted). A version trained a round later has
    the champion's first round as its test round: the champion is scored there beside it."""
    from mlflow import MlflowClient

    from models.card import CHAMPION_ROW_NOTE
    from models.gates import SAME_ROUNDS
    from pipeline.tracking import tracking_uri
    from pipeline.tracking.names import GATES, MODEL_CARD

    config, _ = simulated
    work = OutputLayout(config.paths.output_root).simulate_work
    policy = round_config(config, "champion", work / "champion", config.window.end_index + 4)
    client = MlflowClient(tracking_uri=tracking_uri(policy))
    experiment = client.get_experiment_by_name(policy.training.experiment)
    first, second = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`outreach.stage` = 'train'",
        order_by=["attributes.start_time ASC"],
    )
    gates = {}
    for run in (first, second):
        path = client.download_artifacts(run.info.run_id, GATES, str(tmp_path / run.info.run_id))
        gates[run.info.run_id] = {g["name"]: g for g in json.loads(Path(path).read_text())}
    assert gates[first.info.run_id]["champion"]["detail"] == "no current champion"
    gate = gates[second.info.run_id]["champion"]
    assert "champion version 1" in gate["detail"] and SAME_ROUNDS in gate["detail"]
    metric = "champion.truth_emd_precision_mean"
    figure = second.data.metrics[metric]  # the champion's list on the second run's test round
    assert metric not in first.data.metrics
    tolerance = policy.training.gates.champion_tolerance
    assert gate["threshold"] == pytest.approx(figure - tolerance)
    assert figure != first.data.metrics["lightgbm.truth_emd_precision_mean"]  # other rounds
    card = client.download_artifacts(second.info.run_id, MODEL_CARD, str(tmp_path / "card"))
    assert CHAMPION_ROW_NOTE in Path(card).read_text(encoding="utf-8")


def test_offpolicy_estimates_are_judged_on_the_truth_and_on_the_labels_scale():
    """Each estimate's error and coverage against the truth and against the truth on the
    labels' scale; a training that logged no label-scale truth leaves those empty."""
    from pipeline.simulate.results import offpolicy_frame, offpolicy_summary

    def row(list_name, estimate, low, high, truth, label_scale):
        return {
            "policy": "champion",
            "run_id": "r",
            "window_end": "2027-04",
            "round": "2027-02",
            "list": list_name,
            "offpolicy_dr_emd_precision": estimate,
            "offpolicy_dr_emd_precision_low": low,
            "offpolicy_dr_emd_precision_high": high,
            "truth_emd_precision": truth,
            "offpolicy_truth_label_scale": label_scale,
        }

    frame = offpolicy_frame(
        [
            row("rule", 0.45, 0.40, 0.50, 0.38, 0.42),  # misses the truth, holds the labels'
            row("champion", 0.70, 0.65, 0.75, 0.72, float("nan")),
            row("lightgbm", float("nan"), None, None, 0.7, 0.6),  # no estimate: dropped
        ]
    )
    assert frame["list"].tolist() == ["champion", "rule"]
    rule = frame.set_index("list").loc["rule"]
    assert rule["error"] == pytest.approx(0.07) and not rule["covered"]
    assert rule["error_label_scale"] == pytest.approx(0.03) and rule["covered_label_scale"]
    assert frame.set_index("list")["covered_label_scale"].isna().tolist() == [True, False]
    summary = offpolicy_summary(frame)
    assert summary["estimates"] == 2 and summary["coverage"] == 0.5
    assert summary["mean_absolute_error"] == pytest.approx(0.045)
    assert summary["estimates_label_scale"] == 1
    assert summary["coverage_label_scale"] == 1.0
    assert summary["mean_absolute_error_label_scale"] == pytest.approx(0.03)
    assert summary["by_policy"]["champion"]["estimates"] == 2
