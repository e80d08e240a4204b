"""LightGBM on a Dask cluster: ``outreach --engine dask --scheduler ADDRESS train``.

:class:`DaskLightGBM` fits the LightGBM candidate with ``lightgbm.dask.DaskLGBMClassifier`` (data
parallel: every worker builds histograms of its own rows, and the workers agree on each split),
with the hyperparameters of the local model, and returns ``to_local()``: a plain
``LGBMClassifier`` that the caller calibrates, logs and registers exactly as a model fitted in
this process. Scoring does not change.

The training frame is cut into one piece per worker, and piece i is sent to the i-th worker (by
address), so that every worker trains on data. LightGBM's workers talk to each other on ports of
their own, found free on each worker (``local_listen_port`` is left unset: several workers of one
machine cannot share one port); between machines those ports must be open. Threads per LightGBM
worker come from the Dask worker (``dask worker --nthreads``), not from ``lightgbm.n_jobs``.

Results differ slightly from a local fit (histogram bins are found per worker; bagging draws per
worker), by far less than the spread between backtest rounds: tests/test_train_dask.py states the
tolerance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.config import RuntimeConfig

if TYPE_CHECKING:
    from distributed import Client
    from lightgbm import LGBMClassifier

log = logging.getLogger(__name__)

LABEL = "__label__"
WEIGHT = "__weight__"
# Parameters the Dask estimator sets itself (threads per worker) or must not get.
NOT_PASSED = ("n_jobs",)


@dataclass
class DaskLightGBM:
    """Fits LightGBM with ``lightgbm.dask`` on the cluster of ``client`` (a ``LightGBMFitter``)."""

    client: Client
    fits: int = 0
    seconds: float = 0.0

    @property
    def workers(self) -> list[str]:
        return sorted(self.client.nthreads())

    def fit(
        self,
        estimator: LGBMClassifier,
        X: pd.DataFrame,
        y: np.ndarray,
        sample_weight: np.ndarray,
    ) -> LGBMClassifier:
        import dask.dataframe as dd
        from lightgbm.dask import DaskLGBMClassifier

        started = time.perf_counter()
        workers = self.workers
        if not workers:
            raise RuntimeError("the Dask cluster has no workers")
        frame = X.assign(**{LABEL: np.asarray(y), WEIGHT: np.asarray(sample_weight, float)})
        frame = frame.reset_index(drop=True)
        pieces = [p for p in np.array_split(np.arange(len(frame)), len(workers)) if len(p)]
        futures = [
            self.client.scatter(frame.iloc[rows], workers=[worker])
            for rows, worker in zip(pieces, workers, strict=False)
        ]
        data = dd.from_delayed(futures, meta=frame.iloc[0:0], verify_meta=False)
        params = {k: v for k, v in estimator.get_params().items() if k not in NOT_PASSED}
        model = DaskLGBMClassifier(client=self.client, **params)
        try:
            with self.client.as_current():
                model.fit(data[list(X.columns)], data[LABEL], sample_weight=data[WEIGHT])
            local = model.to_local()
        finally:
            self.client.cancel(futures)
        self.fits += 1
        self.seconds += time.perf_counter() - started
        log.info(
            "LightGBM on Dask: %d rows on %d workers in %.1f s",
            len(frame),
            len(pieces),
            time.perf_counter() - started,
        )
        return local

    def describe(self) -> dict[str, str]:
        """What an MLflow run records of the cluster that trained it."""
        return {
            "training.dask_workers": str(len(self.workers)),
            "training.dask_threads": str(sum(self.client.nthreads().values())),
        }


@contextmanager
def lightgbm_fitter(runtime: RuntimeConfig) -> Iterator[DaskLightGBM | None]:
    """The Dask fitter when ``runtime.engine`` is dask (closed on exit), else None (local)."""
    if runtime.engine != "dask":
        yield None
        return
    from pipeline.config import ConfigError
    from pipeline.engine import connect

    if runtime.scheduler is None:  # a validated config never gets here
        raise ConfigError("runtime.scheduler: engine dask needs a scheduler address")
    client = connect(runtime.scheduler)
    try:
        yield DaskLightGBM(client)
    finally:
        client.close()


def engine_of(fitter: Any) -> str:
    return "dask" if isinstance(fitter, DaskLightGBM) else "local"
