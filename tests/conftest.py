"""Shared fixtures. Telemetry is switched off before anything can import MLflow."""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

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
