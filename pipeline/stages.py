"""The stage registry: every command of the CLI, the module that implements it, and how one stage
asks for another.

Stages never import each other. A stage's command module exposes ``add_arguments(parser)`` and
``run(config, args) -> int``; it may also expose

- ``prerequisites(config, args) -> list[Prerequisite]``: the earlier stages' outputs it needs
  that are missing or out of date (for example the feature rounds a training run reads). They are
  run first, each announced on the terminal, by :func:`run_stage`; readers never build a dataset.
- ``measure(config, args) -> int``: the stage's work without its terminal output, returning the
  input rows it processed (what ``outreach bench`` times).

This module names stage modules as strings and loads them with :mod:`importlib`: the one place
where the pipeline's order and its dependencies between stages are written down.

It also says which commands write shared state and so hold the output root's lock while they
run (``Stage.locks``, :mod:`pipeline.locks`, ``docs/operations.md``): every command that writes
into the output root (validate, ingest, features, train, score, report, outcomes, promote,
rollback, describe, run); ``generate`` locks the folder it writes into; ``bench`` its own work
root; ``simulate`` its own folder (each policy's stages lock that policy's root). ``audit``
only reads and takes no lock.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from pipeline.errors import EXIT_OK, UsageError
from pipeline.locks import SHORT_WAIT_S, hold

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.locks import Lock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """A command of the CLI and the module that implements it."""

    name: str
    help: str
    module: str
    in_run: bool = False  # part of `outreach run`, in this order
    locks: bool = True  # holds the lock of the root it writes into while it runs
    lock_wait_s: float = 0.0  # how long it waits for another command's lock before refusing


STAGES: tuple[Stage, ...] = (
    Stage(
        "generate",
        "write synthetic raw tables and the hidden truth (Parquet, per 시군구)",
        "pipeline.generate.command",
    ),
    Stage(
        "validate",
        "check every raw table with Great Expectations; keep the results",
        "pipeline.validate.command",
        in_run=True,
    ),
    Stage(
        "ingest",
        "link signals to households, pseudonymise, write staged tables",
        "pipeline.ingest.command",
        in_run=True,
    ),
    Stage(
        "features",
        "point-in-time features and labels of a round (--as-of YYYY-MM)",
        "pipeline.features.command",
        in_run=True,
    ),
    Stage(
        "train",
        "backtest candidates, audit fairness, log to MLflow, register, apply gates",
        "pipeline.train.command",
        in_run=True,
    ),
    Stage(
        "score",
        "score a round with the champion; lists per 읍면동 with reasons; manifest",
        "pipeline.score.command",
        in_run=True,
    ),
    Stage(
        "report",
        "the administrators' HTML review report of a scored round (--as-of YYYY-MM)",
        "pipeline.report.command",
        in_run=True,
    ),
    Stage(
        "audit",
        "trace a list or round back through MLflow and verify every link (sha256, re-score)",
        "pipeline.audit.command",
        locks=False,  # reads only
    ),
    Stage(
        "outcomes",
        "import returned lists: `outcomes import FILE...` checks visit outcomes, keeps labels; "
        "`outcomes import-calls FILE...` the call service's results of the phone tier",
        "pipeline.outcomes.command",
        lock_wait_s=SHORT_WAIT_S,  # imports are short: one waits for the other (no answer lost)
    ),
    Stage(
        "promote",
        "give a model version the champion alias by hand (logged, with a reason)",
        "pipeline.promote.promote",
    ),
    Stage(
        "rollback",
        "return the champion alias to the previous champion (logged)",
        "pipeline.promote.rollback",
    ),
    Stage(
        "describe",
        "summarise raw tables and, for synthetic data, the hidden truth",
        "pipeline.describe.command",
        in_run=True,
    ),
    Stage("run", "run every pipeline stage in order on the configured raw input", "pipeline.cli"),
    Stage(
        "bench",
        "measure stages at a chosen size; print and write outputs/bench/*.json",
        "pipeline.bench.command",
    ),
    Stage(
        "simulate",
        "the living loop: policies run round after round on copies of the synthetic world; "
        "measures per round in outputs/simulate/",
        "pipeline.simulate.command",
    ),
    Stage(
        "retention",
        "destroy household-level data older than the retention period (--dry-run lists it); "
        "a destruction record goes to the ledger",
        "pipeline.retention.command",
    ),
    Stage(
        "explain",
        "a one-page explanation, in plain Korean, for one household of a round (HTML and PDF)",
        "pipeline.explain.command",
    ),
    Stage(
        "export",
        "each 읍면동's list and page as a bundle encrypted with that office's key; "
        "an export record goes to the ledger",
        "pipeline.export.command",
    ),
)


@dataclass(frozen=True)
class Prerequisite:
    """An earlier stage's run that a command needs first: ``outreach STAGE ARGV...``."""

    stage: str
    argv: tuple[str, ...]
    why: str  # e.g. "missing", "imported outcomes changed since it was built"

    def command(self) -> str:
        return " ".join(("outreach", self.stage, *self.argv))


