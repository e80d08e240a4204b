"""The living loop: each policy runs round after round on its own copy of one synthetic world.

Per policy and round (the data run through ``through``; the round is ``through + 1``):

1. ``outreach validate`` and ``outreach ingest`` of the policy's world;
2. a model policy: ``outreach train`` on the configured cadence (the gates decide whether the new
   version becomes champion), then ``outreach score``; a policy without a model: ``outreach
   features`` of the round and its list (:mod:`pipeline.simulate.policies`);
3. the field work (:mod:`pipeline.simulate.fieldwork`): the visit tier is visited, outcomes
   drawn with common random numbers from the need of the round's months before its own visits
   (``outreach generate --advance --untreated-need``: in need at ``R`` or ``R + 1`` had no new
   contact been made, the label the generator's history uses); a model policy's filled lists
   come back through ``outreach outcomes import`` (answers still in progress are returned again,
   final, a round later);
4. ``outreach generate --advance`` moves the world on one round interval, with the contacts.

The stages are run through the stage registry (:func:`pipeline.stages.run_stage`), never
imported. The ``none`` world is advanced with no contact at all: the counterfactual the
hardship averted is measured against. Every policy's world starts as a copy (hard links) of the
configured raw input and truth; the seeds of the world's monthly process depend on the month
only, so the worlds differ only through the contacts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.catalogues import load_catalogues
from pipeline.config import Config
from pipeline.datasets import OutputLayout
from pipeline.datasets.features import FeatureRounds
from pipeline.datasets.outcomes import imported_rounds, read_round_outcomes
from pipeline.datasets.rounds import SCORES, round_dir
from pipeline.datasets.staged import read_capacity_table
from pipeline.datasets.truth import read_untreated_file
from pipeline.errors import EXIT_OK, DataError
from pipeline.io import read_json_file, sha256_of_json, write_json, write_parquet
from pipeline.months import format_month, parse_month
from pipeline.simulate import fieldwork
from pipeline.simulate.policies import (
    NONE,
    is_model_policy,
    model_list,
    non_model_list,
    policy_overrides,
)
from pipeline.stages import run_stage
from pipeline.vocabulary import EMD, KEY

log = logging.getLogger(__name__)

RECORDS = "simulate"  # inside a policy's root: round=YYYY-MM/listed.parquet, visits.parquet
LISTED_FILE = "listed.parquet"
VISITS_FILE = "visits.parquet"
UNTREATED_FILE = "untreated_need.parquet"  # the round's months' need before its own visits
# PolicyLoop.champions' entry of a model policy's round that the rule listed (no champion yet)
RULE_FALLBACK = "rule"
RETURNED = "returned"  # inside a policy's root: the filled lists sent back, per round
LOOP_RECORD = "loop.json"
STAGE_LOG = "stages.log"  # inside a policy's root: what the stages printed and logged


@dataclass
class PolicyLoop:
    """What one policy's loop did: its rounds, its root, and time per step."""

    policy: str
    root: Path
    rounds: list[int] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    trained_rounds: list[int] = field(default_factory=list)
    champions: dict[str, str] = field(default_factory=dict)  # round -> champion version
    settings: str = ""  # the digest of the settings the loop ran with (settings_digest)

    def timed(self, step: str, seconds: float) -> None:
        self.seconds[step] = self.seconds.get(step, 0.0) + seconds

    def save(self) -> None:
        """``<root>/simulate/loop.json``: what the loop did, for measuring it again later."""
        write_json(
            {
                "policy": self.policy,
                "rounds": self.rounds,
                "seconds": self.seconds,
                "trained_rounds": self.trained_rounds,
                "champions": self.champions,
                "settings": self.settings,
            },
            self.root / RECORDS / LOOP_RECORD,
        )

    @classmethod
    def load(cls, root: Path) -> PolicyLoop:
        """The loop saved under ``root``; DataError when it has none (it did not finish)."""
        path = root / RECORDS / LOOP_RECORD
        if not path.is_file():
            raise DataError(f"{path} not found: the policy's loop did not finish; simulate again")
        data = read_json_file(path)
        return cls(
            policy=data["policy"],
            root=root,
            rounds=[int(m) for m in data["rounds"]],
            seconds={k: float(v) for k, v in data["seconds"].items()},
            trained_rounds=[int(m) for m in data["trained_rounds"]],
            champions=dict(data["champions"]),
            settings=str(data.get("settings", "")),
        )


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def copy_world(config: Config, root: Path) -> None:
    """The configured raw input and truth, hard-linked into ``root`` (the advance only ever
    replaces files, never changes one in place, so the source is never touched)."""
    layout = OutputLayout(root)
    for source, target in (
        (config.paths.raw_input, layout.raw),
        (config.paths.truth_input, layout.truth),
    ):
        if not Path(source).is_dir():
            raise DataError(f"{source}: not found (the world a simulation starts from)")
        shutil.copytree(source, target, copy_function=_link_or_copy)


