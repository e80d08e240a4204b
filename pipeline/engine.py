"""Run one pure function over many partitions: in this process or in a local process pool.

The function and its arguments must be picklable. Results come back in the order of the inputs,
whatever order the workers finish in, so that combined results are deterministic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

from tqdm import tqdm

log = logging.getLogger(__name__)

TaskT = TypeVar("TaskT")
ResultT = TypeVar("ResultT")


def map_partitions(
    function: Callable[[TaskT], ResultT],
    tasks: Sequence[TaskT],
    *,
    workers: int,
    description: str,
    progress: bool = True,
) -> list[ResultT]:
    """Apply ``function`` to every task, with up to ``workers`` processes, keeping input order."""
    results: list[ResultT | None] = [None] * len(tasks)
    bar = tqdm(total=len(tasks), desc=description, unit="partition", disable=not progress)
    try:
        if workers <= 1 or len(tasks) <= 1:
            for position, task in enumerate(tasks):
                results[position] = function(task)
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
                futures = {pool.submit(function, task): i for i, task in enumerate(tasks)}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update(1)
    finally:
        bar.close()
    return results  # type: ignore[return-value]
