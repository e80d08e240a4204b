"""The ``outreach`` command line: ``outreach [--config FILE] STAGE [--as-of YYYY-MM] [...]``.

Exit codes: 0 success, 1 the data or a check failed, 2 usage or configuration error, 130
interrupted (Ctrl-C), 143 terminated (SIGTERM). Interrupted or terminated, a stage stops its
workers and removes its temporary files; the last complete outputs stay as they were.

Each stage lives in its own folder under ``pipeline/``; its command module exposes
``add_arguments(parser)`` and ``run(config, args) -> int``, and the registry
(:mod:`pipeline.stages`) names them in pipeline order. A stage's declared prerequisites run
first, announced on the terminal.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pipeline.config import Config, ConfigError, config_from_mapping, load_config
from pipeline.errors import (
    EXIT_DATA,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    DataError,
    Terminated,
    UsageError,
)
from pipeline.stages import STAGES, load, run_stage

log = logging.getLogger("outreach")


def _quiet_telemetry() -> None:
    # MLflow and friends must never call home; this has to happen before they are imported.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _thread_settings() -> None:
    # OpenMP (LightGBM) reads its wait policy once, when the library loads: set here, where the
    # process starts, before any stage imports it, and inherited by the local worker processes.
    # Passive waiting: a thread that waits for work sleeps instead of spinning, so LightGBM's two
    # threads do not burn the core another process (a partition worker, a second command) needs.
    # Measured in docs/scaling.md ("Threads"). An OMP_WAIT_POLICY already set is kept.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# glibc's malloc in the local worker processes: memory a partition frees stays in the process for
# the next one, instead of going back to the system and being faulted in again (by default glibc
# unmaps each block above a threshold of 128 kB to 32 MB when it is freed, and trims the heap
# above twice that). Measured at 1 M households: a round of 23.8 s instead of 24.9 (features
# 4.5 s instead of 5.4), a stage's peak memory up to 0.4 GB higher; training at 1 M 0.7 GB
# higher (docs/scaling.md, "Freed memory kept"). glibc reads them when a process starts: the
# workers, started later, get them; this process, where `train` fits, keeps glibc's defaults.
# Values already in the environment are kept.
WORKER_MALLOC = {"MALLOC_TRIM_THRESHOLD_": str(8 << 30), "MALLOC_MMAP_THRESHOLD_": str(8 << 30)}


def _memory_settings() -> None:
    for name, value in WORKER_MALLOC.items():
        os.environ.setdefault(name, value)
    # Arrow's allocator: the system's (glibc), not Arrow's default (mimalloc). Measured at 1 M
    # households, score took 12.4 s and 2.1 GB instead of 13.0 s and 2.5 GB, and every stage of
    # a round peaked lower; the national training case peaked 0.9 GB higher, at 7.0 GB
    # (docs/scaling.md, "Arrow's allocator"). Arrow reads the variable when
    # it is imported: the local worker processes, started later, inherit it; this process, which
    # has imported Arrow already, is switched here. A choice already in the environment is kept.
    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit code 2 with a one-line message
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"outreach: error: {message}\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``outreach run`` (none yet beyond the global ones)."""


def run(config: Config, args: argparse.Namespace) -> int:
    """``outreach run``: every stage marked ``in_run``, in order, each with its default options
    (and before it, what it declares it needs)."""
    if config.retention.in_run:  # destroy what the retention period no longer allows, first
        print("==> retention")
        code = run_stage(config, "retention", [])
        if code != EXIT_OK:
            return code
    for stage in STAGES:
        if not stage.in_run:
            continue
        print(f"==> {stage.name}")
        # A run scores the round again each time; the earlier folder is kept in _replaced/.
        extra = ["--force"] if stage.name == "score" else []
        code = run_stage(config, stage.name, extra)
        if code != EXIT_OK:
            return code
    root = config.paths.output_root
    print(f"\nAll stages finished. Results are under {root.resolve()}/")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; ``outreach --help`` lists every stage."""
    stage_lines = "\n".join(f"  {s.name:<10} {s.help}" for s in STAGES)
    parser = _Parser(
        prog="outreach",
        description="Find households in hidden welfare need and write outreach lists.",
        epilog=f"stages:\n{stage_lines}\n\nexit codes: 0 success, 1 data or check failed, "
        "2 usage or configuration error, 130 interrupted, 143 terminated (SIGTERM)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="YAML config (default: embedded defaults)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--engine",
        choices=["local", "dask"],
        help="run partitions in local processes or on a Dask cluster (default: runtime.engine)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="Dask scheduler address for --engine dask, e.g. tcp://host:8786",
    )
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", parser_class=_Parser)
    for stage in STAGES:
        stage_parser = sub.add_parser(stage.name, help=stage.help, description=stage.help)
        load(stage).add_arguments(stage_parser)
    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )


def _runtime_overrides(config: Config, args: argparse.Namespace) -> Config:
    """The config with the global options ``--no-progress``, ``--engine`` and ``--scheduler``."""
    runtime: dict[str, object] = {}
    if args.no_progress:
        runtime["progress"] = False
    if args.engine is not None:
        runtime["engine"] = args.engine
    if args.scheduler is not None:
        runtime["scheduler"] = args.scheduler
    if not runtime:
        return config
    data = config.model_dump(exclude={"source"})
    data["runtime"] = {**data["runtime"], **runtime}
    checked = config_from_mapping(data, f"{config.source} with the command-line options")
    return checked.model_copy(update={"source": config.source})  # lineage names the file


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"signal {signum}")


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` instead of ending the process at
    once, so that workers are stopped and temporary files removed on the way out."""
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
    else:  # signal handlers can only be set from the main thread
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``outreach`` console script; returns the exit code."""
    _quiet_telemetry()
    _thread_settings()
    _memory_settings()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.stage is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        config = load_config(args.config)
        config = _runtime_overrides(config, args)
        _setup_logging(args.log_level or config.runtime.log_level)
        with sigterm_raises():
            return run_stage(config, args.stage, args=args)
    except ConfigError as exc:
        print(f"outreach: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"outreach: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DataError as exc:
        print(f"outreach: data error: {exc}", file=sys.stderr)
        return EXIT_DATA
    except KeyboardInterrupt:
        print("outreach: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("outreach: terminated (SIGTERM); no partial outputs were kept", file=sys.stderr)
        return EXIT_TERMINATED


if __name__ == "__main__":
    sys.exit(main())
