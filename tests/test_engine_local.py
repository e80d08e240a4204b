"""The local process pool after LightGBM ran in the parent (bug: ``outreach run`` hung in score,
because its workers were forked from a process whose OpenMP threads held locks)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from pipeline.engine import pool_context

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from lightgbm import LGBMClassifier

    from pipeline.engine import map_partitions

    def predict(task):
        model, rows = task
        return float(model.predict_proba(rows)[:, 1].sum())

    if __name__ == "__main__":
        rng = np.random.default_rng(1)
        X, y = rng.random((2000, 5)), rng.integers(0, 2, 2000)
        model = LGBMClassifier(n_estimators=20, n_jobs=2, verbose=-1).fit(X, y)
        model.predict_proba(X)  # the parent's OpenMP pool is up
        tasks = [(model, X[i::4]) for i in range(4)]
        out = map_partitions(predict, tasks, workers=2, description="t", progress=False)
        print(len(out), "ok")
    """
)


def test_workers_start_clean_after_lightgbm_ran_in_the_parent(tmp_path):
    script = tmp_path / "pool_after_lightgbm.py"
    script.write_text(SCRIPT, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("4 ok")


def test_the_pool_never_forks_a_threaded_parent():
    assert pool_context().get_start_method() in ("forkserver", "spawn")
