"""How long each stage of a round would take if it only read its inputs once.

Usage::

    .venv/bin/python tools/stage_floors.py OUTPUT_ROOT --round YYYY-MM [--workers 2] [--repeat 3]

``OUTPUT_ROOT`` is a work root that ran a whole round (``outputs/bench/work`` after ``make
bench``). For every stage of the round, the Parquet files it reads are decoded into Arrow tables
(every column, one file per task) by ``--workers`` processes, as the stage's partitions are; the
median of ``--repeat`` runs is printed per stage, with the files and bytes read. The files are
read right after one another, so the operating system's page cache is warm, as it is for the
stages of a round that run one after another: this is a floor of decoding, not of the disk.

What each stage reads (docs/scaling.md, "The round at 1,000,000 households again, and its floor"):

- validate and ingest: every raw Parquet file (``raw/``);
- features: every staged Parquet file (``staged/``);
- score: the round's feature partitions (not its labels) and the staged crisis events (the
  evidence of listed households);
- report: the round's ``scores.parquet`` and its feature partitions.

Uses only the standard library and pyarrow.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq


def read_file(path: str) -> int:
    """Decode one Parquet file (every column); its rows."""
    return pq.read_table(path).num_rows


def stage_inputs(root: Path, round_label: str) -> dict[str, list[Path]]:
    """The Parquet files each stage of a round reads."""
    raw = sorted((root / "raw").rglob("*.parquet"))
    staged = sorted((root / "staged").rglob("*.parquet"))
    features = sorted((root / "features" / f"as_of={round_label}" / "features").rglob("*.parquet"))
    events = sorted((root / "staged" / "crisis_events").rglob("*.parquet"))
    scores = [root / "rounds" / round_label / "scores.parquet"]
    return {
        "validate": raw,
        "ingest": raw,
        "features": staged,
        "score": features + events,
        "report": scores + features,
    }


def timed_read(files: list[Path], workers: int) -> tuple[float, int]:
    """Seconds to decode ``files`` with ``workers`` processes (started before the clock), and
    the rows read."""
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(int, range(workers)))  # the workers are up before timing
        started = time.perf_counter()
        rows = sum(pool.map(read_file, [str(f) for f in files]))
        return time.perf_counter() - started, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_root", type=Path)
    parser.add_argument("--round", required=True, help="the round month, YYYY-MM")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    inputs = stage_inputs(args.output_root, args.round)
    missing = [s for s, files in inputs.items() if not files or not all(f.is_file() for f in files)]
    if missing:
        print(f"{args.output_root}: no inputs of {', '.join(missing)} for round {args.round}")
        return 2
    print("stage\tfiles\tMB\trows\tread s (median)\truns")
    for stage, files in inputs.items():
        runs = [timed_read(files, args.workers) for _ in range(args.repeat)]
        size = sum(f.stat().st_size for f in files) / 1e6
        seconds = [round(s, 2) for s, _ in runs]
        print(
            f"{stage}\t{len(files)}\t{size:.1f}\t{runs[0][1]}\t"
            f"{statistics.median(seconds):.2f}\t{seconds}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
