"""The output root's lock: one writing command at a time, a clear refusal, stale locks taken
over, and the races it closes (real concurrent processes of the CLI).

- two ``outreach outcomes import`` of different returned lists at once: no answer is lost;
- two plain ``outreach score`` of a new round at once: one places the round, the other refuses.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO_ROOT, ScoredSample, copy_outputs, make_config, write_config_file

from pipeline.datasets.outcomes import read_round_outcomes
from pipeline.vocabulary import LIST_COLUMNS

KEYS = [c.key for c in LIST_COLUMNS]
HELD = re.compile(r"is in use by `outreach [a-z ]+.*` \(pid \d+ on .+, started \d{4}-\d\d-\d\dT")


# --- helpers ------------------------------------------------------------------------------------


def _cli(config_file: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipeline.cli",
        "--no-progress",
        "--log-level",
        "WARNING",
        "--config",
        str(config_file),
        *args,
    ]


def _start(argv: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,
    )


def _finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"{process.args[-1]} did not finish in {timeout} s:\n{err[-3000:]}")
    return process.returncode, out, err


HOLDER = """
import sys, time
from pathlib import Path
from pipeline.io import staging_dir, write_json
from pipeline.locks import hold

root = Path(sys.argv[1])
with hold(root, sys.argv[2]):
    if len(sys.argv) > 3:  # a run in the middle of its work: temporary folders and files
        with staging_dir(root / "rounds" / "2026-10") as out:
            (out / "scores.parquet").write_bytes(b"half")
            (root / "outcomes" / "round=2026-10").mkdir(parents=True)
            (root / "outcomes" / "round=2026-10" / ".outcomes.parquet.x1y2.tmp").write_bytes(b"")
            (out / ".parts").mkdir()
            print("held", flush=True)
            time.sleep(600)
    print("held", flush=True)
    time.sleep(600)
"""


def _hold_in_another_process(root: Path, command: str, working: bool = False):
    argv = [sys.executable, "-c", HOLDER, str(root), command] + (["working"] if working else [])
    process = _start(argv)
    line = process.stdout.readline()
    assert line.strip() == "held", process.communicate()[1][-3000:]
    return process


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


# --- the lock itself ----------------------------------------------------------------------------


def test_a_held_lock_refuses_a_writing_command_naming_the_holder(tmp_path):
    config = make_config(tmp_path / "outputs")
    config_file = write_config_file(config, tmp_path / "config.yaml")
    holder = _hold_in_another_process(config.paths.output_root, "outreach train")
    try:
        code, _, err = _finish(_start(_cli(config_file, "ingest")), timeout=120)
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err  # one line, no traceback
        assert HELD.search(lines[0]), lines[0]
        assert "`outreach train`" in lines[0] and f"pid {holder.pid} " in lines[0]
        assert not (config.paths.output_root / "staged").exists()
        record = json.loads((config.paths.output_root / ".outreach.lock").read_text())
        assert record["pid"] == holder.pid and record["command"] == "outreach train"
    finally:
        _stop(holder)


SLOW_RECORD = """
import fcntl, os, sys, time
from pipeline.locks import _write_record, lock_file, this_process
from pathlib import Path