def stage_named(name: str) -> Stage:
    """The registered stage called ``name``; UsageError naming the known ones otherwise."""
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise UsageError(f"unknown stage {name!r}; known: {', '.join(s.name for s in STAGES)}")


def load(stage: Stage) -> ModuleType:
    """The stage's command module."""
    return importlib.import_module(stage.module)


def parse_stage_args(stage: Stage, argv: Sequence[str] = ()) -> argparse.Namespace:
    """The stage's own options parsed from ``argv`` (global options are the config's)."""
    parser = argparse.ArgumentParser(prog=f"outreach {stage.name}", add_help=False)
    load(stage).add_arguments(parser)
    try:
        return parser.parse_args(list(argv))
    except SystemExit:
        raise UsageError(f"{stage.name}: cannot parse options {' '.join(argv)!r}") from None


def prerequisites(config: Config, stage: Stage, args: argparse.Namespace) -> list[Prerequisite]:
    """What ``stage`` needs first, as its command module declares it (nothing when silent)."""
    declared = getattr(load(stage), "prerequisites", None)
    return list(declared(config, args)) if declared is not None else []


def run_prerequisites(
    config: Config,
    stage: Stage,
    args: argparse.Namespace,
    announce: Callable[[str], None] = print,
    quiet: bool = False,
) -> int:
    """Run what ``stage`` needs first, each announced as ``==> outreach STAGE ... (why)``;
    ``quiet`` runs them through their ``measure`` hooks (no terminal output but the announcement,
    as ``outreach bench`` wants)."""
    for need in prerequisites(config, stage, args):
        announce(f"==> {need.command()} ({stage.name} needs it: {need.why})")
        if quiet:
            needed = stage_named(need.stage)
            needed_args = parse_stage_args(needed, need.argv)
            code = run_prerequisites(config, needed, needed_args, announce, quiet=True)
            if code != EXIT_OK:
                return code
            load(needed).measure(config, needed_args)
            continue
        code = run_stage(config, need.stage, need.argv, announce=announce)
        if code != EXIT_OK:
            return code
    return EXIT_OK


def run_stage(
    config: Config,
    name: str,
    argv: Sequence[str] = (),
    args: argparse.Namespace | None = None,
    announce: Callable[[str], None] = print,
) -> int:
    """Run one stage after its prerequisites; ``args`` when already parsed, else ``argv``.

    A stage that writes holds the lock of the root it writes into (:func:`lock_root`) for the
    whole run, prerequisites included; taking it cleans up after a killed run of any command
    and ends the MLflow runs that run left RUNNING.
    """
    stage = stage_named(name)
    args = args if args is not None else parse_stage_args(stage, argv)
    root = lock_root(config, stage, args)
    if root is None:
        return _run_with_prerequisites(config, stage, args, announce)
    with hold(
        root,
        command_text(stage, args),
        wait_s=stage.lock_wait_s,
        announce=log.warning,
        skip=_not_cleaned(config, root),
    ) as lock:
        if lock.stale is not None and root == Path(config.paths.output_root):
            end_abandoned_runs(config, lock)
        return _run_with_prerequisites(config, stage, args, announce)


