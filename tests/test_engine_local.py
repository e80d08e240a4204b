"""The local process pool: workers start clean after LightGBM ran in the parent (bug: ``outreach
run`` hung in score, because its workers were forked from a process whose OpenMP threads held
locks), and never outlive their driver (bug: after SIGTERM, the fork server's workers stayed)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

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


# --- stopping: the driver ends on a signal, an error or SIGKILL; its workers never outlive it ---

STOP_SCRIPT = textwrap.dedent(
    """
    import sys
    import time
    from pathlib import Path

    from pipeline.cli import sigterm_raises
    from pipeline.engine import map_partitions
    from pipeline.errors import Terminated
    from pipeline.io import staging_dir

    def task(job):
        folder, position, mode = job
        (Path(folder) / f"started-{position}").touch()
        if mode == "fail" and position == 0:
            time.sleep(1)
            raise ValueError("partition 0 is broken")
        time.sleep(600)
        return position

    if __name__ == "__main__":
        root, mode = Path(sys.argv[1]), sys.argv[2]
        try:
            with sigterm_raises(), staging_dir(root / "final") as temp:
                (temp / "partial").write_text("half a round")
                jobs = [(str(root), i, mode) for i in range(6)]
                map_partitions(task, jobs, workers=2, description="t", progress=False)
        except Terminated:
            sys.exit(143)
        except ValueError as exc:
            print("failed:", exc, flush=True)
            sys.exit(1)
    """
)


def _start_driver(tmp_path, mode):
    script = tmp_path / "driver.py"
    script.write_text(STOP_SCRIPT, encoding="utf-8")
    root = tmp_path / "root"
    root.mkdir()
    driver = subprocess.Popen(
        [sys.executable, str(script), str(root), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return driver, root


def _wait_for_workers(driver, root, count=2, timeout=120.0):
    """The pids of the workers, once ``count`` tasks have started."""
    import psutil

    deadline = time.monotonic() + timeout
    while len(list(root.glob("started-*"))) < count:
        assert driver.poll() is None, driver.communicate()
        assert time.monotonic() < deadline, "the workers never started"
        time.sleep(0.1)
    return [p.pid for p in psutil.Process(driver.pid).children(recursive=True)]


def _all_gone(pids, timeout=30.0):
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if psutil.pid_exists(pid) and not _zombie(pid)]
        if not alive:
            return []
        time.sleep(0.2)
    return alive


def _zombie(pid):
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_sigterm_stops_the_workers_and_removes_the_staging_folder(tmp_path):
    driver, root = _start_driver(tmp_path, "sleep")
    descendants = _wait_for_workers(driver, root)
    assert len(descendants) >= 3  # the fork server and two workers
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=60) == 143, driver.communicate()
    assert _all_gone(descendants) == []
    assert not (root / "final").exists()
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_a_failing_partition_stops_the_others_instead_of_waiting_for_them(tmp_path):
    driver, root = _start_driver(tmp_path, "fail")
    descendants = _wait_for_workers(driver, root)
    # The other tasks sleep 600 s: waiting for them would time out here.
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 1, err[-2000:]
    assert "partition 0 is broken" in out
    assert _all_gone(descendants) == []
    assert not (root / "final").exists()


def test_workers_exit_when_the_driver_is_killed_outright(tmp_path):
    import psutil

    driver, root = _start_driver(tmp_path, "sleep")
    descendants = _wait_for_workers(driver, root)
    workers = [
        pid
        for pid in descendants
        if psutil.Process(pid).ppid() != driver.pid  # forked by the fork server
    ]
    assert len(workers) >= 2
    driver.kill()
    driver.wait(timeout=30)
    assert _all_gone(workers) == []