def settings_digest(base: Config, policy: str) -> str:
    """sha256 of what a policy's loop depends on: the config but where it runs and how the
    runtime is set, and the simulation's settings that do not change a loop (its rounds, the
    policies beside it, how they are compared)."""
    data = base.model_dump(mode="json", exclude={"source", "paths", "runtime"})
    keep = ("seed", "retrain_every", "compare_in_training")
    data["simulate"] = {k: data["simulate"][k] for k in keep}
    return sha256_of_json({"policy": policy, "config": data})


def round_config(base: Config, policy: str, root: Path, through: int) -> Config:
    """The config of one policy's round: its root and world, the data through ``through``."""
    layout = OutputLayout(root)
    overrides = policy_overrides(base, policy) if is_model_policy(policy) else {}
    return base.with_overrides(
        window={"end": format_month(through)},
        paths={
            "output_root": str(root),
            "raw_input": str(layout.raw),
            "truth_input": str(layout.truth),
        },
        runtime={"progress": False},
        **overrides,
    )


@contextlib.contextmanager
def stage_output_to(path: Path) -> Iterator[None]:
    """Within the block, what stages print and log goes to ``path`` (appended); only warnings
    still reach the terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root_logger = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    levels = [(h, h.level) for h in root_logger.handlers]
    for h, _ in levels:
        h.setLevel(max(h.level, logging.WARNING))
    root_logger.addHandler(handler)
    try:
        with (
            open(path, "a", encoding="utf-8") as out,
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(out),  # what MLflow prints; log warnings still show
        ):
            yield
    finally:
        root_logger.removeHandler(handler)
        handler.close()
        for h, level in levels:
            h.setLevel(level)


def _stage(config: Config, run: PolicyLoop, name: str, *argv: str) -> None:
    started = time.perf_counter()
    command = " ".join(("outreach", name, *argv))
    try:
        with stage_output_to(run.root / STAGE_LOG):
            print(f"==> {command} (window.end {config.window.end})")
            code = run_stage(config, name, argv)
    except DataError as exc:
        raise DataError(
            f"simulate {run.policy}, data through {config.window.end}: `{command}`: {exc} "
            f"(log: {run.root / STAGE_LOG})"
        ) from None
    run.timed(name if name != "outcomes" else "import", time.perf_counter() - started)
    if code != EXIT_OK:
        raise DataError(
            f"simulate {run.policy}: `{command}` exited with {code} "
            f"(data through {config.window.end}); see {run.root / STAGE_LOG}"
        )


def _round_folder(root: Path, round_month: int) -> Path:
    return root / RECORDS / f"round={format_month(round_month)}"


def _champion_version(config: Config) -> str | None:
    from pipeline.tracking import connect
    from pipeline.tracking.registry import current_champion

    version = current_champion(connect(config), config.training.model_name)
    return None if version is None else str(getattr(version, "version", version))


def _listed(config: Config, run: PolicyLoop, policy: str, round_month: int, seed: int):
    """The round's list: through train and score for a model policy, else from its features.

    A model policy without a champion (the gates rejected every version so far) lists the
    round by the rule, as an office would, and trains again the next round; its round is
    recorded as ``RULE_FALLBACK`` in :attr:`PolicyLoop.champions`."""
    if is_model_policy(policy):
        label = format_month(round_month)
        no_champion_yet = bool(run.champions) and all(
            v == RULE_FALLBACK for v in run.champions.values()
        )
        due = len(run.rounds) % config.simulate.retrain_every == 0
        if not run.trained_rounds or due or no_champion_yet:
            _stage(config, run, "train")
            run.trained_rounds.append(round_month)
        version = _champion_version(config)
        if version is not None:
            run.champions[label] = version
            _stage(config, run, "score", "--as-of", label)
            scores = pd.read_parquet(round_dir(config, round_month) / SCORES)
            return model_list(scores)
        run.champions[label] = RULE_FALLBACK
        log.warning(
            "simulate %s: no champion after training on data through %s (the gates rejected "
            "the model; see %s): the rule lists round %s",
            policy,
            config.window.end,
            run.root / STAGE_LOG,
            label,
        )
        policy = "rule"
    _stage(config, run, "features", "--as-of", format_month(round_month))
    catalogues = load_catalogues(config)
    rounds = FeatureRounds(config, catalogues.outcomes)
    rule_column = f"distinct_types__{config.generator.selection.rule_window_months}m"
    features = rounds.features(round_month, columns=[EMD, rule_column, "hh__benefit_status"])
    hidden = fieldwork.hidden_state(config, round_month - 1) if policy == "oracle" else None
    return non_model_list(
        policy,
        features,
        rounds.eligible(features),
        read_capacity_table(config),
        rule_column=rule_column,
        round_month=round_month,
        seed=seed,
        hidden=hidden,
    )


def _store_contacts(config: Config) -> pd.DataFrame:
    """Every answer in the policy's outcomes store, as contacts for the world."""
    frames = [read_round_outcomes(config, label) for label in imported_rounds(config)]
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return pd.DataFrame({KEY: [], "contact_month": [], "outcome_code": []}, dtype="string")
    return fieldwork.contacts_for_advance(pd.concat(frames, ignore_index=True))


