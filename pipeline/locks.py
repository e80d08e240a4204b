"""One writing command at a time per output root: the lock file ``<root>/.outreach.lock``.

A command that writes shared state (staged tables, feature folders, rounds, the outcomes store,
the MLflow store and its registry) holds an exclusive ``flock`` on the lock file for as long as
it runs. The file holds a JSON record of the holder (pid, host, command, start time), so that
another command finding the lock taken can say who holds it (:class:`LockHeld`, a
:class:`~pipeline.errors.UsageError`). A command either refuses at once or waits a while
(``wait_s``), as its registry entry in :mod:`pipeline.stages` says.

The lock is re-entrant within one process: ``outreach run`` holds it and runs every stage (and
each stage's prerequisites) inside, and a stage function that takes it itself (the outcomes
import, the scoring of a round) only counts one level deeper. The process-wide table of held
locks is the one piece of module state here: an ``flock`` belongs to an open file, and opening
the file a second time in the same process would lock this process out by itself.

Stale rule. The kernel drops an ``flock`` when its process ends, however it ends; a clean exit
also removes the file. So a lock file that holds a record and can be locked was left by a
process that was killed (``kill -9``, power cut): its record is *stale* and is taken over. On
this host, a record whose process still runs (same pid, same start time) is never stale, even
where the file system does not enforce ``flock``.

Every time a command takes the lock (not when it re-enters it) it removes what a killed run
left in the root: ``.<name>.building.*`` and ``.<name>.old.*`` folders, ``.parts`` folders and
``.<name>.*.tmp`` files (:func:`pipeline.io.is_leftover`), down to :data:`CLEAN_DEPTH` levels,
never inside the MLflow store or another lock's root (``skip``). Only the holder of the lock may
clean: another writer's temporary folders are its work in progress.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline.datasets.rounds import PARTS
from pipeline.errors import UsageError
from pipeline.io import is_leftover

log = logging.getLogger(__name__)

LOCK_FILE = ".outreach.lock"
CLEAN_DEPTH = 4  # e.g. rounds/2026-10/shadow/.v2.building.x: four levels below the root
POLL_S = 0.2
SHORT_WAIT_S = 120.0  # how long a short command (an outcomes import) waits for another
# A holder writes its record just after it takes the lock: a command refused in that moment
# waits this long to say who holds it rather than "another command (starting)".
RECORD_GRACE_S = 2.0


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a lock: the record in the lock file."""

    pid: int
    host: str
    command: str
    started_at: str  # ISO time, UTC
    process_started: float | None = None  # the process's start time (tells a reused pid)

    def describe(self) -> str:
        return f"`{self.command}` (pid {self.pid} on {self.host}, started {self.started_at})"

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Holder | None:
        """The record in ``text``; None when empty or unreadable (a holder killed while writing
        it)."""
        try:
            data = json.loads(text)
            return cls(
                pid=int(data["pid"]),
                host=str(data["host"]),
                command=str(data["command"]),
                started_at=str(data["started_at"]),
                process_started=data.get("process_started"),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Lock:
    """A lock held by this process. ``stale`` is the record of a killed holder taken over and
    ``cleaned`` what its run left; both empty when the lock was re-entered."""

    root: Path
    holder: Holder
    stale: Holder | None = None
    cleaned: tuple[Path, ...] = ()
    reentered: bool = False


class LockHeld(UsageError):
    """Another command holds the output root's lock."""


@dataclass
class _Held:
    lock: Lock
    fd: int
    depth: int = 1
    owner: int = field(default_factory=os.getpid)


_HELD: dict[str, _Held] = {}  # lock file -> the lock this process holds (see the module doc)
_HELD_GUARD = threading.Lock()


def lock_file(root: Path) -> Path:
    return Path(root) / LOCK_FILE


def this_process(command: str) -> Holder:
    """The record of this process holding a lock for ``command``."""
    return Holder(
        pid=os.getpid(),
        host=socket.gethostname(),
        command=command,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        process_started=_process_start(os.getpid()),
    )


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def running_here(holder: Holder) -> bool:
    """Whether the holder's process runs on this host (same pid, same start time, no zombie)."""
    import psutil

    if holder.host != socket.gethostname():
        return False
    try:
        process = psutil.Process(holder.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return holder.process_started is None or process.create_time() == holder.process_started
    except psutil.Error:
        return False


def held_message(root: Path, holder: Holder | None) -> str:
    """The one-line refusal: who holds the lock of ``root`` and what to do."""
    who = holder.describe() if holder is not None else "another command (starting)"
    return (
        f"{root} is in use by {who}: wait for it to finish and run this command again "
        f"(the lock is {lock_file(root)}; one left by a process that is gone is taken over)"
    )


def _read_record(fd: int) -> Holder | None:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    return Holder.from_json(data.decode("utf-8", errors="replace")) if data.strip() else None


def _write_record(fd: int, holder: Holder) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, (holder.to_json() + "\n").encode("utf-8"), 0)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (a holder that released it removed it)."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


RETRY = "retry"  # the file was released and removed while it was opened: try again at once


def _try_lock(path: Path) -> tuple[int | None, Holder | str | None]:
    """(fd, previous record) when this process got the lock; (None, holder) when another holds
    it (holder None: its record is not written yet); (None, RETRY) when the file went away."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_record(fd)
        os.close(fd)
        return None, holder
    except BaseException:
        os.close(fd)
        raise
    try:
        if not _same_file(fd, path):
            os.close(fd)
            return None, RETRY
        previous = _read_record(fd)
        if previous is not None and running_here(previous) and previous.pid != os.getpid():
            os.close(fd)  # flock not enforced on this file system, but its holder runs
            return None, previous
        return fd, previous
    except BaseException:
        os.close(fd)
        raise


def _acquire(
    root: Path, command: str, wait_s: float, announce: Callable[[str], None] | None
) -> tuple[int, Holder, Holder | None]:
    path = lock_file(root)
    deadline = time.monotonic() + wait_s
    announced = False
    while True:
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd, previous = _try_lock(path)
        except OSError as exc:  # a read-only or missing place, a file where a folder should be
            reason = exc.strerror or type(exc).__name__
            raise UsageError(f"{path}: cannot lock the output root: {reason}") from None
        if previous == RETRY:
            continue
        assert not isinstance(previous, str)
        if fd is not None:
            me = this_process(command)
            try:
                _write_record(fd, me)
            except BaseException:
                os.close(fd)
                raise
            return fd, me, previous
        now = time.monotonic()
        if now >= deadline and (previous is not None or now >= deadline + RECORD_GRACE_S):
            raise LockHeld(held_message(root, previous))
        if not announced and announce is not None and previous is not None:
            announce(f"waiting for {previous.describe()} to finish with {root}")
            announced = True
        time.sleep(POLL_S)


def _release(root: Path, fd: int) -> None:
    """Remove the lock file and drop the lock (in that order: see :func:`_same_file`)."""
    try:
        if _same_file(fd, lock_file(root)):
            lock_file(root).unlink(missing_ok=True)
    finally:
        os.close(fd)


def clean_leftovers(root: Path, skip: Iterable[Path] = (), depth: int = CLEAN_DEPTH) -> list[Path]:
    """Remove the temporary folders and files a killed run left under ``root`` (see the module
    doc); returns what was removed. Call it only while holding ``root``'s lock."""
    root = Path(root)
    skipped = {os.path.abspath(p) for p in skip}
    removed: list[Path] = []

    def visit(folder: Path, level: int) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return
        for entry in entries:
            path = Path(entry.path)
            is_dir = entry.is_dir(follow_symlinks=False)
            if is_dir and (is_leftover(entry.name, True) or entry.name == PARTS):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            elif not is_dir and is_leftover(entry.name, False):
                path.unlink(missing_ok=True)
                removed.append(path)
            elif (
                is_dir
                and level < depth
                and os.path.abspath(path) not in skipped
                and not (path / LOCK_FILE).exists()  # another lock's root: its holder cleans
            ):
                visit(path, level + 1)

    visit(root, 1)
    return removed


@contextmanager
def hold(
    root: Path,
    command: str,
    *,
    wait_s: float = 0.0,
    announce: Callable[[str], None] | None = None,
    skip: Iterable[Path] = (),
) -> Iterator[Lock]:
    """Hold the lock of ``root`` within the block (re-entrant in this process).

    Refuses with :class:`LockHeld` when another process holds it after ``wait_s`` seconds
    (``announce`` tells once that it waits). Taking the lock cleans up what a killed run left
    (``skip``: folders not to look into) and reports a stale record taken over in the yielded
    :class:`Lock`.
    """
    root = Path(root)
    key = os.path.abspath(lock_file(root))
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is not None and held.owner == os.getpid():
            held.depth += 1
    if held is not None and held.owner == os.getpid():
        try:
            yield Lock(root, held.lock.holder, reentered=True)
        finally:
            with _HELD_GUARD:
                held.depth -= 1
        return
    fd, me, previous = _acquire(root, command, wait_s, announce)
    try:
        cleaned = tuple(clean_leftovers(root, skip))
    except BaseException:
        _release(root, fd)
        raise
    lock = Lock(root, me, stale=previous, cleaned=cleaned)
    if previous is not None:
        log.warning(
            "took over the lock of %s from %s, which did not finish (killed?)",
            root,
            previous.describe(),
        )
    if cleaned:
        log.warning(
            "removed %d leftover(s) of an unfinished run under %s: %s",
            len(cleaned),
            root,
            ", ".join(p.relative_to(root).as_posix() for p in cleaned[:5]),
        )
    with _HELD_GUARD:
        _HELD[key] = _Held(lock, fd)
    try:
        yield lock
    finally:
        with _HELD_GUARD:
            _HELD.pop(key, None)
        _release(root, fd)
