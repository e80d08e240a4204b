"""Shared fixtures. Telemetry is switched off before anything can import MLflow."""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.catalogue import IndicatorCatalogue, OutcomeCatalogue, load_indicators, load_outcomes
from pipeline.config import Config, load_config

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def sample_raw() -> Path:
    """The committed sample's raw tables (read only: copy before changing anything)."""
    return REPO_ROOT / "data_samples" / "raw"


@pytest.fixture(scope="session")
def sample_truth() -> Path:
    return REPO_ROOT / "data_samples" / "truth"


@pytest.fixture(scope="session")
def catalogue() -> IndicatorCatalogue:
    return load_indicators(REPO_ROOT / "configs" / "indicators.yaml")


@pytest.fixture(scope="session")
def outcome_catalogue() -> OutcomeCatalogue:
    return load_outcomes(REPO_ROOT / "configs" / "outcomes.yaml")


def make_config(output_root: Path, **sections: dict) -> Config:
    """The sample config with absolute repo paths, writing under ``output_root``."""
    base = load_config(REPO_ROOT / "configs" / "sample.yaml")
    paths = {
        "output_root": str(output_root),
        "raw_input": str(REPO_ROOT / "data_samples" / "raw"),
        "truth_input": str(REPO_ROOT / "data_samples" / "truth"),
        "indicators": str(REPO_ROOT / "configs" / "indicators.yaml"),
        "outcomes": str(REPO_ROOT / "configs" / "outcomes.yaml"),
        "features": str(REPO_ROOT / "configs" / "features.yaml"),
    }
    paths.update(sections.pop("paths", {}))
    runtime = {"progress": False, "workers": 1}
    runtime.update(sections.pop("runtime", {}))
    return base.with_overrides(paths=paths, runtime=runtime, **sections)


@pytest.fixture()
def config_factory():
    """Build a validated Config for a test: ``config_factory(tmp_path, generator={...})``."""
    return make_config


def write_config_file(config: Config, path: Path) -> Path:
    """Write a Config as YAML so that the CLI can be run on it (``--config path``)."""
    import yaml

    data = config.model_dump(mode="json", exclude={"source"})
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def staged_sample(tmp_path_factory):
    """validate -> ingest -> features (default round) on the committed sample, once per session.

    Returns (config, config_file). Tests must not modify what it wrote: copy first.
    """
    from pipeline.cli import main

    root = tmp_path_factory.mktemp("pipeline")
    config = make_config(root / "outputs")
    config_file = write_config_file(config, root / "config.yaml")
    for stage in ("validate", "ingest", "features"):
        code = main(["--no-progress", "--config", str(config_file), stage])
        assert code == 0, f"{stage} failed on the committed sample"
    return config, config_file


# Small, fast training settings for tests that need a registered model (n_jobs=1: see notes).
SMALL_TRAINING = {
    "lightgbm": {"n_estimators": 40, "n_jobs": 1},
    "logistic": {"max_iter": 300},
    "backtest": {"bootstrap_samples": 200},
    "selective_labels": {"compare": ["plain", "negatives"]},
    "fairness": {"proxy_sample": 1000},
}


@dataclass(frozen=True)
class ScoredSample:
    """A scored round of the committed sample: config, config file and the round folder."""

    config: Config
    config_file: Path
    round_dir: Path
    as_of: str


@pytest.fixture(scope="session")
def scored_sample(staged_sample, tmp_path_factory) -> ScoredSample:
    """staged_sample copied, then ``train`` (small model, becomes champion) and ``score``.

    Once per session. Tests must not modify what it wrote: copy the folder first
    (``copy_outputs``).
    """
    import shutil

    from features.command import default_as_of
    from pipeline.cli import main
    from pipeline.months import format_month

    base, _ = staged_sample
    root = tmp_path_factory.mktemp("scored")
    shutil.copytree(base.paths.output_root, root / "outputs")
    config = make_config(root / "outputs", training=SMALL_TRAINING)
    config_file = write_config_file(config, root / "config.yaml")
    for stage in ("train", "score"):
        code = main(["--no-progress", "--config", str(config_file), stage])
        assert code == 0, f"{stage} failed on the committed sample"
    as_of = format_month(default_as_of(config))
    return ScoredSample(config, config_file, root / "outputs" / "rounds" / as_of, as_of)


def copy_outputs(scored: ScoredSample, destination: Path) -> ScoredSample:
    """A private copy of a scored sample's outputs (MLflow store included), to change freely.

    The MLflow store's artifact location is absolute, so the copy's config keeps pointing its
    tracking URI at the copied database, whose artifacts still live in the original folder:
    tests that tamper with artifacts must do so through MLflow, not on disk.
    """
    import shutil

    shutil.copytree(scored.config.paths.output_root, destination / "outputs")
    config = scored.config.with_overrides(paths={"output_root": str(destination / "outputs")})
    config_file = write_config_file(config, destination / "config.yaml")
    return ScoredSample(
        config, config_file, destination / "outputs" / "rounds" / scored.as_of, scored.as_of
    )


@pytest.fixture(scope="module")
def scheduler():
    """The address of a local Dask cluster (2 worker processes on 127.0.0.1) for one module."""
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()
