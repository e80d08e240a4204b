"""The command line: stages listed, exit codes, and the benchmark records."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import STAGES, main
from pipeline.engine import map_partitions


def test_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for stage in STAGES:
        assert stage.name in out
    assert "exit codes" in out


def test_no_stage_is_a_usage_error(capsys):
    assert main([]) == 2


def test_unknown_stage_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_bench_writes_one_record_per_stage_in_the_design_schema(tmp_path, repo_root, capsys):
    config = tmp_path / "bench.yaml"
    config.write_text(
        f"paths:\n  output_root: {tmp_path / 'out'}\n"
        f"  indicators: {repo_root / 'configs' / 'indicators.yaml'}\n"
        "runtime:\n  workers: 1\n",
        encoding="utf-8",
    )
    code = main(["--config", str(config), "bench", "--households", "2000", "--stages", "generate"])
    assert code == 0
    record = json.loads((tmp_path / "out" / "bench" / "generate.json").read_text(encoding="utf-8"))
    assert set(record) == {"stage", "households", "rows_in", "seconds", "rows_per_s", "peak_rss_mb"}
    assert record["stage"] == "generate" and record["households"] == 2000
    assert record["seconds"] > 0 and record["peak_rss_mb"] > 50
    printed = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    assert printed == [record]


def test_bench_repeat_records_the_median_and_each_run(tmp_path, repo_root, capsys):
    config = tmp_path / "bench.yaml"
    config.write_text(
        f"paths:\n  output_root: {tmp_path / 'out'}\n"
        f"  indicators: {repo_root / 'configs' / 'indicators.yaml'}\n"
        "runtime:\n  workers: 1\n",
        encoding="utf-8",
    )
    argv = ["--config", str(config), "bench", "--households", "2000", "--stages", "generate"]
    assert main([*argv, "--repeat", "3"]) == 0
    record = json.loads((tmp_path / "out" / "bench" / "generate.json").read_text(encoding="utf-8"))
    runs = record.pop("runs")
    assert set(record) == {"stage", "households", "rows_in", "seconds", "rows_per_s", "peak_rss_mb"}
    assert len(runs) == 3 and all(run["seconds"] > 0 for run in runs)
    assert record["seconds"] == sorted(run["seconds"] for run in runs)[1]
    assert record["peak_rss_mb"] == sorted(run["peak_rss_mb"] for run in runs)[1]
    capsys.readouterr()
    assert main([*argv, "--repeat", "0"]) == 2
    assert "--repeat 0" in capsys.readouterr().err


def test_bench_refuses_an_unknown_stage(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"paths:\n  output_root: {tmp_path}\n", encoding="utf-8")
    assert main(["--config", str(config), "bench", "--stages", "nope"]) == 2
    assert "unknown stage" in capsys.readouterr().err


def _square(x: int) -> int:
    return x * x


def test_partition_results_keep_the_input_order_with_a_process_pool():
    tasks = list(range(12))
    results = map_partitions(_square, tasks, workers=2, description="t", progress=False)
    assert results == [x * x for x in tasks]


def test_sigterm_during_a_stage_is_exit_code_143_with_a_one_line_message(
    tmp_path, monkeypatch, capsys
):
    import os
    import signal
    import time

    import pipeline.generate.command as generate_command

    def stage_that_gets_terminated(config, args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises before this ends
        return 0

    monkeypatch.setattr(generate_command, "run", stage_that_gets_terminated)
    config = tmp_path / "c.yaml"
    config.write_text(f"paths:\n  output_root: {tmp_path}\n", encoding="utf-8")
    before = signal.getsignal(signal.SIGTERM)
    assert main(["--config", str(config), "generate"]) == 143
    assert "terminated" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before  # restored after the stage


def test_openmp_waits_passively_unless_the_environment_says_otherwise(monkeypatch, capsys):
    """Set where the process starts (before LightGBM loads OpenMP): docs/scaling.md, "Threads"."""
    import os

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    main([])
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    main([])
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_console_script_loads_openmp_after_setting_its_wait_policy():
    """Importing the CLI must not load LightGBM (its OpenMP reads the policy once, on load)."""
    import subprocess
    import sys

    code = "import sys, pipeline.cli; print('lightgbm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_arrow_allocates_with_the_system_allocator_in_the_command_and_its_workers():
    """Set where the process starts, before Arrow first allocates, and inherited by the local
    workers: docs/scaling.md, "Arrow's allocator". One set in the environment is kept."""
    import os
    import subprocess
    import sys

    code = (
        "import os, pyarrow as pa; from pipeline.cli import main; "
        "from pipeline.engine import map_partitions; main([]); "
        "print(pa.default_memory_pool().backend_name, *map_partitions(os.getenv, "
        "['ARROW_DEFAULT_MEMORY_POOL'] * 2, description='pool', workers=2, progress=False))"
    )
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-3:] == ["system", "system", "system"]
    env["ARROW_DEFAULT_MEMORY_POOL"] = "mimalloc"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split()[-3:] == ["mimalloc", "mimalloc", "mimalloc"]


def test_local_workers_keep_the_memory_they_free_and_the_command_keeps_glibcs_defaults():
    """glibc's malloc settings are set where the command starts, for the local workers it starts
    later (docs/scaling.md, "Freed memory kept"); a value already in the environment is kept."""
    import os
    import subprocess
    import sys

    from pipeline.cli import WORKER_MALLOC

    names = sorted(WORKER_MALLOC)
    code = (
        "import os; from pipeline.cli import main; from pipeline.engine import map_partitions; "
        f"before = [os.getenv(n) for n in {names!r}]; main([]); "
        f"print(before, map_partitions(os.getenv, {names!r}, description='pool', workers=2, "
        "progress=False))"
    )
    env = {k: v for k, v in os.environ.items() if k not in WORKER_MALLOC}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    expected = [WORKER_MALLOC[n] for n in names]
    assert out.stdout.strip().splitlines()[-1] == f"{[None, None]} {expected}"
    assert all(int(v) >= 1 << 30 for v in expected)
    env[names[0]] = "131072"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip().splitlines()[-1].endswith(f"['131072', '{expected[1]}']")