root = Path(sys.argv[1])
root.mkdir(parents=True, exist_ok=True)
fd = os.open(lock_file(root), os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
time.sleep(0.6)  # the moment between taking the lock and writing who holds it
_write_record(fd, this_process("outreach score"))
time.sleep(600)
"""


def test_a_command_refused_before_the_holder_wrote_its_record_still_names_it(tmp_path):
    # CI once caught a second `outreach score` in that moment: "another command (starting)"
    from pipeline.locks import LockHeld, hold

    root = tmp_path / "outputs"
    holder = _start([sys.executable, "-c", SLOW_RECORD, str(root)])
    try:
        assert holder.stdout.readline().strip() == "locked", holder.communicate()[1][-3000:]
        with pytest.raises(LockHeld) as refused, hold(root, "outreach score"):
            pass
        assert HELD.search(str(refused.value)), refused.value
        assert f"pid {holder.pid} " in str(refused.value)
    finally:
        _stop(holder)


def test_the_lock_is_reentrant_in_one_process_and_gone_after(tmp_path):
    from pipeline.locks import LockHeld, hold

    root = tmp_path / "outputs"
    with hold(root, "outreach run") as outer:
        assert not outer.reentered and outer.stale is None
        with hold(root, "outreach score") as inner:
            assert inner.reentered and inner.holder == outer.holder
        assert (root / ".outreach.lock").is_file()  # still held by the outer block
        other = _start([sys.executable, "-c", TRY_LOCK, str(root)])
        code, _, err = _finish(other, timeout=60)
        assert code == 3, err  # refused: this process holds it
    assert not (root / ".outreach.lock").exists()  # released and removed
    code, _, err = _finish(_start([sys.executable, "-c", TRY_LOCK, str(root)]), timeout=60)
    assert code == 0, err  # free for another process
    holder = _hold_in_another_process(root, "outreach ingest")
    try:
        with pytest.raises(LockHeld, match="`outreach ingest`"), hold(root, "outreach score"):
            pass
    finally:
        _stop(holder)


TRY_LOCK = """
import sys
from pathlib import Path
from pipeline.locks import LockHeld, hold
try:
    with hold(Path(sys.argv[1]), "outreach features"):
        pass
except LockHeld:
    sys.exit(3)
"""


def test_a_waiting_command_gets_the_lock_when_the_holder_finishes(tmp_path):
    from pipeline.locks import hold

    root = tmp_path / "outputs"
    holder = _hold_in_another_process(root, "outreach outcomes import")
    waited = []
    started = time.monotonic()
    try:
        import threading

        threading.Timer(1.5, lambda: os.killpg(holder.pid, signal.SIGKILL)).start()
        with hold(root, "outreach outcomes import", wait_s=60, announce=waited.append) as lock:
            assert lock.stale is not None  # killed while it held it: taken over
    finally:
        _stop(holder)
    assert time.monotonic() - started >= 1.4
    assert len(waited) == 1 and "outreach outcomes import" in waited[0]


def test_a_stale_lock_is_taken_over_and_what_the_killed_run_left_is_removed(tmp_path):
    from pipeline.locks import hold

    root = tmp_path / "outputs"
    good = root / "rounds" / "2026-09"
    good.mkdir(parents=True)
    (good / "scores.parquet").write_bytes(b"the last complete round")
    holder = _hold_in_another_process(root, "outreach score --as-of 2026-10", working=True)
    leftovers = [p for p in (root / "rounds").iterdir() if ".building." in p.name]
    assert len(leftovers) == 1
    os.killpg(holder.pid, signal.SIGKILL)  # kill -9: no clean-up runs
    holder.communicate()
    assert leftovers[0].exists()
    record = json.loads((root / ".outreach.lock").read_text())
    assert record["pid"] == holder.pid

    with hold(root, "outreach score --as-of 2026-10") as lock:
        assert lock.stale is not None and lock.stale.pid == holder.pid
        assert lock.stale.command == "outreach score --as-of 2026-10"
        names = sorted(p.relative_to(root).as_posix() for p in lock.cleaned)
        assert names == [
            "outcomes/round=2026-10/.outcomes.parquet.x1y2.tmp",
            leftovers[0].relative_to(root).as_posix(),
        ]
        assert not leftovers[0].exists()
        record = json.loads((root / ".outreach.lock").read_text())
        assert record["pid"] == os.getpid()
    assert (good / "scores.parquet").read_bytes() == b"the last complete round"
    assert sorted(p.name for p in root.rglob("*")) == sorted(
        ["rounds", "2026-09", "scores.parquet", "outcomes", "round=2026-10"]
    )


def test_a_record_of_a_process_that_still_runs_is_never_stale(tmp_path):
    """Where flock is not enforced (some network file systems) the record still protects."""
    from pipeline.locks import Holder, LockHeld, hold, this_process

    root = tmp_path / "outputs"
    root.mkdir()
    sleeper = _start([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        import psutil

        alive = Holder(
            pid=sleeper.pid,
            host=this_process("x").host,
            command="outreach train",
            started_at="2026-10-01T00:00:00+00:00",
            process_started=psutil.Process(sleeper.pid).create_time(),
        )
        (root / ".outreach.lock").write_text(alive.to_json())  # a record, but no flock
        with (
            pytest.raises(LockHeld, match=r"`outreach train` \(pid"),
            hold(root, "outreach ingest"),
        ):
            pass
    finally:
        _stop(sleeper)
    with hold(root, "outreach ingest") as lock:  # its process ended: stale
        assert lock.stale is not None and lock.stale.pid == sleeper.pid


# --- races between real commands ----------------------------------------------------------------


def _read_list(path: Path) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    return rows[0], rows[1:]


def _returned_list(source: Path, target: Path, day: str) -> tuple[Path, set[str]]:
    """``source`` (a round's list) filled in as a caseworker would; its household keys."""
    head, rows = _read_list(source)
    codes = ["public_support", "closed_no_need", "private_support", "unreachable"]
    filled = []
    for i, row in enumerate(rows):
        row = list(row)
        row[KEYS.index("outcome_code")] = codes[i % 4]
        row[KEYS.index("contact_date")] = day
        filled.append(row)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(head)
    writer.writerows(filled)
    target.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))
    return target, {row[KEYS.index("household_key")] for row in filled}