def _run_with_prerequisites(
    config: Config, stage: Stage, args: argparse.Namespace, announce: Callable[[str], None]
) -> int:
    code = run_prerequisites(config, stage, args, announce)
    if code != EXIT_OK:
        return code
    return load(stage).run(config, args)


def lock_root(config: Config, stage: Stage, args: argparse.Namespace) -> Path | None:
    """The root whose lock ``stage`` holds while it runs: the output root; for ``generate`` the
    folder it writes into, for ``bench`` its work root, for ``simulate`` its own folder; None
    for a command that only reads (``audit``; ``export open`` and ``export keygen``)."""
    from pipeline.datasets import OutputLayout

    if not stage.locks:
        return None
    if stage.name == "generate":
        return Path(getattr(args, "output_dir", None) or config.paths.output_root)
    if stage.name == "bench":
        return OutputLayout(config.paths.output_root).bench_work
    if stage.name == "simulate":
        return OutputLayout(config.paths.output_root).simulate
    if stage.name == "export" and getattr(args, "action", None) in ("open", "keygen"):
        return None  # an office opening its bundle, or keys made: nothing of the root is written
    return Path(config.paths.output_root)


def _not_cleaned(config: Config, root: Path) -> tuple[Path, ...]:
    """Folders under ``root`` the lock's clean-up never looks into: the MLflow store (MLflow's
    own files) and bench's work root (locked on its own)."""
    from pipeline.datasets import OutputLayout

    layout = OutputLayout(root)
    return (layout.mlflow, layout.bench_work, layout.simulate)


def command_text(stage: Stage, args: argparse.Namespace) -> str:
    """How the lock record names a command: ``outreach score --as-of 2026-10``, say."""
    words = ["outreach", stage.name]
    action = getattr(args, "action", None)
    if isinstance(action, str):
        words.append(action)
    as_of = getattr(args, "as_of", None)
    if isinstance(as_of, str):
        words += ["--as-of", as_of]
    return " ".join(words)


def end_abandoned_runs(config: Config, lock: Lock) -> list[str]:
    """End as FAILED the MLflow runs that the killed holder of ``lock`` left RUNNING."""
    from pipeline.tracking.runlog import end_abandoned_runs as end_runs

    stale = lock.stale
    if stale is None:
        return []
    reason = (
        f"{stale.command} (pid {stale.pid} on {stale.host}, started {stale.started_at}) "
        f"ended without finishing (killed); found by {lock.holder.command} at "
        f"{lock.holder.started_at}"
    )
    ended = end_runs(config, stale.pid, stale.host, stale.process_started, reason)
    if ended:
        log.warning("marked MLflow run(s) of %s FAILED: %s", stale.command, ", ".join(ended))
    return ended


def feature_rounds_needed(config: Config, months: Sequence[int]) -> list[Prerequisite]:
    """``outreach features --as-of M1,M2,...`` for the months of ``months`` whose feature round
    is missing or out of date (staged tables, feature spec, indicator catalogue or imported
    outcomes changed since it was built: :func:`pipeline.datasets.features.round_status`), as
    one run that builds them all in one pass over each partition; nothing when all are current."""
    from pipeline.datasets.features import round_status
    from pipeline.months import format_month

    stale = {}
    for month in sorted(set(months)):
        why = round_status(config, month)
        if why is not None:
            stale[format_month(month)] = why
    if not stale:
        return []
    reasons: dict[str, list[str]] = {}
    for label, why in stale.items():
        reasons.setdefault(why, []).append(label)
    why = (
        next(iter(reasons))  # one reason for all
        if len(reasons) == 1
        else "; ".join(f"{', '.join(labels)}: {reason}" for reason, labels in reasons.items())
    )
    return [Prerequisite("features", ("--as-of", ",".join(stale)), why)]
