"""CLI wrapper of ``outreach simulate`` (docs/simulation.md)."""

from __future__ import annotations

import argparse
import logging
import shutil
import time

from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.errors import EXIT_OK, ConfigError, UsageError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, help="rounds per policy (default: simulate.rounds)")
    parser.add_argument(
        "--policies",
        help="comma-separated policies (default: simulate.policies); the world without contact "
        "is always run beside them",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the policies the last simulation finished with the same settings "
        "(outputs/simulate/work/<policy>/simulate/loop.json) and run only the others",
    )
    parser.add_argument(
        "--measure-only",
        action="store_true",
        help="measure the last simulation's policies again (outputs/simulate/work/) and rewrite "
        "the results, without running any round",
    )


def simulation_config(config: Config, args: argparse.Namespace) -> Config:
    """The config with the command line's rounds and policies (validated like the YAML)."""
    overrides: dict[str, object] = {}
    if args.rounds is not None:
        overrides["rounds"] = args.rounds
    if args.policies:
        policies = [p.strip() for p in args.policies.split(",") if p.strip()]
        overrides["policies"] = policies
        if config.simulate.reference not in policies:
            overrides["reference"] = policies[0]
    if not overrides:
        return config
    try:
        return config.with_overrides(simulate=overrides)
    except ValueError as exc:
        first = str(exc).splitlines()
        raise UsageError(f"simulate: {' '.join(first[1:3]).strip() or exc}") from None


def _simulate(config: Config, announce, resume: bool = False, quiet: bool = False) -> dict:
    """Run every policy's loop (``runtime.workers`` of them at a time, each in a process of its
    own, its stages then on one worker each), then measure them all."""
    from pipeline.engine import map_partitions
    from pipeline.simulate.loop import PolicyTask, run_policy_task
    from pipeline.simulate.policies import NONE
    from pipeline.simulate.results import write_results

    sim = config.simulate
    layout = OutputLayout(config.paths.output_root)
    work = layout.simulate_work
    if not resume:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    policies = (NONE, *sim.policies)
    runs = {}
    for policy in policies:
        finished = _finished(config, work / policy) if resume else None
        if finished is not None:
            announce(f"{policy}: kept from the last simulation ({len(finished.rounds)} rounds)")
            runs[policy] = finished
            continue
        shutil.rmtree(work / policy, ignore_errors=True)
    pending = [p for p in policies if p not in runs]
    at_once = max(1, min(config.runtime.workers, len(pending)))
    # The loops depend on the seed, never on where or beside what they run (common random
    # numbers): several at a time give the same results. Each one's stages then use one worker,
    # so that the command keeps to runtime.workers processes.
    loop_config = config if at_once == 1 else config.with_overrides(runtime={"workers": 1})
    if at_once > 1:
        announce(f"{len(pending)} policies, {at_once} at a time")
    tasks = [PolicyTask(loop_config, p, work / p, sim.rounds, quiet) for p in pending]
    done = map_partitions(
        run_policy_task, tasks, description="policies", workers=at_once, progress=False
    )
    runs.update({run.policy: run for run in done})
    ordered = [runs[p] for p in policies]
    return write_results(config, ordered, time.perf_counter() - started, announce, at_once)


def _finished(config: Config, root):
    """The policy's saved loop when it finished the rounds asked for with these settings."""
    from pipeline.errors import DataError
    from pipeline.simulate.loop import PolicyLoop, settings_digest

    try:
        run = PolicyLoop.load(root)
    except DataError:
        return None
    first = config.window.end_index + 1
    interval = config.window.round_interval_months
    wanted = [first + i * interval for i in range(config.simulate.rounds)]
    if run.rounds != wanted or run.settings != settings_digest(config, run.policy):
        return None
    return run


def _measure_again(config: Config, announce) -> dict:
    from pipeline.simulate.loop import PolicyLoop
    from pipeline.simulate.policies import NONE
    from pipeline.simulate.results import write_results

    work = OutputLayout(config.paths.output_root).simulate_work
    runs = [PolicyLoop.load(work / p) for p in (NONE, *config.simulate.policies)]
    seconds = sum(run.seconds.get("total", 0.0) for run in runs)
    return write_results(config, runs, seconds, announce)


def run(config: Config, args: argparse.Namespace) -> int:
    from pipeline.simulate.loop import log_to_terminal

    try:
        config = simulation_config(config, args)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if args.measure_only:
        record = _measure_again(config, log_to_terminal)
    else:
        record = _simulate(config, log_to_terminal, resume=args.resume)
    for line in record["summary_lines"]:
        print(line)
    print(f"results: {OutputLayout(config.paths.output_root).simulate}")
    return EXIT_OK


def measure(config: Config, args: argparse.Namespace) -> int:
    """The simulation without terminal output (for ``outreach bench``); returns the household
    rounds simulated (households × rounds × policies with a list)."""
    config = simulation_config(config, args)
    record = _simulate(config, log.info, quiet=True)
    return int(record["households"]) * config.simulate.rounds * len(config.simulate.policies)