# Widens the window between reading the outcomes store and writing it (3 s), so that two
# imports started together overlap there every time; the import is otherwise the real one.
SLOW_MERGE = """
import sys, time
import pipeline.outcomes.importer as importer
from pipeline.cli import main

merge = importer.merge_outcomes
def slow_merge(*args, **kwargs):
    result = merge(*args, **kwargs)
    time.sleep(3)
    return result
importer.merge_outcomes = slow_merge
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture()
def light(scored_sample: ScoredSample, tmp_path):
    """A private output root with the scored round and the staged households only."""
    out = tmp_path / "outputs"
    source = scored_sample.config.paths.output_root
    shutil.copytree(scored_sample.round_dir, out / "rounds" / scored_sample.as_of)
    shutil.copytree(source / "staged" / "households", out / "staged" / "households")
    config = scored_sample.config.with_overrides(paths={"output_root": str(out)})
    return config, write_config_file(config, tmp_path / "config.yaml")


def test_two_imports_at_once_lose_no_answer(light, scored_sample, tmp_path):
    config, config_file = light
    lists = sorted(
        (config.paths.output_root / "rounds" / scored_sample.as_of / "lists").glob("*/emd_*.csv")
    )
    sources = [p for p in lists if len(_read_list(p)[1]) >= 10][:2]
    assert len(sources) == 2
    first, first_keys = _returned_list(sources[0], tmp_path / "first.csv", "2026-10-15")
    second, second_keys = _returned_list(sources[1], tmp_path / "second.csv", "2026-10-20")
    assert not first_keys & second_keys

    argv = _cli(config_file, "outcomes", "import")[3:]  # the options after "-m pipeline.cli"
    runs = [
        _start([sys.executable, "-c", SLOW_MERGE, *argv, str(path)]) for path in (first, second)
    ]
    results = [_finish(run, timeout=240) for run in runs]
    for code, out, err in results:
        assert code == 0, err[-3000:]
        assert "new" in out
    stored = read_round_outcomes(config, scored_sample.as_of)
    assert stored is not None
    keys = set(stored["household_key"].astype(str))
    assert first_keys <= keys and second_keys <= keys, (
        f"{len((first_keys | second_keys) - keys)} of {len(first_keys | second_keys)} answers lost"
    )
    assert len(stored) == len(first_keys) + len(second_keys)
    log_lines = (config.paths.output_root / "outcomes" / "imports.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["counts"]["new"] for line in log_lines) == sorted(
        [len(first_keys), len(second_keys)]
    )
    assert not (config.paths.output_root / ".outreach.lock").exists()


def test_two_plain_scores_of_a_new_round_place_it_once(scored_sample, tmp_path):
    copy = copy_outputs(scored_sample, tmp_path)
    shutil.rmtree(copy.round_dir)  # a round not scored yet
    runs = [_start(_cli(copy.config_file, "score")) for _ in range(2)]
    results = [_finish(run, timeout=300) for run in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], [err[-2000:] for _, _, err in results]
    winner = next(out for code, out, _ in results if code == 0)
    loser = next(err for code, _, err in results if code != 0)
    assert len(loser.strip().splitlines()) == 1, loser
    assert HELD.search(loser) or "exists: a scored round is not overwritten" in loser, loser
    run_id = re.search(r"MLflow run (\w+)", winner).group(1)
    manifest = json.loads((copy.round_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["scoring_run"]["run_id"] == run_id
    assert not (copy.round_dir.parent / "_replaced").exists()  # nothing was replaced
    scores = pd.read_parquet(copy.round_dir / "scores.parquet")
    clean = pd.read_parquet(scored_sample.round_dir / "scores.parquet")
    pd.testing.assert_frame_equal(scores, clean)


def test_an_output_root_that_cannot_hold_a_lock_is_a_one_line_usage_error(tmp_path):
    from pipeline.errors import UsageError
    from pipeline.locks import hold

    blocker = tmp_path / "outputs"
    blocker.write_text("a file where the output root should be")
    refused = r"outputs/\.outreach\.lock: cannot lock the output root"
    with pytest.raises(UsageError, match=refused), hold(blocker, "outreach ingest"):
        pass
