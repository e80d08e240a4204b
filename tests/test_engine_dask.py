"""The Dask engine: the same partition functions on a local Dask cluster give the same files.

The session's ``LocalCluster`` (2 worker processes, 1 thread each, loopback only) serves it. The
stages run through the CLI (``outreach --engine dask --scheduler ADDRESS ...``) on copies of what
the session fixture ``staged_sample`` wrote with the local engine, and their Parquet files are
compared byte for byte with the local ones.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_config, write_config_file

from pipeline.cli import main
from pipeline.config import ConfigError, RuntimeConfig
from pipeline.datasets import OutputLayout
from pipeline.engine import map_partitions
from pipeline.errors import DataError
from pipeline.io import sha256_tree

AS_OF = "2026-10"


def _dask(address: str) -> RuntimeConfig:
    return RuntimeConfig(engine="dask", scheduler=address, progress=False)


def _slow_square(x: int) -> int:
    time.sleep(0.02 * (8 - x))  # the first tasks finish last
    return x * x


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise DataError("partition 3: column household_key has 2 duplicate values")
    return x


def _key_error(x: int) -> int:
    return {}[x]


def _copy_root(staged_sample, tmp_path: Path, *folders: str) -> Path:
    """A config file writing under tmp_path, with copies of some of the local run's folders."""
    config, _ = staged_sample
    root = tmp_path / "outputs"
    for folder in folders:
        shutil.copytree(config.paths.output_root / folder, root / folder)
    return write_config_file(make_config(root), tmp_path / "config.yaml")


def _cli(config_file: Path, address: str, stage: str) -> int:
    options = ["--no-progress", "--engine", "dask", "--scheduler", address]
    return main([*options, "--config", str(config_file), stage])


def _data_files(folder: Path) -> dict[str, str]:
    """sha256 of every file but the manifests, which record times and run ids."""
    return {k: v for k, v in sha256_tree(folder).items() if not k.endswith("manifest.json")}


def test_results_keep_the_input_order(scheduler):
    tasks = list(range(8))
    results = map_partitions(_slow_square, tasks, runtime=_dask(scheduler), description="t")
    assert results == [x * x for x in tasks]


def test_a_data_error_in_a_worker_is_a_data_error_in_the_caller(scheduler):
    with pytest.raises(DataError, match="partition 3: column household_key"):
        map_partitions(_fail_on_three, list(range(6)), runtime=_dask(scheduler), description="t")


def test_other_exceptions_keep_their_type(scheduler):
    with pytest.raises(KeyError):
        map_partitions(_key_error, [1, 2], runtime=_dask(scheduler), description="t")


def test_features_on_dask_equal_the_local_engine(staged_sample, scheduler, tmp_path):
    config, _ = staged_sample
    config_file = _copy_root(staged_sample, tmp_path, "staged")
    assert _cli(config_file, scheduler, "features") == 0
    local = OutputLayout(config.paths.output_root).features(AS_OF)
    dask = OutputLayout(tmp_path / "outputs").features(AS_OF)
    for table in ("features", "labels"):
        expected = sha256_tree(local / table)
        assert expected and all(name.endswith(".parquet") for name in expected)
        assert sha256_tree(dask / table) == expected
    assert _data_files(dask) == _data_files(local)


def test_ingest_on_dask_equals_the_local_engine(staged_sample, scheduler, tmp_path):
    config, _ = staged_sample
    config_file = _copy_root(staged_sample, tmp_path, "validation")
    assert _cli(config_file, scheduler, "ingest") == 0
    local = OutputLayout(config.paths.output_root).staged
    dask = OutputLayout(tmp_path / "outputs").staged
    assert len(_data_files(local)) > 4
    assert _data_files(dask) == _data_files(local)


@pytest.mark.slow  # about 15 s: Great Expectations is imported and run in the workers
def test_validate_on_dask_gives_the_same_verdict_and_rejected_rows(
    staged_sample, scheduler, tmp_path
):
    config, _ = staged_sample
    config_file = _copy_root(staged_sample, tmp_path)
    assert _cli(config_file, scheduler, "validate") == 0

    def last_run(root: Path) -> Path:
        runs = sorted((OutputLayout(root).validation / "runs").iterdir())
        return runs[-1]

    local = last_run(config.paths.output_root)
    dask = last_run(tmp_path / "outputs")
    for name in ("rejected_rows.parquet", "volume.json"):
        assert sha256_tree(dask)[name] == sha256_tree(local)[name]


def _unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_scheduler_is_a_one_line_configuration_error(
    staged_sample, tmp_path, capsys
):
    import dask

    config_file = _copy_root(staged_sample, tmp_path, "staged")
    address = f"tcp://127.0.0.1:{_unused_port()}"
    started = time.monotonic()
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = _cli(config_file, address, "features")
    assert time.monotonic() - started < 15
    lines = capsys.readouterr().err.strip().splitlines()  # the stage's INFO log, then the error
    assert code == 2
    assert [line for line in lines if line.startswith("outreach:")] == lines[-1:]
    assert f"cannot connect to the Dask scheduler at {address}" in lines[-1]
    assert not OutputLayout(tmp_path / "outputs").features(AS_OF).exists()


def test_engine_dask_without_a_scheduler_is_a_configuration_error(capsys):
    assert main(["--engine", "dask", "describe"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "engine dask needs a scheduler address" in err


def test_a_config_with_engine_dask_and_no_scheduler_is_refused():
    with pytest.raises(ValueError, match="needs a scheduler address"):
        RuntimeConfig(engine="dask")


def test_the_local_engine_does_not_import_distributed():
    code = (
        "import sys, pipeline.cli, pipeline.engine, pipeline.features.stage, "
        "pipeline.validate.stage, pipeline.ingest.stage, pipeline.generate.stage; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_connect_refuses_a_malformed_address():
    from pipeline.engine import connect

    with pytest.raises(ConfigError, match="cannot connect to the Dask scheduler at nonsense"):
        connect("nonsense")


def test_scores_and_lists_on_dask_equal_the_local_engine(scored_sample, scheduler, tmp_path):
    from conftest import copy_outputs
    from openpyxl import load_workbook

    copy = copy_outputs(scored_sample, tmp_path)
    options = ["--no-progress", "--engine", "dask", "--scheduler", scheduler]
    assert main([*options, "--config", str(copy.config_file), "score", "--force"]) == 0
    local = json.loads((scored_sample.round_dir / "manifest.json").read_text(encoding="utf-8"))
    dask = json.loads((copy.round_dir / "manifest.json").read_text(encoding="utf-8"))
    assert dask["counts"] == local["counts"]
    assert set(dask["files_sha256"]) == set(local["files_sha256"])
    for name, digest in local["files_sha256"].items():
        if name.endswith(".xlsx"):  # identical cells (the zip container may differ)
            a = load_workbook(scored_sample.round_dir / name)
            b = load_workbook(copy.round_dir / name)
            assert [list(s.values) for s in a.worksheets] == [list(s.values) for s in b.worksheets]
        else:
            assert dask["files_sha256"][name] == digest, name
