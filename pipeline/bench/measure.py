"""Benchmarks: run stages at a chosen size and record time and peak memory per stage."""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from pipeline.io import write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchRecord:
    """One stage's figures, in the schema DESIGN.md fixes."""

    stage: str
    households: int
    rows_in: int
    seconds: float
    rows_per_s: float
    peak_rss_mb: float
    # With several runs (``outreach bench --repeat N``): seconds and peak_rss_mb above are the
    # medians, and each run's figures are here.
    runs: list[dict[str, float]] | None = None


class PeakMemory:
    """Samples the resident memory of this process and all its children, keeping the peak."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _total_rss(self) -> int:
        process = psutil.Process()
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._total_rss())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakMemory:
        self.peak_bytes = self._total_rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._total_rss())


@contextmanager
def measured() -> Iterator[dict[str, float]]:
    """Measure wall time and peak memory of a block; the dict is filled on exit."""
    figures: dict[str, float] = {}
    start = time.perf_counter()
    with PeakMemory() as memory:
        yield figures
    figures["seconds"] = time.perf_counter() - start
    figures["peak_rss_mb"] = memory.peak_bytes / 2**20


def bench_stage(
    stage: str,
    households: int,
    run: Callable[[], int],
    record_file: Path,
    repeat: int = 1,
    before_run: Callable[[], None] | None = None,
) -> BenchRecord:
    """Run one stage ``repeat`` times, measure each run, write the record (the median of the
    runs' seconds and peak memory; each run's figures in ``runs`` when more than one) to
    ``record_file`` and return it. ``before_run`` puts the work root where every run starts from
    (for ``train``: no feature rounds), before each run.

    ``run`` returns the number of input rows the stage processed.
    """
    runs = []
    rows_in = 0
    for _ in range(repeat):
        if before_run is not None:
            before_run()
        with measured() as figures:
            rows_in = run()
        seconds, peak = figures["seconds"], figures["peak_rss_mb"]
        runs.append({"seconds": round(seconds, 3), "peak_rss_mb": round(peak, 1)})
    seconds = float(statistics.median(r["seconds"] for r in runs))
    record = BenchRecord(
        stage=stage,
        households=households,
        rows_in=int(rows_in),
        seconds=round(seconds, 3),
        rows_per_s=round(rows_in / seconds, 1) if seconds > 0 else 0.0,
        peak_rss_mb=round(float(statistics.median(r["peak_rss_mb"] for r in runs)), 1),
        runs=runs if repeat > 1 else None,
    )
    write_json({k: v for k, v in asdict(record).items() if v is not None}, record_file)
    return record
