"""The catalogues a command works with, loaded once at its entry and passed down.

``configs/indicators.yaml`` (crisis information), ``configs/outcomes.yaml`` (visit outcomes and
selection reasons) and ``configs/features.yaml`` (the feature spec), as named by the config's
``paths``. Stage functions take a :class:`Catalogues`; nothing below a command reads the YAML
files again.
"""

from __future__ import annotations

from dataclasses import dataclass

from features.spec import FeatureSpec, load_feature_spec
from pipeline.catalogue import IndicatorCatalogue, OutcomeCatalogue, load_indicators, load_outcomes
from pipeline.config import Config


@dataclass(frozen=True)
class Catalogues:
    """The indicator catalogue, the outcome catalogue and the feature spec of a run."""

    indicators: IndicatorCatalogue
    outcomes: OutcomeCatalogue
    features: FeatureSpec


def load_catalogues(config: Config) -> Catalogues:
    """Read and validate the three catalogues named by ``config.paths`` (ConfigError naming the
    file and key when one is wrong)."""
    return Catalogues(
        indicators=load_indicators(config.paths.indicators),
        outcomes=load_outcomes(config.paths.outcomes),
        features=load_feature_spec(config.paths.features),
    )
