"""Run one pure function over many partitions: in this process, a local process pool or on Dask.

The function and its arguments must be picklable. Results come back in the order of the inputs,
whatever order the workers finish in, so that combined results are deterministic. The engine is
chosen by the runtime config (``runtime.engine``, CLI ``--engine``): the stages call
:func:`map_partitions` and never know which one ran their partitions.

``local`` (the default) runs in this process when ``runtime.workers`` is 1, else in a
``ProcessPoolExecutor`` of that many processes. ``dask`` sends every task to the Dask scheduler at
``runtime.scheduler`` (CLI ``--scheduler``); ``runtime.workers`` is then unused: the cluster's
workers decide the parallelism. A real cluster needs, on every worker:

- the same version of this package and of its dependencies installed (tasks are pickled by
  reference to the functions of ``pipeline`` and ``features``, which the workers import);
- the same paths visible, with the same names (a shared filesystem): tasks carry the paths of the
  input and output folders, and workers read and write the Parquet files there themselves;
- one thread per worker process (``dask worker --nthreads 1``): partition functions are written
  for processes, not for sharing one interpreter with other partitions.

Logs written inside a task stay in the worker's log. An exception raised by a task is raised
again here with its own type (a ``DataError`` stays a ``DataError``), and the remaining tasks are
cancelled. Local workers never outlive the run: when the driver stops on an error or a signal
they are terminated before the error is raised again (so the caller's clean-up of temporary
folders runs after the last write). A driver killed outright (``SIGKILL``) takes its workers
with it: on Linux the fork server asks the kernel for ``SIGKILL`` when the driver ends, and each
worker when the fork server ends (``PR_SET_PDEATHSIG``; the fork server does so as the first
thing it imports, this module, see :func:`tie_fork_server_to_its_command`). Elsewhere, and as
a second guard, each worker checks every second that the driver still runs and exits otherwise.

The Dask connect timeout is ``distributed.comm.timeouts.connect`` (30 s by default; environment
variable ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT``).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.context
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from tqdm import tqdm

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client

    from pipeline.config import RuntimeConfig

log = logging.getLogger(__name__)

TaskT = TypeVar("TaskT")
ResultT = TypeVar("ResultT")


def map_partitions(
    function: Callable[[TaskT], ResultT],
    tasks: Sequence[TaskT],
    *,
    description: str,
    runtime: RuntimeConfig | None = None,
    workers: int | None = None,
    progress: bool | None = None,
) -> list[ResultT]:
    """Apply ``function`` to every task on the engine of ``runtime``, keeping input order.

    ``workers`` and ``progress``, when given, replace those of ``runtime`` (default: a local run).
    """
    if runtime is None:
        from pipeline.config import RuntimeConfig

        runtime = RuntimeConfig()
    workers = runtime.workers if workers is None else workers
    progress = runtime.progress if progress is None else progress
    client = None
    if runtime.engine == "dask":
        if runtime.scheduler is None:  # a validated config never gets here
            raise ConfigError("runtime.scheduler: engine dask needs a scheduler address")
        client = connect(runtime.scheduler)
    results: list[Any] = [None] * len(tasks)
    bar = tqdm(total=len(tasks), desc=description, unit="partition", disable=not progress)
    try:
        if client is None:
            _run_local(function, tasks, results, bar, workers)
        else:
            _run_dask(function, tasks, results, bar, client, description)
    finally:
        bar.close()
        if client is not None:
            client.close()
    return results


# Imported once by the fork server, so that each worker forked from it starts warm. This module
# comes first: imported by the fork server, it ties the fork server's life to the command's
# (see the end of this module) before the seconds the heavy libraries take; it imports nothing
# heavy itself (the config is imported where it is needed).
FORKSERVER_PRELOAD = (
    "pipeline.engine",
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "sklearn",
    "lightgbm",
)


def pool_context(preload: Sequence[str] = ()) -> multiprocessing.context.BaseContext:
    """The start method of the local process pool: a fork server.

    Plain ``fork`` copies a process whose other threads hold locks (LightGBM's OpenMP pool once a
    model was fitted or used in this process, as ``outreach run`` does when it trains and then
    scores): a child that needs such a lock waits forever. The fork server is a clean process
    that imports the heavy libraries once (``FORKSERVER_PRELOAD``, and the modules ``preload``
    names when it is started by this call) and forks every worker.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # Never __main__: the fork server would run the main script again.
    modules = [m for m in preload if m != "__main__"]
    context.set_forkserver_preload([*FORKSERVER_PRELOAD, *modules])
    return context


def warm_up(runtime: RuntimeConfig, modules: Sequence[str] = ()) -> None:
    """Start the local pool's fork server now, importing ``modules`` as well, so that it gets
    ready while this process does other work (opening the MLflow store, say) instead of after.

    Nothing to do for Dask, for one worker, or where the fork server is already running (the
    modules are then imported by each worker when it needs them).
    """
    if runtime.engine != "local" or runtime.workers <= 1:
        return
    context = pool_context(modules)
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


# How often a local worker checks that its driver is still there.
DRIVER_CHECK_S = 1.0


def driver_alive(pid: int, started: float) -> bool:
    """Whether the process ``pid`` that started at ``started`` (psutil create time) still runs.

    A zombie (killed, not yet reaped) counts as gone; so does a new process that reused the pid.
    """
    import psutil

    try:
        process = psutil.Process(pid)
        return process.create_time() == started and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# prctl option (linux/prctl.h): the signal this process gets when its parent ends
PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """Ask the Linux kernel to kill this process (``SIGKILL``) when its parent ends; False where
    that cannot be asked (not Linux, no C library)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def watch_driver(pid: int, started: float) -> None:
    """Pool initializer: end this worker as soon as the driver is gone.

    A worker's parent is the fork server, and it holds both ends of its task queue, so nothing
    else tells it that a driver killed with ``SIGKILL`` will never send more work. The fork
    server ends when the driver does (:func:`tie_fork_server_to_its_command`): the kernel then
    kills this worker (:func:`die_with_parent`). A thread that polls the driver every second is
    the second guard (a worker busy in C code holding the GIL may not run it for a while).
    """
    parent = os.getppid()
    if die_with_parent() and os.getppid() != parent:
        os._exit(1)  # the parent ended before the request was made: it will never be kept
    if not driver_alive(pid, started):
        os._exit(1)

    def watch() -> None:
        while driver_alive(pid, started):
            time.sleep(DRIVER_CHECK_S)
        os._exit(1)  # no clean-up to run: the driver's own temporary folders are its concern

    threading.Thread(target=watch, name="watch-driver", daemon=True).start()


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and terminate the workers now, not after their tasks."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)


def _run_local(
    function: Callable[[TaskT], ResultT],
    tasks: Sequence[TaskT],
    results: list[Any],
    bar: tqdm,
    workers: int,
) -> None:
    if workers <= 1 or len(tasks) <= 1:
        for position, task in enumerate(tasks):
            results[position] = function(task)
            bar.update(1)
        return
    import psutil

    driver = psutil.Process()
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)),
        mp_context=pool_context([function.__module__]),
        initializer=watch_driver,
        initargs=(driver.pid, driver.create_time()),
    )
    try:
        futures = {pool.submit(function, task): i for i, task in enumerate(tasks)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.update(1)
    except BaseException:
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True)


def _run_dask(
    function: Callable[[TaskT], ResultT],
    tasks: Sequence[TaskT],
    results: list[Any],
    bar: tqdm,
    client: Client,
    description: str,
) -> None:
    from distributed import as_completed as dask_as_completed

    log.info(
        "%s: %d tasks on the Dask scheduler %s (%d workers)",
        description,
        len(tasks),
        client.scheduler.address,
        len(client.nthreads()),
    )
    futures = client.map(function, list(tasks), pure=False)
    position = {future.key: i for i, future in enumerate(futures)}
    try:
        for future in dask_as_completed(futures, loop=client.loop):
            results[position[future.key]] = future.result()
            bar.update(1)
    except BaseException:
        client.cancel(futures)
        raise


def connect(scheduler: str) -> Client:
    """A Dask client of the scheduler at ``scheduler``; ConfigError (one line) if it cannot.

    distributed is imported here, not at module level: the local engine must not pay for it.
    """
    import asyncio

    import dask
    from dask.utils import parse_timedelta
    from distributed import Client
    from distributed.comm import connect as open_comm

    timeout = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), default="s")

    async def probe() -> None:
        comm = await open_comm(scheduler, timeout=timeout)
        await comm.close()

    try:
        # Probe first: a Client that failed to connect stalls when it is garbage collected.
        asyncio.run(probe())
        return Client(scheduler, set_as_default=False)
    except (OSError, ValueError, TypeError) as exc:  # refused, timed out, malformed address
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(
            f"runtime.scheduler: cannot connect to the Dask scheduler at {scheduler}: {reason}"
        ) from None


def fork_server_frame() -> FrameType | None:
    """The frame of a fork server's ``main`` when this module is being imported by its preload
    (before it listens: a process it forked has ``listener`` bound); None otherwise, as always
    in the command's own process."""
    forkserver = sys.modules.get("multiprocessing.forkserver")
    main = getattr(forkserver, "main", None)
    if main is None:
        return None
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is main.__code__:
            return frame if "listener" not in frame.f_locals else None
        frame = frame.f_back
    return None


SO_PEERCRED = getattr(socket, "SO_PEERCRED", 17)  # Linux's value where Python does not name it


def listening_process(listener_fd: int) -> int | None:
    """The pid of the process that made the socket ``listener_fd`` listen (Linux: the peer
    credentials of a listening Unix socket are its own): for a fork server, its command."""
    try:
        listener = socket.socket(fileno=os.dup(listener_fd))
    except OSError:
        return None
    try:
        size = struct.calcsize("3i")
        pid, _, _ = struct.unpack("3i", listener.getsockopt(socket.SOL_SOCKET, SO_PEERCRED, size))
        return pid or None
    except (OSError, struct.error):
        return None
    finally:
        listener.close()


def tie_fork_server_to_its_command(frame: FrameType) -> None:
    """In a fork server: be killed by the kernel when the command that started it ends, and
    exit now if it already has (this process's parent is no longer the command)."""
    if not die_with_parent():
        return
    listener_fd = frame.f_locals.get("listener_fd")
    command = listening_process(listener_fd) if isinstance(listener_fd, int) else None
    if command is not None and os.getppid() != command:
        os._exit(0)


# The one thing this module does when imported, and only in a fork server (FORKSERVER_PRELOAD):
# the fork server notices that its command is gone only between two fork requests, not while it
# still imports its preload (seconds), so it ties its life to the command's first.
if (_server := fork_server_frame()) is not None:
    tie_fork_server_to_its_command(_server)