def _return_answers(
    config: Config,
    run: PolicyLoop,
    round_month: int,
    visits: pd.DataFrame,
    through: int,
    earlier: int | None = None,
) -> None:
    """The round's filled lists, as the field work stands at ``through``, sent back through
    ``outreach outcomes import``; on the round's own return also the call service's results of
    the phone tier (``outreach outcomes import-calls``). ``earlier``: the ``through`` of an
    earlier return of the same round, whose unchanged lists are not sent again (an office
    sends a list back when something on it changed)."""
    folder = run.root / RETURNED / f"round={format_month(round_month)}"
    out = folder / f"through={format_month(through)}"
    with stage_output_to(run.root / STAGE_LOG):
        files = fieldwork.write_returned_lists(config, round_month, visits, out, through=through)
    if earlier is not None:
        before = folder / f"through={format_month(earlier)}"
        files = [
            f
            for f in files
            if not (before / f.relative_to(out)).is_file()
            or (before / f.relative_to(out)).read_bytes() != f.read_bytes()
        ]
    if files:
        _stage(config, run, "outcomes", "import", *map(str, files))
    if earlier is None:
        with stage_output_to(run.root / STAGE_LOG):
            calls = fieldwork.write_call_results(
                config, round_month, visits, out / "calls", through=through
            )
        if calls:
            _stage(config, run, "outcomes", "import-calls", *map(str, calls))


def _advance(
    config: Config, run: PolicyLoop, contacts: pd.DataFrame | None, round_month: int
) -> None:
    """``outreach generate --advance`` by one round interval, told of ``contacts`` (kept in the
    round's records); none for the counterfactual world."""
    argv = ["--advance", str(config.window.round_interval_months), "--output-dir", str(run.root)]
    if contacts is not None:
        folder = _round_folder(run.root, round_month)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "contacts.parquet"
        write_parquet(contacts.astype("string").reset_index(drop=True), path)
        argv += ["--contacts", str(path)]
    _stage(config, run, "generate", *argv)


