"""``kill -9`` in the middle of a stage, and the same command again: the mechanics.

Used by tests/test_kill_rerun.py (ingest, features, score) and tests/test_mlflow_lineage.py
(train: its second training is killed once mid-fit, then run again, so that the module's one
extra training serves both). The command runs in a subprocess of its own process group until its
work has visibly started (see :class:`KillCase`), then a seeded random delay more, and is
killed outright.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import REPO_ROOT

from pipeline.io import is_leftover

SEED = 20261001
DRIVER_GONE_S = 2.0


@dataclass(frozen=True)
class KillCase:
    name: str
    argv: tuple[str, ...]
    started: Callable[[Path, str], bool]  # (output root, round) -> the work has started
    span_s: float  # the kill comes a random 0..span_s after that


def building(parent: str, name: str) -> Callable[[Path, str], bool]:
    """Started once the stage's ``.NAME.building.*`` folder exists under ``root/parent``."""

    def started(root: Path, as_of: str) -> bool:
        folder = root / parent.format(as_of=as_of)
        prefix = "." + name.format(as_of=as_of) + ".building."
        return folder.is_dir() and any(p.name.startswith(prefix) for p in folder.iterdir())

    return started


def mlflow_run_open(stage: str) -> Callable[[Path, str], bool]:
    """Started once the stage's MLflow run is RUNNING in the output root's store."""

    def started(root: Path, as_of: str) -> bool:
        try:
            with sqlite3.connect(f"file:{root / 'mlflow' / 'mlflow.db'}?mode=ro", uri=True) as db:
                (count,) = db.execute(
                    "select count(*) from runs r join tags t on t.run_uuid = r.run_uuid "
                    "where r.status = 'RUNNING' and t.key = 'mlflow.runName' "
                    "and t.value like ?",
                    (f"{stage} %",),
                ).fetchone()
            return count > 0
        except sqlite3.Error:
            return False

    return started


# train fits models for most of its run: killed 0..8 s after its start
TRAIN = KillCase("train", ("train",), lambda root, as_of: True, 8.0)


def cli(config_file: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "--no-progress", "--config", str(config_file)]


def _start(config_file: Path, argv: tuple[str, ...]) -> subprocess.Popen:
    return subprocess.Popen(
        [*cli(config_file), *argv],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: nothing is left behind by the test
    )


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            continue
    return alive


def kill_in_the_middle(config_file: Path, case: KillCase, root: Path, as_of: str) -> list[int]:
    """Start the command, kill it (SIGKILL) at the case's random point; returns the pids of the
    processes it had started that were still alive 2 s later."""
    delay = random.Random(f"{SEED}-{case.name}").uniform(0.0, case.span_s)
    process = _start(config_file, case.argv)
    try:
        deadline = time.monotonic() + 240
        while not case.started(root, as_of):
            if process.poll() is not None:
                pytest.fail(f"{case.name} ended before its work started:\n{process.stderr.read()}")
            assert time.monotonic() < deadline, f"{case.name}: its work never started"
            time.sleep(0.01)
        time.sleep(delay)
        if process.poll() is not None:
            pytest.fail(f"{case.name} finished before it was killed ({delay:.2f} s in)")
        children = [c.pid for c in psutil.Process(process.pid).children(recursive=True)]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        deadline = time.monotonic() + DRIVER_GONE_S
        while _alive(children) and time.monotonic() < deadline:
            time.sleep(0.05)
        return _alive(children)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever outlived the test's checks
        process.wait()


def rerun(config_file: Path, argv: tuple[str, ...]) -> subprocess.CompletedProcess:
    """The same command again, to its end."""
    return subprocess.run(
        [*cli(config_file), *argv],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )


def leftovers(root: Path) -> list[str]:
    """What a stage leaves while it works (``.building``, ``.old``, ``.parts``, ``*.tmp``)."""
    found = []
    for folder, dirs, files in os.walk(root):
        if Path(folder) == root / "mlflow":
            dirs[:] = []
            continue
        found += [d for d in dirs if is_leftover(d, True) or d == ".parts"]
        found += [f for f in files if is_leftover(f, False)]
    return found


def _client(config):
    from pipeline.tracking import connect

    return connect(config)


def runs(config) -> list:
    """Every run of every experiment of the config's MLflow store."""
    from mlflow.entities import ViewType

    client = _client(config)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return client.search_runs(experiments, max_results=1000)


def champion(config) -> str | None:
    from pipeline.tracking.registry import current_champion

    found = current_champion(_client(config), config.training.model_name)
    return None if found is None else str(found.version)


def train_metrics(config) -> list[dict[str, float]]:
    """The metrics of the finished training runs (every experiment), oldest first."""
    found = [
        r
        for r in runs(config)
        if r.data.tags.get("outreach.stage") == "train" and r.info.status == "FINISHED"
    ]
    found.sort(key=lambda r: r.info.start_time)
    # gates.* depend on the champion at the time (none before the clean run, one before the rerun)
    return [{k: v for k, v in r.data.metrics.items() if not k.startswith("gates.")} for r in found]