def run_policy(
    base: Config,
    policy: str,
    root: Path,
    rounds: int,
    announce: Callable[[str], None],
) -> PolicyLoop:
    """Run ``policy``'s loop for ``rounds`` rounds in ``root`` (a fresh output root)."""
    run = PolicyLoop(policy, root, settings=settings_digest(base, policy))
    copy_world(base, root)
    seed = base.simulate.seed
    interval = base.window.round_interval_months
    through = base.window.end_index
    previous: tuple[int, pd.DataFrame] | None = None
    visited: list[tuple[int, pd.DataFrame]] = []  # rounds whose answers go to the world directly
    for _ in range(rounds):
        config = round_config(base, policy, root, through)
        round_month = through + 1
        started = time.perf_counter()
        if policy == NONE:
            _advance(config, run, None, round_month)
            run.rounds.append(round_month)
            through += interval
            announce(f"  {policy}: round {format_month(round_month)} (no contact)")
            continue
        _stage(config, run, "validate")
        _stage(config, run, "ingest")
        listed = _listed(config, run, policy, round_month, seed)
        folder = _round_folder(root, round_month)
        folder.mkdir(parents=True, exist_ok=True)
        untreated = folder / UNTREATED_FILE
        _stage(
            config,
            run,
            "generate",
            "--advance",
            str(interval),
            "--output-dir",
            str(root),
            "--untreated-need",
            str(untreated),
        )
        step = time.perf_counter()
        hidden = fieldwork.with_round_need(
            fieldwork.hidden_state(config, through), read_untreated_file(untreated), round_month
        )
        visit_tier = listed.loc[listed["tier"] == "visit"]
        visits = fieldwork.draw_visits(
            visit_tier, hidden, round_month, seed, fieldwork.offered_services(config)
        )
        run.timed("field work", time.perf_counter() - step)
        write_parquet(listed, folder / LISTED_FILE)
        write_parquet(visits.reset_index(drop=True), folder / VISITS_FILE)
        end_of_round = round_month + interval - 1
        scored = is_model_policy(policy) and run.champions[format_month(round_month)] != (
            RULE_FALLBACK
        )
        if is_model_policy(policy) and previous is not None:
            earlier = previous[0] + interval - 1  # when the previous round was returned
            _return_answers(config, run, previous[0], previous[1], end_of_round, earlier)
        if scored:
            _return_answers(config, run, round_month, visits, end_of_round)
        else:  # no list files to fill in: the answers a caseworker would have sent, told to
            # the world the same way (a policy without a model, or the rule's fallback rounds)
            visited.append((round_month, visits))
        contacts = _store_contacts(config) if is_model_policy(policy) else None
        if visited:
            answers = [
                fieldwork.answers_at(v, r, through=end_of_round, interval_months=interval)
                for r, v in visited
            ]
            direct = fieldwork.contacts_for_advance(pd.concat(answers, ignore_index=True))
            contacts = direct if contacts is None else pd.concat([contacts, direct])
        _advance(config, run, contacts, round_month)
        run.rounds.append(round_month)
        previous = (round_month, visits) if scored else None
        through += interval
        listed_visit = int((listed["tier"] == "visit").sum())
        reached = int(visits["reached"].sum()) if len(visits) else 0
        announce(
            f"  {policy}: round {format_month(round_month)}: {listed_visit:,} to visit, "
            f"{reached:,} reached, {time.perf_counter() - started:.0f} s"
        )
    return run


@dataclass(frozen=True)
class PolicyTask:
    """One policy's whole loop, as a task of the engine (see :func:`run_policy_task`)."""

    config: Config
    policy: str
    root: Path
    rounds: int
    quiet: bool = False  # progress to the log instead of the terminal (``outreach bench``)


def run_policy_task(task: PolicyTask) -> PolicyLoop:
    """Run a policy's loop in a fresh root, time it and save it; tells the terminal as it goes.
    A function of its task only, so that policies can run in processes of their own."""
    config = task.config
    announce = log.info if task.quiet else log_to_terminal
    announce(
        f"{task.policy}: {task.rounds} round(s) from {format_month(config.window.end_index + 1)}"
    )
    started = time.perf_counter()
    run = run_policy(config, task.policy, task.root, task.rounds, announce)
    run.timed("total", time.perf_counter() - started)
    run.save()
    return run


def read_records(run_root: Path, file: str) -> pd.DataFrame:
    """Every round's ``listed`` or ``visits`` of a policy, with the round month (int)."""
    frames = []
    for folder in sorted((run_root / RECORDS).glob("round=*")):
        path = folder / file
        if path.is_file():
            frame = pd.read_parquet(path)
            frame["round"] = np.int64(parse_month(folder.name.removeprefix("round=")))
            frames.append(frame)
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def log_to_terminal(message: str) -> None:
    """One line of progress on the terminal (the CLI's user-facing output)."""
    print(message, file=sys.stdout, flush=True)
